"""Settings of the panel, read once from the environment.

Reflex itself reads only ``REFLEX_``-prefixed variables (``REFLEX_DB_URL``, ``REFLEX_REDIS_URL``);
the panel's own settings are ``PANEL_``-prefixed. Every setting has an embedded default so the
panel runs on a fresh machine with SQLite and mail kept in the outbox.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_URL = f"sqlite:///{PROJECT_ROOT / 'data' / 'panel.db'}"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _optional(name: str) -> str | None:
    """The variable's value without surrounding blanks; None when unset or blank."""
    raw = os.environ.get(name, "").strip()
    return raw or None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    db_url: str = field(default_factory=lambda: _env("REFLEX_DB_URL", DEFAULT_DB_URL))
    base_url: str = field(default_factory=lambda: _env("PANEL_BASE_URL", "http://localhost:3000").rstrip("/"))
    # Mail: without PANEL_SMTP_HOST mail stays in the outbox (it is still the notification history).
    smtp_host: str = field(default_factory=lambda: _env("PANEL_SMTP_HOST"))
    smtp_port: int = field(default_factory=lambda: int(_env("PANEL_SMTP_PORT", "25")))
    smtp_user: str = field(default_factory=lambda: _env("PANEL_SMTP_USER"))
    smtp_password: str = field(default_factory=lambda: _env("PANEL_SMTP_PASSWORD"))
    smtp_tls: str = field(default_factory=lambda: _env("PANEL_SMTP_TLS", "none"))  # none|starttls|tls
    # A login (user and password) over a connection without TLS is refused unless allowed here
    # (a relay on the same host or a private network only).
    smtp_allow_plain_login: bool = field(default_factory=lambda: _bool("PANEL_SMTP_ALLOW_PLAIN_LOGIN", False))
    mail_from: str = field(default_factory=lambda: _env("PANEL_MAIL_FROM", "panel@noventiq.example"))
    # Help block
    support_email: str = field(default_factory=lambda: _env("PANEL_SUPPORT_EMAIL", "support@noventiq.example"))
    # A provisioning task open longer than this is reported daily to support_email.
    provisioning_overdue_hours: int = field(default_factory=lambda: int(_env("PANEL_PROVISIONING_OVERDUE_HOURS", "48")))
    # Vendor connectors to register (services/vendors/connector.py): comma-separated
    # "module:function" entries, each called with connector.register. Empty: every vendor is
    # manual (its orders and changes go to the provisioning queue).
    connectors: str = field(default_factory=lambda: _env("PANEL_CONNECTORS"))
    support_phone: str = field(default_factory=lambda: _env("PANEL_SUPPORT_PHONE", "+998 71 200 00 00"))
    knowledge_base_url: str = field(default_factory=lambda: _env("PANEL_KB_URL", "https://help.noventiq.example/"))
    # Seller's requisites for invoices and closing documents
    seller_name: str = field(default_factory=lambda: _env("PANEL_SELLER_NAME", "ООО «Noventiq Uzbekistan»"))
    seller_tax_id: str = field(default_factory=lambda: _env("PANEL_SELLER_TAX_ID", "305123456"))
    seller_address: str = field(default_factory=lambda: _env("PANEL_SELLER_ADDRESS", "г. Ташкент, ул. Амира Темура, 107Б"))
    seller_bank: str = field(default_factory=lambda: _env("PANEL_SELLER_BANK", "АКБ «Капиталбанк», МФО 01088"))
    seller_account: str = field(default_factory=lambda: _env("PANEL_SELLER_ACCOUNT", "20208000900123456001"))
    vat_rate: Decimal = field(default_factory=lambda: Decimal(_env("PANEL_VAT_RATE", "12")))
    # ... and what the electronic invoices (ЭСФ, services/billing/esf.py) name beside them: VAT
    # registration code (12 digits) and its status in the tax registry (20: VAT payer, certificate
    # active), bank МФО (5 digits, the bank of seller_account), ОКЭД, director and accountant, and the
    # public offer the services are rendered under when an organisation has no contract of its own.
    # Like the requisites above, the defaults are demo values: set them before a real month closes.
    seller_vat_reg_code: str = field(default_factory=lambda: _env("PANEL_SELLER_VAT_REG_CODE", "326050123456").strip())
    seller_vat_reg_status: int = field(default_factory=lambda: int(_env("PANEL_SELLER_VAT_REG_STATUS", "20")))
    seller_mfo: str = field(default_factory=lambda: _env("PANEL_SELLER_MFO", "01088").strip())
    seller_oked: str = field(default_factory=lambda: _env("PANEL_SELLER_OKED", "62090").strip())
    seller_director: str = field(default_factory=lambda: _env("PANEL_SELLER_DIRECTOR", "Каримов Алишер Бахтиёрович").strip())
    seller_accountant: str = field(default_factory=lambda: _env("PANEL_SELLER_ACCOUNTANT", "Юсупова Дилноза Рустамовна").strip())
    seller_offer_no: str = field(default_factory=lambda: _env("PANEL_SELLER_OFFER_NO", "ПО-01/2026").strip())
    seller_offer_date: str = field(default_factory=lambda: _env("PANEL_SELLER_OFFER_DATE", "2026-01-01").strip())
    # Money limits for top-ups (in the organisation's currency)
    topup_min: Decimal = field(default_factory=lambda: Decimal(_env("PANEL_TOPUP_MIN", "1000")))
    topup_max: Decimal = field(default_factory=lambda: Decimal(_env("PANEL_TOPUP_MAX", "10000000000")))
    invoice_due_days: int = field(default_factory=lambda: int(_env("PANEL_INVOICE_DUE_DAYS", "5")))
    # Exchange rates feed of the Central Bank of Uzbekistan
    cbu_url: str = field(default_factory=lambda: _env("PANEL_CBU_URL", "https://cbu.uz/ru/arkhiv-kursov-valyut/json/"))
    # Sessions and sign-in throttling
    session_idle_minutes: int = field(default_factory=lambda: int(_env("PANEL_SESSION_IDLE_MINUTES", "120")))
    session_max_hours: int = field(default_factory=lambda: int(_env("PANEL_SESSION_MAX_HOURS", "12")))  # absolute
    login_max_failures: int = field(default_factory=lambda: int(_env("PANEL_LOGIN_MAX_FAILURES", "5")))
    login_window_minutes: int = field(default_factory=lambda: int(_env("PANEL_LOGIN_WINDOW_MINUTES", "15")))
    # Jobs
    scheduler_enabled: bool = field(default_factory=lambda: _bool("PANEL_SCHEDULER", True))
    usage_import_dir: str = field(default_factory=lambda: _env("PANEL_USAGE_IMPORT_DIR"))
    renewal_grace_days: int = field(default_factory=lambda: int(_env("PANEL_GRACE_DAYS", "7")))
    # Pay-as-you-go credit control: the deposit a prepaid organisation needs to order a plan without
    # an expected monthly cost (organisation currency), and the hours an overdrawn organisation has
    # before its pay-as-you-go subscriptions are suspended.
    payg_deposit: Decimal = field(default_factory=lambda: Decimal(_env("PANEL_PAYG_DEPOSIT", "100000")))
    credit_grace_hours: int = field(default_factory=lambda: int(_env("PANEL_CREDIT_GRACE_HOURS", "72")))
    # Card payments (services/billing/payme.py, click.py; README "Card payments"). A method is offered
    # only when configured. The keys are secrets: kept out of repr, never logged, never on a page.
    payme_merchant_id: str = field(default_factory=lambda: _env("PANEL_PAYME_MERCHANT_ID").strip())
    payme_key: str = field(default_factory=lambda: _env("PANEL_PAYME_KEY"), repr=False)
    payme_test_key: str = field(default_factory=lambda: _env("PANEL_PAYME_TEST_KEY"), repr=False)
    payme_test: bool = field(default_factory=lambda: _bool("PANEL_PAYME_TEST", False))  # accept the test key instead
    payme_ikpu: str = field(default_factory=lambda: _env("PANEL_PAYME_IKPU").strip())  # fiscal receipt: ИКПУ
    payme_package_code: str = field(default_factory=lambda: _env("PANEL_PAYME_PACKAGE_CODE").strip())
    click_service_id: str = field(default_factory=lambda: _env("PANEL_CLICK_SERVICE_ID").strip())
    click_merchant_id: str = field(default_factory=lambda: _env("PANEL_CLICK_MERCHANT_ID").strip())
    click_secret_key: str = field(default_factory=lambda: _env("PANEL_CLICK_SECRET_KEY"), repr=False)
    # One card payment (a top-up by card), in сум.
    card_min: Decimal = field(default_factory=lambda: Decimal(_env("PANEL_CARD_MIN", "1000")))
    card_max: Decimal = field(default_factory=lambda: Decimal(_env("PANEL_CARD_MAX", "100000000")))
    # Microsoft Partner Center (services/vendors/partner_center.py): None = not configured (no
    # Partner Center connector is made). The secret is kept out of repr, never logged.
    partner_center_tenant_id: str | None = field(default_factory=lambda: _optional("PANEL_PARTNER_CENTER_TENANT_ID"))
    partner_center_app_id: str | None = field(default_factory=lambda: _optional("PANEL_PARTNER_CENTER_APP_ID"))
    partner_center_secret: str | None = field(default_factory=lambda: _optional("PANEL_PARTNER_CENTER_SECRET"), repr=False)
    partner_center_url: str = field(
        default_factory=lambda: _optional("PANEL_PARTNER_CENTER_URL") or "https://api.partnercenter.microsoft.com/v1/"
    )
    # App+User (the secure application model): the refresh token of the partner admin's MFA consent,
    # needed only to confirm customers' acceptance of the Microsoft Customer Agreement
    partner_center_refresh_token: str | None = field(
        default_factory=lambda: _optional("PANEL_PARTNER_CENTER_REFRESH_TOKEN"), repr=False)
    partner_center_timeout: float = field(default_factory=lambda: float(_env("PANEL_PARTNER_CENTER_TIMEOUT", "30")))
    partner_center_max_retries: int = field(default_factory=lambda: int(_env("PANEL_PARTNER_CENTER_MAX_RETRIES", "4")))

    @property
    def partner_center_configured(self) -> bool:
        return bool(self.partner_center_tenant_id and self.partner_center_app_id and self.partner_center_secret)


    def __post_init__(self) -> None:
        # Two grace periods (running, then suspended) end inside one monthly billing period, so an
        # instalment that lapsed is settled within its month (services/subscriptions/lapse.py).
        if not 0 <= self.renewal_grace_days <= 13:
            raise ValueError(f"PANEL_GRACE_DAYS must be a whole number of days from 0 to 13, not {self.renewal_grace_days}")


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def reset_settings() -> None:
    """Re-read the environment (tests change it)."""
    global _settings
    _settings = None
