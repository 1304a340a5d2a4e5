"""Small builders for test data. They write through the models (and the ledger for money)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlmodel import Session

from noventiq_panel.models import Membership, Organisation, Plan, Product, Role, User, Vendor
from noventiq_panel.services.core import ledger, rates
from noventiq_panel.services.core.authz import Actor


_tax_ids = iter(range(310000000, 399999999))


def org(session: Session, name: str = "ООО «Тест»", **kw) -> Organisation:
    """An organisation; its tax id is a fresh 9-digit one unless given (tax ids are unique)."""
    o = Organisation(name=name, tax_id=kw.pop("tax_id") if "tax_id" in kw else str(next(_tax_ids)), **kw)
    session.add(o)
    session.commit()
    return o


VERIFIED = datetime(2020, 1, 1, tzinfo=timezone.utc)  # the mailbox of a test user is proven (``email_verified_at=None``: not)


def user(session: Session, organisation: Organisation | None, role: str = Role.OWNER, email: str | None = None,
         **kw) -> User:
    import uuid

    kw.setdefault("email_verified_at", VERIFIED)
    u = User(email=email or f"u{uuid.uuid4().hex[:8]}@example.com", name=kw.pop("name", "Тест Тестов"), **kw)
    session.add(u)
    session.commit()
    if organisation is not None:
        session.add(Membership(user_id=u.id, org_id=organisation.id, role=role))
        session.commit()
    return u


def actor(u: User, o: Organisation) -> Actor:
    return Actor(user_id=u.id, org_id=o.id)


def topup(session: Session, o: Organisation, amount: str | Decimal, key: str | None = None):
    import uuid

    entry = ledger.post(session, org_id=o.id, kind="topup", amount=Decimal(amount),
                        idempotency_key=key or f"test-topup-{uuid.uuid4().hex}", description="test top-up")
    session.commit()
    return entry


def catalog(session: Session) -> dict[str, Plan]:
    """A vendor, two licence products and a pay-as-you-go one; plans by code. Prices in UZS unless noted."""
    v = Vendor(code="ms", name="Microsoft", portal_url="https://admin.microsoft.com")
    session.add(v)
    session.commit()
    basic = Product(code="m365-basic", vendor_id=v.id, name="Microsoft 365 Business Basic", category="Office")
    std = Product(code="m365-std", vendor_id=v.id, name="Microsoft 365 Business Standard", category="Office")
    azure = Product(code="azure", vendor_id=v.id, name="Microsoft Azure", category="IaaS")
    session.add_all([basic, std, azure])
    session.commit()
    plans = {
        "basic-m": Plan(code="basic-m", product_id=basic.id, name="Basic, month", term="month",
                        billing_frequency="upfront", price=Decimal("30000"), currency="UZS",
                        allowed_changes=["std-m"], suspendable=True),
        "basic-y": Plan(code="basic-y", product_id=basic.id, name="Basic, year", term="year",
                        billing_frequency="upfront", price=Decimal("360000"), currency="UZS"),
        "basic-ym": Plan(code="basic-ym", product_id=basic.id, name="Basic, year billed monthly", term="year",
                         billing_frequency="monthly", price=Decimal("360000"), currency="UZS"),
        "basic-trial": Plan(code="basic-trial", product_id=basic.id, name="Basic, trial", term="month",
                            billing_frequency="upfront", price=Decimal("0"), currency="UZS", trial_days=30,
                            trial_max_quantity=25, trial_converts_to="basic-m"),
        "std-m": Plan(code="std-m", product_id=std.id, name="Standard, month", term="month",
                      billing_frequency="upfront", price=Decimal("90000"), currency="UZS",
                      allowed_changes=["basic-m"], suspendable=True),
        "std-usd": Plan(code="std-usd", product_id=std.id, name="Standard, month (USD)", term="month",
                        billing_frequency="upfront", price=Decimal("12.50"), currency="USD"),
        "azure-h": Plan(code="azure-h", product_id=azure.id, name="Azure, hourly", billing_type="payg",
                        term=None, billing_frequency=None, granularity="hour", currency="USD", min_quantity=1,
                        max_quantity=1),
        "azure-d": Plan(code="azure-d", product_id=azure.id, name="Azure, daily", billing_type="payg",
                        term=None, billing_frequency=None, granularity="day", currency="USD", min_quantity=1,
                        max_quantity=1),
    }
    session.add_all(plans.values())
    session.commit()
    return plans


def usd_rate(session: Session, day: date, rate: str = "12000.00") -> None:
    rates.store_rate(session, "USD", day, Decimal(rate), source="manual")
    session.commit()


def mailed_token(session: Session, mail) -> str:
    """The secret of a mail's link (set-password, reset, verify): kept beside the outbox until
    the mail is sent, never in the stored body (which holds the mark in its place)."""
    from noventiq_panel.services.notify import notifications

    held = notifications.mail_secret(session, mail.id)
    assert held is not None, f"no secret waits for mail #{mail.id}"
    assert held.mark in mail.body_text and held.secret not in mail.body_text, mail.body_text
    return held.secret
