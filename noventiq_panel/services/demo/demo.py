"""Demo data that makes the panel look alive (``noventiq-panel demo``). Idempotent.

What it loads:

- the demo catalog (``noventiq_panel/demo/catalog.yaml``, upserted by code);
- USD/EUR/RUB rates (source ``demo``) for every day the demo's money touches (at least 120 days);
  a day that already has a rate (e.g. from the CBU feed) is left alone;
- «ООО «Ромашка»» (Asia/Tashkent, UZS, prepaid) with 14 subscriptions in every status (active,
  trial, suspended, pending, expired, cancelled; monthly, yearly upfront, yearly billed monthly,
  Azure pay-as-you-go hourly), licence batches, a scheduled decrease, 120 days of hourly Azure
  usage over several services and resource groups (rated: one ``usage`` ledger entry per local
  day, each record pointing at it; today's records are left for the rating job), top-ups with
  their payments, charges, a refund, a pending invoice, a budget with last month's alerts,
  audit events and mail in the outbox;
- «ООО «Восток Трейд»» (postpaid) with its own users, subscriptions and Azure daily usage: the
  second tenant for isolation tests;
- users (password ``demo12345``): owner@, admin@, finance@demo.example and owner@, admin@other.example.

Idempotency: everything is keyed. Organisations are found by tax id, users by e-mail, catalog rows
by code, payments by number, ledger entries by idempotency key, mail by dedupe key. An
organisation's subscriptions, usage and money are built once, in the same transaction as its
first top-up, whose ``meta`` keeps the demo's anchor time: a second run finds it, reuses the
anchor (so every date and key comes out the same) and adds nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlmodel import Session, select

from noventiq_panel.models import (
    AuditEvent,
    Budget,
    BudgetAlert,
    LedgerEntry,
    LicenceBatch,
    Membership,
    Notification,
    NotificationStatus,
    Organisation,
    Payment,
    Plan,
    Product,
    ScheduledChange,
    Subscription,
    UsageRecord,
    User,
)
from noventiq_panel.services.catalog import catalog_import
from noventiq_panel.services.core import clock, ledger, rates
from noventiq_panel.services.core import proration
from noventiq_panel.services.usage import rating

log = logging.getLogger(__name__)

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "demo" / "catalog.yaml"
DEMO_PASSWORD = "demo12345"
USAGE_DAYS = 120
RATE_DAYS = 120
_NS = uuid.UUID("5d1c6f0e-3c1b-4d8e-9a57-6b0f3c2a9e11")  # namespace of the demo's stable GUIDs


# ---------------------------------------------------------------------------------------------
# Who is who
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLogin:
    email: str
    name: str
    role: str
    org_key: str


ORGS: dict[str, dict[str, Any]] = {
    "romashka": dict(
        name="ООО «Ромашка»",
        tax_id="306512874",
        address="100084, г. Ташкент, Юнусабадский район, ул. Амира Темура, 108, офис 412",
        phone="+998 71 205-44-17",
        bank_details="р/с 20208000405512874001 в АКБ «Ипотека-банк», МФО 00873",
        billing_currency="UZS",
        timezone="Asia/Tashkent",
        billing_mode="prepaid",
        credit_limit=Decimal("0.00"),
        low_balance_threshold=Decimal("5000000.00"),
    ),
    "vostok": dict(
        name="ООО «Восток Трейд»",
        tax_id="307441096",
        address="140100, г. Самарканд, ул. Регистан, 25",
        phone="+998 66 233-10-45",
        bank_details="р/с 20208000900441096002 в АКБ «Hamkorbank», МФО 00083",
        billing_currency="UZS",
        timezone="Asia/Tashkent",
        billing_mode="postpaid",
        credit_limit=Decimal("40000000.00"),
        low_balance_threshold=None,
    ),
}

LOGINS: list[DemoLogin] = [
    DemoLogin("owner@demo.example", "Алишер Каримов", "owner", "romashka"),
    DemoLogin("admin@demo.example", "Дилноза Рахимова", "admin", "romashka"),
    DemoLogin("finance@demo.example", "Ольга Ким", "finance", "romashka"),
    DemoLogin("owner@other.example", "Тимур Юсупов", "owner", "vostok"),
    DemoLogin("admin@other.example", "Севара Алиева", "admin", "vostok"),
]


@dataclass
class DemoResult:
    anchor: datetime
    created_orgs: list[str] = field(default_factory=list)
    catalog: Optional[catalog_import.ImportResult] = None
    org_ids: dict[str, int] = field(default_factory=dict)
    rating: str = ""

    @property
    def logins(self) -> list[DemoLogin]:
        return LOGINS


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _hour_floor(dt: datetime) -> datetime:
    return clock.aware(dt).replace(minute=0, second=0, microsecond=0)


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def _q6(value: Decimal) -> Decimal:
    return Decimal(value).quantize(Decimal("0.000001"))


def _at(day: date, tz: str, hour: int = 10, minute: int = 0) -> datetime:
    """A moment on a local day (working hours make the history look real)."""
    return clock.local_midnight(day, tz) + timedelta(hours=hour, minutes=minute)


_hashes: dict[str, str] = {}


def _hash_password(password: str) -> str:
    """The auth module's hash of the demo password, computed once per process (argon2 is slow on
    purpose; the demo users share the password anyway)."""
    if password not in _hashes:
        from noventiq_panel.services.identity.auth import hash_password

        _hashes[password] = hash_password(password)
    return _hashes[password]


def demo_rate(currency: str, day: date) -> Decimal:
    """A deterministic, plausible CBU-like rate (UZS for one unit) for ``day``."""
    n = day.toordinal()
    usd = 12150 + 170 * math.sin(n / 37.0) + 45 * math.sin(n / 6.3)
    if currency == "USD":
        value = usd
    elif currency == "EUR":
        value = usd * (1.155 + 0.02 * math.sin(n / 53.0))
    elif currency == "RUB":
        value = 148 + 6 * math.sin(n / 29.0) + 1.5 * math.sin(n / 4.1)
    else:  # pragma: no cover
        raise ValueError(currency)
    return Decimal(f"{value:.2f}")


# ---------------------------------------------------------------------------------------------
# Anchor: the demo's "now", fixed at the first run
# ---------------------------------------------------------------------------------------------


def _marker_key(org_key: str) -> str:
    return f"demo:{org_key}:topup:001"


def find_anchor(session: Session) -> Optional[datetime]:
    for org_key in ORGS:
        entry = ledger.find(session, _marker_key(org_key))
        if entry is not None and entry.meta.get("demo_anchor"):
            return datetime.fromisoformat(entry.meta["demo_anchor"])
    return None


# ---------------------------------------------------------------------------------------------
# Organisations and users
# ---------------------------------------------------------------------------------------------


def _ensure_org(session: Session, key: str) -> Organisation:
    spec = ORGS[key]
    org = session.exec(select(Organisation).where(Organisation.tax_id == spec["tax_id"],
                                                  Organisation.name == spec["name"])).first()
    if org is None:
        org = Organisation(**spec)
        session.add(org)
        session.flush()
    return org


def _ensure_user(session: Session, login: DemoLogin, org: Organisation, created_at: datetime) -> User:
    user = session.exec(select(User).where(User.email == login.email)).first()
    if user is None:
        user = User(email=login.email, name=login.name, password_hash=_hash_password(DEMO_PASSWORD),
                    locale="ru", created_at=created_at)
        session.add(user)
        session.flush()
    elif not user.password_hash:
        user.password_hash = _hash_password(DEMO_PASSWORD)
        session.add(user)
    membership = session.exec(select(Membership).where(Membership.user_id == user.id,
                                                       Membership.org_id == org.id)).first()
    if membership is None:
        session.add(Membership(user_id=user.id, org_id=org.id, role=login.role, created_at=created_at))
        session.flush()
    return user


# ---------------------------------------------------------------------------------------------
# Rates
# ---------------------------------------------------------------------------------------------


def ensure_rates(session: Session, first: date, last: date, currencies=("USD", "EUR", "RUB")) -> int:
    """Store the demo rate of every day in [first, last] that has none yet (one bulk insert);
    how many were added. A stored rate (the CBU's, a manual one) is never replaced."""
    from noventiq_panel.models import ExchangeRate

    rows = []
    fetched_at = clock.utcnow()
    for ccy in currencies:
        have = set(session.exec(select(ExchangeRate.rate_date).where(
            ExchangeRate.currency == ccy, ExchangeRate.rate_date >= first, ExchangeRate.rate_date <= last)).all())
        day = first
        while day <= last:
            if day not in have:
                rows.append(dict(currency=ccy, rate_date=day, rate=demo_rate(ccy, day), source="demo",
                                 fetched_at=fetched_at))
            day += timedelta(days=1)
    if rows:
        session.execute(insert(ExchangeRate), rows)
    return len(rows)


# ---------------------------------------------------------------------------------------------
# The money plan of one organisation: charges first, top-ups fitted around them
# ---------------------------------------------------------------------------------------------


@dataclass
class PlannedEntry:
    """One planned ledger entry (the amount in the organisation's currency, unrounded)."""

    at: datetime
    kind: str
    amount: Decimal
    key: str
    description: str
    fields: dict[str, Any] = field(default_factory=dict)
    post: bool = True  # False: only fitted into the top-ups (services.usage.rating posts the real entry)


class OrgBuilder:
    """Builds one organisation's history relative to ``anchor``."""

    def __init__(self, session: Session, key: str, org: Organisation, anchor: datetime,
                 users: dict[str, User]):
        self.session = session
        self.key = key
        self.org = org
        self.anchor = anchor
        self.tz = org.timezone
        self.today = clock.local_date(anchor, self.tz)
        self.users = users
        self.plans = {p.code: p for p in session.exec(select(Plan)).all()}
        self.products = {p.id: p for p in session.exec(select(Product)).all()}
        self.money: list[PlannedEntry] = []
        self.subs: dict[str, Subscription] = {}
        self.after_money: list[Callable[[], None]] = []
        self.rate_cache: dict[tuple[str, date], Decimal] = {}

    # --- dates ---------------------------------------------------------------------------------
    def day(self, offset: int) -> date:
        return self.today + timedelta(days=offset)

    def midnight(self, offset: int) -> datetime:
        return clock.local_midnight(self.day(offset), self.tz)

    def at(self, offset: int, hour: int = 10, minute: int = 0) -> datetime:
        return _at(self.day(offset), self.tz, hour, minute)

    # --- conversion ----------------------------------------------------------------------------
    def rate(self, currency: str, day: date) -> Decimal:
        if currency == self.org.billing_currency:
            return Decimal(1)
        k = (currency, day)
        if k not in self.rate_cache:
            self.rate_cache[k] = rates.conversion_rate(self.session, currency, self.org.billing_currency, day)
        return self.rate_cache[k]

    def charge(self, sub: Subscription, plan: Plan, at: datetime, source_amount: Decimal, *, key: str,
               description: str, kind: str = "charge", quantity: Decimal | int | None = None,
               unit_price: Decimal | None = None, period: tuple[datetime, datetime] | None = None,
               meta: dict | None = None, post: bool = True) -> None:
        """Plan a charge (``source_amount`` > 0 in the plan's currency); refunds pass kind=refund."""
        fx_day = clock.local_date(at, self.tz)
        rate = self.rate(plan.currency, fx_day)
        sign = Decimal(1) if kind == "refund" else Decimal(-1)
        fields: dict[str, Any] = dict(subscription_id=sub.id, meta=meta or {})
        if quantity is not None:
            fields["quantity"] = _q6(Decimal(quantity))
        if unit_price is not None:
            fields["unit_price"] = _q6(unit_price)
        if plan.currency != self.org.billing_currency:
            fields.update(source_amount=_q6(source_amount), source_currency=plan.currency, fx_rate=rate,
                          fx_date=fx_day)
        if period is not None:
            fields.update(period_start=period[0], period_end=period[1])
        self.money.append(PlannedEntry(at, kind, sign * source_amount * rate, key, description, fields, post))

    # --- subscriptions -------------------------------------------------------------------------
    def product_name(self, plan: Plan) -> str:
        return self.products[plan.product_id].name

    def subscription(self, sub_key: str, plan_code: str, *, status: str, quantity: int, term_start=None,
                     term_end=None, name: str | None = None, **kw) -> Subscription:
        plan = self.plans[plan_code]
        vendor_ref = _guid(self.key, sub_key)
        sub = Subscription(
            org_id=self.org.id, plan_id=plan.id, name=name or self.product_name(plan), status=status,
            quantity=quantity, term_start=term_start, term_end=term_end, vendor_ref=vendor_ref,
            created_at=kw.pop("created_at", term_start or self.anchor),
            activated_at=kw.pop("activated_at", term_start if status != "pending" else None), **kw)
        self.session.add(sub)
        self.session.flush()
        self.subs[sub_key] = sub
        return sub

    def batch(self, sub: Subscription, quantity: int, added_at: datetime, source: str = "purchase") -> None:
        plan = self.session.get(Plan, sub.plan_id)
        self.session.add(LicenceBatch(subscription_id=sub.id, quantity=quantity, added_at=added_at,
                                      window_ends_at=added_at + timedelta(hours=plan.cancellation_window_hours),
                                      source=source))

    def audit(self, action: str, at: datetime, *, user: str | None = "owner", sub: Subscription | None = None,
              **details) -> None:
        self.session.add(AuditEvent(org_id=self.org.id, user_id=self.users[user].id if user else None,
                                    subscription_id=sub.id if sub else None, action=action,
                                    details=details, created_at=at))

    def licence_history(self, sub_key: str, plan_code: str, *, quantity: int, first_start: datetime,
                        terms: int, status: str = "active", auto_renew: bool = True, first_quantity=None,
                        **kw) -> Subscription:
        """A licence subscription renewed ``terms - 1`` times since ``first_start``; every term
        (or monthly instalment) charged at its start."""
        plan = self.plans[plan_code]
        starts, start = [], first_start
        for _ in range(terms):
            end = proration.term_end(start, plan.term, self.tz, anchor_day=clock.local_date(first_start, self.tz).day)
            starts.append((start, end))
            start = end
        term_start, term_end = starts[-1]
        next_billing = None
        if proration.is_billed_monthly(plan.term, plan.billing_frequency):
            period = proration.billing_period(term_start, term_end, plan.term, plan.billing_frequency,
                                              min(self.anchor, term_end - timedelta(seconds=1)), self.tz)
            next_billing = proration.next_period_start(period, term_end) if status in ("active",) else None
        sub = self.subscription(sub_key, plan_code, status=status, quantity=quantity, term_start=term_start,
                                term_end=term_end, auto_renew=auto_renew, next_billing_at=next_billing,
                                created_at=first_start, activated_at=first_start, **kw)
        product = self.product_name(plan)
        seats = first_quantity or quantity
        for n, (t_start, t_end) in enumerate(starts, 1):
            if proration.is_billed_monthly(plan.term, plan.billing_frequency):
                p_start = t_start
                while p_start < min(self.anchor, t_end):
                    period = proration.billing_period(t_start, t_end, plan.term, plan.billing_frequency, p_start, self.tz)
                    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
                    self.charge(sub, plan, p_start + timedelta(minutes=5), unit * seats, quantity=seats, unit_price=unit,
                                key=f"demo:{self.key}:{sub_key}:t{n}:p{period.index + 1:02d}",
                                description=f"{product}: {seats} лиц., ежемесячный платёж "
                                            f"{period.index + 1}/12 ({_d(period.start, self.tz)}–{_d(period.end, self.tz, True)})",
                                period=(period.start, period.end), meta={"action": (
                                    "instalment" if period.index else "order" if n == 1 else "renewal")})
                    p_start = period.end
            else:
                self.charge(sub, plan, t_start + timedelta(minutes=5), plan.price * seats, quantity=seats,
                            unit_price=plan.price, key=f"demo:{self.key}:{sub_key}:t{n}",
                            description=f"{product}: {seats} лиц., {'продление' if n > 1 else 'покупка'} "
                                        f"на период {_d(t_start, self.tz)}–{_d(t_end, self.tz, True)}",
                            period=(t_start, t_end), meta={"action": "renewal" if n > 1 else "order"})
            if n == 1:
                self.audit("subscription.ordered", t_start, sub=sub, plan=plan_code, quantity=seats)
            else:
                self.audit("subscription.renewed", t_start, user=None, sub=sub, quantity=seats)
        if status in ("active", "suspended"):
            self.batch(sub, seats, term_start, "purchase" if terms == 1 else "renewal")
        return sub

    # --- the ledger ----------------------------------------------------------------------------
    def post_money(self, *, cushion: Decimal, step: Decimal, final_min: Decimal, postpaid: bool = False) -> None:
        """Post the planned charges in time order with top-ups fitted around them: a prepaid
        organisation tops up (a paid bank transfer, the one payment method there is) before a charge would take the
        balance under ``cushion``; a postpaid one pays each month's charges on the 5th of the next."""
        plan = sorted(self.money, key=lambda m: (m.at, m.key))
        entries: list[PlannedEntry] = []
        balance = Decimal(0)
        n_topup = 0

        def topup(at: datetime, amount: Decimal, method: str) -> None:
            nonlocal n_topup, balance
            n_topup += 1
            number = f"DEMO-{self.key[:3].upper()}-{n_topup:04d}"
            payment = self.session.exec(select(Payment).where(Payment.number == number)).first()
            if payment is None:
                payment = Payment(org_id=self.org.id, number=number, kind="topup", method=method, amount=amount,
                                  currency=self.org.billing_currency, status="paid", purpose="Пополнение баланса",
                                  due_date=clock.local_date(at, self.tz), paid_amount=amount,
                                  created_at=at - timedelta(hours=20), paid_at=at,
                                  created_by=self.users["owner"].id)
                self.session.add(payment)
                self.session.flush()
            meta = {"demo_anchor": self.anchor.isoformat()} if n_topup == 1 else {}
            entries.append(PlannedEntry(at, "topup", amount, f"demo:{self.key}:topup:{n_topup:03d}",
                                 f"Пополнение баланса, платёж {number}", {"payment_id": payment.id, "meta": meta}))
            balance += amount

        if postpaid:
            by_month: dict[date, Decimal] = {}
            for m in plan:
                month = clock.local_date(m.at, self.tz).replace(day=1)
                by_month[month] = by_month.get(month, Decimal(0)) + m.amount
            for m in plan:
                entries.append(m)
            for month in sorted(by_month):
                pay_day = clock.next_month(month).replace(day=5)
                if pay_day < self.today and by_month[month] < 0:
                    amount = (-by_month[month]).quantize(Decimal("0.01"))
                    topup(_at(pay_day, self.tz, 11), amount, "bank_transfer")
        else:
            for m in plan:
                if balance + m.amount < cushion:
                    need = cushion - (balance + m.amount)
                    amount = (need / step).to_integral_value(rounding=ROUND_CEILING) * step + step
                    topup(m.at - timedelta(hours=22), amount, "bank_transfer")
                entries.append(m)
                balance += m.amount
            if balance < final_min:
                amount = ((final_min - balance) / step).to_integral_value(rounding=ROUND_CEILING) * step
                topup(self.at(-2, 15), amount, "bank_transfer")

        for m in sorted(entries, key=lambda m: (m.at, m.kind != "topup", m.key)):
            if not m.post:
                continue
            entry = ledger.post(self.session, org_id=self.org.id, kind=m.kind, amount=m.amount,
                                idempotency_key=m.key, description=m.description, occurred_at=m.at,
                                created_by=None, **m.fields)
            entry.created_at = m.at
        self.session.flush()
        for fn in self.after_money:
            fn()


def _d(dt: datetime, tz: str, inclusive_end: bool = False) -> str:
    day = clock.local_date(dt, tz)
    if inclusive_end:
        day -= timedelta(days=1)
    return day.strftime("%d.%m.%Y")


# ---------------------------------------------------------------------------------------------
# Azure usage
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Meter:
    resource_group: str
    resource: str
    provider: str
    service: str
    meter: str
    unit: str
    price: Decimal  # USD per unit
    pattern: str  # always | traffic | storage | business_hours | daytime
    since_days: int = USAGE_DAYS  # how many days back the resource exists


ROMASHKA_AZURE = [
    Meter("rg-prod-web", "vm-web-01", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "D2s v5 — Linux", "1 Hour", Decimal("0.096"), "always"),
    Meter("rg-prod-web", "vm-web-02", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "D2s v5 — Linux", "1 Hour", Decimal("0.096"), "always", since_days=58),
    Meter("rg-prod-web", "app-romashka-shop", "Microsoft.Web/sites", "App Service",
          "P1 v3 App", "1 Hour", Decimal("0.238"), "always"),
    Meter("rg-prod-web", "agw-romashka", "Microsoft.Network/applicationGateways", "Bandwidth",
          "Standard Data Transfer Out", "1 GB", Decimal("0.087"), "traffic"),
    Meter("rg-prod-db", "sqldb-romashka-erp", "Microsoft.Sql/servers/databases", "SQL Database",
          "S2 DTUs", "1 Hour", Decimal("0.100800"), "always"),
    Meter("rg-prod-db", "stromashkabackup", "Microsoft.Storage/storageAccounts", "Storage",
          "Hot LRS Data Stored", "1 GB/Month", Decimal("0.0208"), "storage"),
    Meter("rg-dev", "vm-dev-01", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "D4s v5 — Windows", "1 Hour", Decimal("0.376"), "business_hours"),
    Meter("rg-monitoring", "log-romashka", "Microsoft.OperationalInsights/workspaces", "Log Analytics",
          "Analytics Logs Data Ingestion", "1 GB", Decimal("2.76"), "daytime"),
]

VOSTOK_AZURE = [
    Meter("rg-erp", "vm-erp-01", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "B4ms — Windows", "1 Hour", Decimal("0.2160"), "always", since_days=60),
    Meter("rg-erp", "sterpbackup", "Microsoft.Storage/storageAccounts", "Storage",
          "Cool LRS Data Stored", "1 GB/Month", Decimal("0.0115"), "storage", since_days=60),
    Meter("rg-erp", "vnet-erp", "Microsoft.Network/virtualNetworks", "Bandwidth",
          "Standard Data Transfer Out", "1 GB", Decimal("0.087"), "traffic", since_days=60),
    Meter("rg-erp", "kv-vostok", "Microsoft.KeyVault/vaults", "Key Vault",
          "Operations", "10K", Decimal("0.03"), "daytime", since_days=60),
]

_DAY_CURVE = [0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.4, 0.65, 0.85, 1.0, 1.0, 0.95,
              0.9, 0.95, 1.0, 0.95, 0.85, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2]


def _quantity(m: Meter, rng: random.Random, local_hour: int, weekday: int, day_index: int, hours: int) -> Optional[Decimal]:
    """Usage of one meter over ``hours`` hours (1 or 24); None when the resource is off."""
    if m.pattern == "always":
        return Decimal(hours)
    weekend = weekday >= 5
    if m.pattern == "business_hours":
        if hours == 24:
            return None if weekend else Decimal(10)
        return Decimal(1) if (not weekend and 9 <= local_hour < 19) else None
    if m.pattern == "storage":
        gb = 420 + day_index * 1.9 + rng.uniform(-2, 2)
        return _q6(Decimal(f"{gb:.3f}") * hours / 730)
    curve = sum(_DAY_CURVE) if hours == 24 else _DAY_CURVE[local_hour]
    factor = 0.55 if weekend else 1.0
    noise = rng.uniform(0.85, 1.2)
    if m.pattern == "traffic":
        return _q6(Decimal(f"{(0.15 * hours + 1.6 * curve) * factor * noise:.4f}"))
    if m.pattern == "daytime":
        return _q6(Decimal(f"{(0.004 * hours + 0.045 * curve) * factor * noise:.5f}"))
    raise ValueError(m.pattern)  # pragma: no cover


def usage_rows(org: Organisation, sub: Subscription, meters: list[Meter], anchor: datetime, *,
               granularity: str, days: int = USAGE_DAYS, seed: str = "") -> list[dict]:
    """Usage records of the last ``days`` days before ``anchor`` (hourly or daily), as row dicts."""
    tz = org.timezone
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
    hours = 1 if granularity == "hour" else 24
    if granularity == "hour":
        end = _hour_floor(anchor)
        start = end - timedelta(days=days)
    else:
        end = clock.local_midnight(clock.local_date(anchor, tz), tz)
        start = clock.local_midnight(clock.local_date(anchor, tz) - timedelta(days=days), tz)
    first_day = clock.local_date(start, tz)
    zone = ZoneInfo(tz)
    rows: list[dict] = []
    for m in meters:
        rng = random.Random(f"{seed}:{sub.vendor_ref}:{m.resource}:{m.meter}")
        resource_id = (f"/subscriptions/{sub.vendor_ref}/resourceGroups/{m.resource_group}/providers/"
                       f"{m.provider}/{m.resource}")
        since = end - timedelta(days=m.since_days)
        t = start
        while t < end:
            local = t.astimezone(zone)
            if t >= since:
                q = _quantity(m, rng, local.hour, local.weekday(), (local.date() - first_day).days, hours)
                if q is not None and q > 0:
                    key = hashlib.sha256(f"demo:{sub.vendor_ref}:{resource_id}:{m.meter}:{t.isoformat()}".encode()).hexdigest()
                    rows.append(dict(
                        org_id=org.id, subscription_id=sub.id, period_start=t, period_end=t + step,
                        service=m.service, meter=m.meter, resource_group=m.resource_group, resource_id=resource_id,
                        resource_name=m.resource, quantity=q, unit=m.unit, cost=_q6(q * m.price), currency="USD",
                        source="demo", source_key=key, imported_at=t + step + timedelta(minutes=40),
                    ))
            t += step
    return rows


def rate_usage_daily(b: OrgBuilder, sub: Subscription, rows: list[dict]) -> None:
    """Size the top-ups for the usage of the history, one planned charge per local day.

    Nothing is posted here: ``load`` runs ``services.usage.rating`` after the commit, which charges every
    record exactly as the rating job does."""
    plan = b.session.get(Plan, sub.plan_id)
    markup = Decimal(1) + plan.usage_markup_pct / 100
    by_day: dict[date, list[dict]] = {}
    for row in rows:
        by_day.setdefault(clock.local_date(row["period_start"], b.tz), []).append(row)
    for day, day_rows in sorted(by_day.items()):
        cost = sum((r["cost"] for r in day_rows), Decimal(0))
        start, end = clock.day_bounds(day, b.tz)
        b.charge(sub, plan, start, _q6(cost * markup), kind="usage",
                 key=f"demo:{b.key}:{_sub_key(b, sub)}:usage:{day.isoformat()}",
                 description=f"{b.product_name(plan)}: потребление за {day.strftime('%d.%m.%Y')}",
                 period=(start, end), post=False)


def _sub_key(b: OrgBuilder, sub: Subscription) -> str:
    return next(k for k, s in b.subs.items() if s is sub)


def insert_usage(session: Session, rows: list[dict], chunk: int = 5000) -> None:
    for i in range(0, len(rows), chunk):
        session.execute(insert(UsageRecord), rows[i:i + chunk])


# ---------------------------------------------------------------------------------------------
# Mail
# ---------------------------------------------------------------------------------------------


def _mail(session: Session, user: User, org: Organisation, kind: str, context: dict, at: datetime, key: str,
          *, sent: bool = True) -> Optional[Notification]:
    from noventiq_panel.services.notify import notifications

    try:
        row = notifications.notify_user(session, user, kind, context, org_id=org.id, dedupe_key=f"demo:{key}",
                                        now=at)
    except Exception as exc:  # templates of a kind not written yet: the demo still loads
        log.warning("demo: mail %s skipped (%s)", kind, exc)
        return None
    if sent and row.status == NotificationStatus.QUEUED and row.sent_at is None:
        row.status, row.sent_at, row.attempts = NotificationStatus.SENT, at + timedelta(minutes=1), 1
        session.add(row)
    return row


# ---------------------------------------------------------------------------------------------
# «ООО «Ромашка»»
# ---------------------------------------------------------------------------------------------


def _build_romashka(b: OrgBuilder) -> None:
    s = b.session
    tz = b.tz
    users = b.users
    today = b.today

    # Microsoft 365 Business Standard, a year paid upfront: 20 seats, +5 three days ago (still
    # inside the 168-hour window), a decrease back to 20 scheduled at renewal.
    first = b.midnight(-300) + timedelta(hours=11)
    bs = b.licence_history("m365-bs", "m365-bs-1y", quantity=25, first_quantity=20, first_start=first, terms=1)
    plan = b.plans["m365-bs-1y"]
    inc_at = b.at(-3, 14, 20)
    remaining, total = proration.days_remaining(bs.term_start, bs.term_end, inc_at, tz)
    b.charge(bs, plan, inc_at, proration.prorate(plan.price * 5, remaining, total), quantity=5, unit_price=plan.price,
             key="demo:romashka:m365-bs:inc:1",
             description=f"Microsoft 365 Business Standard: +5 лиц. (20 → 25), пропорционально за {remaining} из {total} дн.",
             period=(inc_at, bs.term_end), meta={"action": "increase", "remaining_days": remaining, "total_days": total})
    b.batch(bs, 5, inc_at, "increase")
    b.audit("subscription.quantity_changed", inc_at, user="admin", sub=bs, old_quantity=20, new_quantity=25)

    # Microsoft 365 Business Basic, monthly, renewed five times; renews in 4 days; a decrease to
    # 10 seats is scheduled for the renewal.
    bb_first = clock.local_midnight(clock.add_months(b.day(4), -6), tz) + timedelta(hours=9, minutes=30)
    bb = b.licence_history("m365-bb", "m365-bb-1m", quantity=12, first_start=bb_first, terms=6)
    s.add(ScheduledChange(subscription_id=bb.id, kind="quantity", new_quantity=10, effective_at=bb.term_end,
                          created_by=users["admin"].id, created_at=b.at(-12, 16)))
    b.audit("subscription.decrease_scheduled", b.at(-12, 16), user="admin", sub=bb, old_quantity=12, new_quantity=10,
            effective_at=bb.term_end.isoformat())

    # Microsoft 365 Business Premium, a year billed monthly, started ~100 days ago.
    b.licence_history("m365-bp", "m365-bp-1y-m", quantity=5, first_start=b.midnight(-100) + timedelta(hours=12),
                      terms=1)

    # Exchange Online, monthly, auto-renew off: ends in 2 days.
    exo_first = clock.local_midnight(clock.add_months(b.day(2), -3), tz) + timedelta(hours=15)
    exo = b.licence_history("exo", "exo-p1-1m", quantity=8, first_start=exo_first, terms=3, auto_renew=False,
                            name="Exchange Online — почта склада")
    b.audit("subscription.auto_renew_off", b.at(-9, 10), user="admin", sub=exo)

    # Teams Essentials, monthly, suspended by the administrator 6 days ago.
    teams_first = clock.local_midnight(clock.add_months(b.day(10), -4), tz) + timedelta(hours=10)
    teams = b.licence_history("teams", "teams-ess-1m", quantity=10, first_start=teams_first, terms=4,
                              status="suspended", auto_renew=False, suspended_at=b.at(-6, 17, 45))
    b.audit("subscription.suspended", b.at(-6, 17, 45), user="admin", sub=teams, reason="manual")

    # Kaspersky, a year paid upfront in UZS: renews in 20 days.
    b.licence_history("kes", "kes-cloud-1y", quantity=30, first_start=clock.local_midnight(
        clock.add_months(b.day(20), -12), tz) + timedelta(hours=11), terms=1)

    # 1C in the cloud, a year paid upfront in UZS.
    b.licence_history("1c", "1c-fresh-1y", quantity=3, first_start=b.midnight(-150) + timedelta(hours=16), terms=1)

    # Adobe Creative Cloud, a year billed monthly, started 40 days ago.
    b.licence_history("adobe", "adobe-cc-1y-m", quantity=2, first_start=b.midnight(-40) + timedelta(hours=13),
                      terms=1)

    # Dropbox, monthly, auto-renew off: expired 15 days ago.
    drop_first = clock.local_midnight(clock.add_months(b.day(-15), -2), tz) + timedelta(hours=12)
    drop = b.licence_history("dropbox", "dropbox-std-1m", quantity=3, first_start=drop_first, terms=2,
                             status="expired", auto_renew=False)
    b.audit("subscription.expired", drop.term_end, user=None, sub=drop)

    # Zoom, ordered 45 days ago and cancelled the next day inside the cancellation window: refunded.
    zoom_plan = b.plans["zoom-pro-1m"]
    z_start = b.at(-45, 11)
    z_end = proration.term_end(z_start, "month", tz)
    zoom = b.subscription("zoom", "zoom-pro-1m", status="cancelled", quantity=2, term_start=z_start, term_end=z_end,
                          auto_renew=False, cancelled_at=b.at(-44, 9, 15))
    b.charge(zoom, zoom_plan, z_start + timedelta(minutes=5), zoom_plan.price * 2, quantity=2,
             unit_price=zoom_plan.price, key="demo:romashka:zoom:t1",
             description=f"Zoom Workplace Pro: 2 лиц., покупка на период {_d(z_start, tz)}–{_d(z_end, tz, True)}",
             period=(z_start, z_end), meta={"action": "order"})
    remaining, total = proration.days_remaining(z_start, z_end, zoom.cancelled_at, tz)
    b.charge(zoom, zoom_plan, zoom.cancelled_at, proration.prorate(zoom_plan.price * 2, remaining, total), kind="refund",
             quantity=2, unit_price=zoom_plan.price, key="demo:romashka:zoom:refund",
             description=f"Zoom Workplace Pro: отмена подписки, возврат за {remaining} из {total} дн.",
             period=(zoom.cancelled_at, z_end), meta={"action": "cancel", "remaining_days": remaining,
                                                      "total_days": total})
    b.audit("subscription.ordered", z_start, sub=zoom, plan="zoom-pro-1m", quantity=2)
    b.audit("subscription.cancelled", zoom.cancelled_at, sub=zoom, refund_days=remaining)

    # Figma, ordered yesterday, waiting for the vendor's provisioning.
    figma = b.subscription("figma", "figma-pro-1m", status="pending", quantity=4, created_at=b.at(-1, 16, 40))
    b.audit("subscription.ordered", figma.created_at, user="admin", sub=figma, plan="figma-pro-1m", quantity=4)

    # Two trials: Acronis converts to the paid plan in 6 days; Google Workspace ends in 20 days.
    for sub_key, code, qty, ends, convert in (("acronis-trial", "acronis-cp-trial", 5, 6, True),
                                              ("gws-trial", "gws-starter-trial", 5, 20, False)):
        t_start = b.at(ends - 30, 10, 10)
        t_end = proration.trial_end(t_start, 30, tz)
        trial = b.subscription(sub_key, code, status="trial", quantity=qty, term_start=t_start, term_end=t_end,
                               is_trial=True, trial_ends_at=t_end, trial_convert=convert, auto_renew=convert)
        b.batch(trial, qty, t_start, "purchase")
        b.audit("subscription.trial_started", t_start, user="admin", sub=trial, plan=code, quantity=qty)

    # Microsoft Azure, pay-as-you-go hourly, since 200 days; 120 days of usage; a budget.
    az_start = b.at(-200, 14)
    azure = b.subscription("azure", "azure-payg-hourly", status="active", quantity=1, term_start=az_start,
                           name="Microsoft Azure — интернет-магазин и ERP")
    b.audit("subscription.ordered", az_start, sub=azure, plan="azure-payg-hourly", quantity=1)
    rows = usage_rows(b.org, azure, ROMASHKA_AZURE, b.anchor, granularity="hour", seed="romashka")
    rate_usage_daily(b, azure, rows)
    b.after_money.append(lambda: insert_usage(s, rows))

    budget_amount = Decimal("8000000.00")
    budget = Budget(org_id=b.org.id, subscription_id=azure.id, amount=budget_amount, currency="UZS",
                    thresholds=[{"percent": "50", "type": "actual"}, {"percent": "80", "type": "actual"},
                                {"percent": "100", "type": "actual"}, {"percent": "100", "type": "forecast"}],
                    recipient_user_ids=[users["owner"].id, users["finance"].id], extra_emails=["it@romashka.uz"],
                    created_at=b.at(-75, 11), updated_at=b.at(-75, 11))
    s.add(budget)
    s.flush()
    b.audit("budget.set", budget.created_at, sub=azure, amount=str(budget_amount), currency="UZS")

    def budget_alerts() -> None:
        # Last month's actual thresholds, in the order the (planned) daily usage crossed them.
        month = clock.prev_month(today.replace(day=1))
        m_start, m_end = clock.month_bounds(month, tz)
        usage = sorted((m for m in b.money if m.kind == "usage" and m.fields.get("subscription_id") == azure.id
                        and m_start <= m.fields["period_start"] < m_end), key=lambda m: m.fields["period_start"])
        spent = Decimal(0)
        crossed: set[str] = set()
        for entry in usage:
            spent += -entry.amount
            for pct in ("50", "80", "100"):
                if pct not in crossed and spent >= budget_amount * Decimal(pct) / 100:
                    crossed.add(pct)
                    at = entry.fields["period_end"] + timedelta(hours=1)
                    shown = spent.quantize(Decimal("0.01"))
                    s.add(BudgetAlert(budget_id=budget.id, month=month, percent=pct, kind="actual", spent=shown,
                                      created_at=at))
                    for role in ("owner", "finance"):
                        _mail(s, users[role], b.org, "budget_threshold", dict(
                            budget_name="Бюджет Azure", product="Microsoft Azure", threshold=Decimal(pct),
                            threshold_type="actual", budget_amount=budget_amount, spent=shown, currency="UZS",
                            month=month, subscription_id=azure.id), at, f"romashka:budget:{month}:{pct}:{role}")

    b.after_money.append(budget_alerts)

    # A top-up invoice waiting to be paid.
    number = "DEMO-ROM-INV-0001"
    if s.exec(select(Payment).where(Payment.number == number)).first() is None:
        s.add(Payment(org_id=b.org.id, number=number, kind="topup", method="bank_transfer",
                      amount=Decimal("20000000.00"), currency="UZS", status="pending",
                      purpose="Пополнение баланса по счёту", due_date=b.day(5), created_at=b.at(-1, 11, 5),
                      created_by=users["owner"].id))

    # People.
    b.audit("user.invited", b.at(-280, 12), user="owner", email="admin@demo.example", role="admin")
    b.audit("user.invited", b.at(-279, 15), user="owner", email="finance@demo.example", role="finance")

    def mails() -> None:
        org = b.org
        bal = ledger.balance(s, org.id)
        _mail(s, users["owner"], org, "welcome", {"org_name": org.name}, first - timedelta(days=2),
              "romashka:welcome:owner")
        _mail(s, users["admin"], org, "invite", {"org_name": org.name, "inviter_name": users["owner"].name,
                                                 "role": "admin"}, b.at(-280, 12), "romashka:invite:admin")
        last_topup = s.exec(select(LedgerEntry).where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "topup")
                            .order_by(LedgerEntry.occurred_at.desc())).first()
        if last_topup is not None:
            for role in ("owner", "finance"):
                _mail(s, users[role], org, "payment_received", {
                    "amount": last_topup.amount, "currency": "UZS",
                    "balance": ledger.balance(s, org.id, until=last_topup.occurred_at + timedelta(seconds=1)),
                    "method": "bank_transfer"}, last_topup.occurred_at + timedelta(minutes=2),
                    f"romashka:payment:{last_topup.idempotency_key}:{role}")
        bb_price = b.plans["m365-bb-1m"].price * 10 * b.rate("USD", today)
        _mail(s, users["owner"], org, "renewal_reminder", {
            "product": "Microsoft 365 Business Basic", "renew_on": clock.local_date(bb.term_end, tz),
            "amount": bb_price.quantize(Decimal("0.01")), "currency": "UZS", "balance": bal,
            "subscription_id": bb.id}, b.at(-3, 9), "romashka:renewal_reminder:m365-bb")
        _mail(s, users["owner"], org, "expiry_reminder", {
            "product": "Exchange Online (план 1)", "expires_on": clock.local_date(exo.term_end, tz),
            "subscription_id": exo.id}, b.at(-5, 9), "romashka:expiry_reminder:exo")
        acr = b.subs["acronis-trial"]
        _mail(s, users["admin"], org, "trial_reminder", {
            "product": "Acronis Cyber Protect Cloud", "trial_ends_on": clock.local_date(acr.trial_ends_at, tz),
            "converts": True, "amount": (b.plans["acronis-cp-1m"].price * 5 * b.rate("USD", today)).quantize(
                Decimal("0.01")), "currency": "UZS", "subscription_id": acr.id}, b.at(-1, 9),
            "romashka:trial_reminder:acronis", sent=False)
        _mail(s, users["owner"], org, "suspended", {
            "product": "Microsoft Teams Essentials", "suspended_on": clock.local_date(teams.suspended_at, tz),
            "reason": "manual", "subscription_id": teams.id}, teams.suspended_at, "romashka:suspended:teams")
        _mail(s, users["owner"], org, "expired", {
            "product": "Dropbox Standard для команд", "expired_on": clock.local_date(drop.term_end, tz),
            "subscription_id": drop.id}, drop.term_end, "romashka:expired:dropbox")
        _mail(s, users["admin"], org, "licence_changed", {
            "product": "Microsoft 365 Business Standard", "old_quantity": 20, "new_quantity": 25,
            "amount": -s.exec(select(LedgerEntry.amount).where(
                LedgerEntry.idempotency_key == "demo:romashka:m365-bs:inc:1")).one(),
            "currency": "UZS", "subscription_id": bs.id}, inc_at, "romashka:licence_changed:m365-bs:inc")

    b.after_money.append(mails)
    b.post_money(cushion=Decimal("3000000"), step=Decimal("5000000"), final_min=Decimal("18000000"))


# ---------------------------------------------------------------------------------------------
# «ООО «Восток Трейд»»
# ---------------------------------------------------------------------------------------------


def _build_vostok(b: OrgBuilder) -> None:
    s = b.session
    b.licence_history("m365-bb", "m365-bb-1y", quantity=15,
                      first_start=b.midnight(-130) + timedelta(hours=10), terms=1)
    b.licence_history("kes", "kes-cloud-1m", quantity=20,
                      first_start=clock.local_midnight(clock.add_months(b.day(12), -3), b.tz) + timedelta(hours=10),
                      terms=3)
    b.licence_history("y360", "y360-basic-1m", quantity=15,
                      first_start=clock.local_midnight(clock.add_months(b.day(8), -2), b.tz) + timedelta(hours=16),
                      terms=2)
    az_start = b.at(-60, 12)
    azure = b.subscription("azure", "azure-payg-daily", status="active", quantity=1, term_start=az_start,
                           name="Microsoft Azure — ERP")
    b.audit("subscription.ordered", az_start, sub=azure, plan="azure-payg-daily", quantity=1)
    rows = usage_rows(b.org, azure, VOSTOK_AZURE, b.anchor, granularity="day", days=60, seed="vostok")
    rate_usage_daily(b, azure, rows)
    b.after_money.append(lambda: insert_usage(s, rows))
    b.audit("user.invited", b.at(-125, 12), user="owner", email="admin@other.example", role="admin")

    def mails() -> None:
        _mail(s, b.users["owner"], b.org, "welcome", {"org_name": b.org.name}, b.midnight(-131) + timedelta(hours=9),
              "vostok:welcome:owner")

    b.after_money.append(mails)
    b.post_money(cushion=Decimal(0), step=Decimal("1000000"), final_min=Decimal(0), postpaid=True)


BUILDERS = {"romashka": _build_romashka, "vostok": _build_vostok}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def load(session: Session, *, now: datetime | None = None, catalog_path: Path | str = DEMO_CATALOG) -> DemoResult:
    """Load the demo data (idempotent) and commit. ``now`` only matters on the first run."""
    anchor = find_anchor(session) or _hour_floor(now or clock.utcnow())
    result = DemoResult(anchor=anchor)
    try:
        result.catalog = catalog_import.apply_catalog(
            session, catalog_import.validate_catalog(Path(catalog_path).read_text(encoding="utf-8"),
                                                     filename=str(catalog_path), session=session))
        # Rates for every day the history touches (a year and a bit back) and the next few days.
        ensure_rates(session, clock.local_date(anchor, "Asia/Tashkent") - timedelta(days=max(RATE_DAYS, 400)),
                     clock.local_date(anchor, "Asia/Tashkent"))
        for key, build in BUILDERS.items():
            org = _ensure_org(session, key)
            result.org_ids[key] = org.id
            already_built = ledger.find(session, _marker_key(key)) is not None
            users = {}
            for login in LOGINS:
                if login.org_key == key:
                    users[login.role] = _ensure_user(session, login, org, anchor - timedelta(days=420))
            if already_built:
                continue  # this organisation's history is already there
            org.created_at = anchor - timedelta(days=420)
            session.add(org)
            build(OrgBuilder(session, key, org, anchor, users))
            result.created_orgs.append(key)
        session.commit()
    except Exception:
        session.rollback()
        raise
    # Charges the demo's usage like the rating job (every record once; a rerun adds nothing).
    result.rating = str(rating.rate_usage(session, now=max(anchor, clock.aware(now or clock.utcnow()))))
    refresh_rollup(session)
    return result


def refresh_rollup(session: Session) -> int:
    """Rebuild the analytics roll-up (``UsageDaily``) of the demo's pay-as-you-go subscriptions,
    when ``services.reporting.analytics`` provides it (a rebuild writes the same rows again)."""
    try:
        from noventiq_panel.services.reporting import analytics
    except ImportError:  # pragma: no cover
        return 0
    if not hasattr(analytics, "refresh_daily_rollup"):  # pragma: no cover
        return 0
    from sqlalchemy import func

    written = 0
    for key in ORGS:
        sub = session.exec(select(Subscription).where(Subscription.vendor_ref == _guid(key, "azure"))).first()
        if sub is None:
            continue
        org = session.get(Organisation, sub.org_id)
        first, last = session.exec(select(func.min(UsageRecord.period_start), func.max(UsageRecord.period_start))
                                   .where(UsageRecord.subscription_id == sub.id)).one()
        if first is None:
            continue
        day, stop = clock.local_date(clock.aware(first), org.timezone), clock.local_date(clock.aware(last), org.timezone)
        days = []
        while day <= stop:
            days.append(day)
            day += timedelta(days=1)
        written += analytics.refresh_daily_rollup(session, [sub.id], days)
    session.commit()
    return written


def describe(session: Session) -> dict[str, Any]:
    """Row counts and balances (what ``demo`` prints, and what the idempotency test compares)."""
    from sqlalchemy import func

    from noventiq_panel import models

    counts = {}
    for name, table in sorted(models.metadata.tables.items()):
        counts[name] = session.exec(select(func.count()).select_from(table)).one()
    balances = {o.name: ledger.balance(session, o.id) for o in session.exec(select(Organisation)).all()}
    return {"counts": counts, "balances": balances}
