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

This module holds who is who (organisations, users), the demo's exchange rates and the loader;
``histories`` tells the two organisations' stories with ``builder.OrgBuilder``; ``azure_usage``
makes their usage records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel import models
from noventiq_panel.db import BulkInsert
from noventiq_panel.models import ExchangeRate, Membership, Organisation, User
from noventiq_panel.services.catalog import catalog_import
from noventiq_panel.services.core import clock, ledger
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.demo.builder import OrgBuilder, hour_floor, marker_key
from noventiq_panel.services.demo.histories import BUILDERS
from noventiq_panel.services.identity.auth import hash_password
from noventiq_panel.services.usage import rollup
from noventiq_panel.services.usage import anomalies, rating

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "demo" / "catalog.yaml"
DEMO_PASSWORD = "demo12345"
RATE_DAYS = 120


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
        vat_reg_code="326060512874",
        bank_mfo="00873",
        bank_account="20208000405512874001",
        oked="46510",
        director="Каримов Алишер Рустамович",
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
        vat_reg_code="326070441096",
        bank_mfo="00083",
        bank_account="20208000900441096002",
        oked="46900",
        director="Юсупов Тимур Бахтиярович",
        contract_no="NQ-2026/117",
        contract_date=date(2026, 2, 2),
        billing_currency="UZS",
        timezone="Asia/Tashkent",
        billing_mode="postpaid",
        credit_limit=Decimal("40000000.00"),
        low_balance_threshold=None,
    ),
}

# what the electronic invoices (services/billing/esf.py) name beside the tax id and address
ESF_REQUISITES = ("vat_reg_code", "bank_mfo", "bank_account", "oked", "director", "contract_no", "contract_date")

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
    anomalies: str = ""


# ---------------------------------------------------------------------------------------------
# Organisations and users
# ---------------------------------------------------------------------------------------------

_hashes: dict[str, str] = {}


def _hash_password(password: str) -> str:
    """The auth module's hash of the demo password, computed once per process (argon2 is slow on
    purpose; the demo users share the password anyway)."""
    if password not in _hashes:
        _hashes[password] = hash_password(password)
    return _hashes[password]


def _ensure_org(session: Session, key: str) -> Organisation:
    spec = ORGS[key]
    org = session.exec(select(Organisation).where(Organisation.tax_id == spec["tax_id"],
                                                  Organisation.name == spec["name"])).first()
    if org is None:
        org = Organisation(**spec)
        session.add(org)
        session.flush()
    else:  # a demo database made before the electronic invoices: give it their requisites
        for name in ESF_REQUISITES:
            if not getattr(org, name) and spec.get(name):
                setattr(org, name, spec[name])
    return org


def _ensure_user(session: Session, login: DemoLogin, org: Organisation, created_at: datetime) -> User:
    user = session.exec(select(User).where(User.email == login.email)).first()
    if user is None:
        user = User(email=login.email, name=login.name, password_hash=_hash_password(DEMO_PASSWORD),
                    locale="ru", created_at=created_at, email_verified_at=created_at)
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


_RATE_COLUMNS = ("currency", "rate_date", "rate", "source", "fetched_at")


def ensure_rates(session: Session, first: date, last: date, currencies=("USD", "EUR", "RUB")) -> int:
    """Store the demo rate of every day in [first, last] that has none yet (one bulk insert);
    how many were added. A stored rate (the CBU's, a manual one) is never replaced."""
    rows = []
    fetched_at = clock.utcnow()
    for ccy in currencies:
        have = set(session.exec(select(ExchangeRate.rate_date).where(
            ExchangeRate.currency == ccy, ExchangeRate.rate_date >= first, ExchangeRate.rate_date <= last)).all())
        day = first
        while day <= last:
            if day not in have:
                rows.append((ccy, day, demo_rate(ccy, day), "demo", fetched_at))
            day += timedelta(days=1)
    return BulkInsert(session, ExchangeRate.__table__, _RATE_COLUMNS).insert(rows)


# ---------------------------------------------------------------------------------------------
# Anchor: the demo's "now", fixed at the first run
# ---------------------------------------------------------------------------------------------


def find_anchor(session: Session) -> Optional[datetime]:
    for org_key in ORGS:
        entry = ledger.find(session, marker_key(org_key))
        if entry is not None and entry.meta.get("demo_anchor"):
            return datetime.fromisoformat(entry.meta["demo_anchor"])
    return None


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def foreign_data(session: Session) -> tuple[list[str], list[str]]:
    """Organisations and users the demo did not create (names, e-mails): a demo organisation is one
    whose history the demo posted (its marker entry), a demo user one of :data:`LOGINS`."""
    demo_org_ids = set(session.exec(select(models.LedgerEntry.org_id).where(
        models.LedgerEntry.idempotency_key.in_([marker_key(k) for k in ORGS]))).all())
    orgs = [o.name for o in session.exec(select(Organisation).order_by(Organisation.id)).all()
            if o.id not in demo_org_ids]
    logins = {login.email for login in LOGINS}
    users = [u.email for u in session.exec(select(User).order_by(User.id)).all() if u.email not in logins]
    return orgs, users


def load(session: Session, *, now: datetime | None = None, catalog_path: Path | str = DEMO_CATALOG) -> DemoResult:
    """Load the demo data (idempotent) and commit. ``now`` only matters on the first run.

    Refuses (Conflict ``demo.foreign_data``, nothing written) a database that holds organisations
    or users the demo did not create: demo users have a published password, and the loader would
    take over an organisation or a user that happened to match a demo one."""
    foreign_orgs, foreign_users = foreign_data(session)
    session.rollback()
    if foreign_orgs or foreign_users:
        raise Conflict(f"the database holds {len(foreign_orgs)} organisation(s) and {len(foreign_users)} user(s) "
                       "the demo did not create: demo data (with its published password) goes only into a "
                       "database of its own", key="demo.foreign_data")
    anchor = find_anchor(session) or hour_floor(now or clock.utcnow())
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
            already_built = ledger.find(session, marker_key(key)) is not None
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
    # The records went in without the importer, which keeps the roll-up: rebuild it (the same rows).
    for org_id in result.org_ids.values():
        rollup.rebuild_rollup(session, org_id)
    # The daily cost anomaly job at the end of the history (the GPU machine's day is one). Only
    # when the history is new: later, the history has stopped and its silence is no drop.
    if result.created_orgs:
        result.anomalies = str(anomalies.detect(session, now=anchor))
    return result


def describe(session: Session) -> dict[str, Any]:
    """Row counts and balances (what ``demo`` prints, and what the idempotency test compares)."""
    counts = {}
    for name, table in sorted(models.metadata.tables.items()):
        counts[name] = session.exec(select(func.count()).select_from(table)).one()
    balances = {o.name: ledger.balance(session, o.id) for o in session.exec(select(Organisation)).all()}
    return {"counts": counts, "balances": balances}
