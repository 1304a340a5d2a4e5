"""Builders shared by the analytics, usage-import and report tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from sqlmodel import Session

from noventiq_panel.models import Organisation, Plan, Role, Subscription, User
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.authz import Actor

from tests import factories as f

DATA = Path(__file__).resolve().parent.parent / "data" / "usage"
REF_A = "11111111-aaaa-4bbb-8ccc-000000000001"
REF_B = "22222222-aaaa-4bbb-8ccc-000000000002"


@dataclass
class World:
    org: Organisation
    other: Organisation
    owner: User
    finance: User
    stranger: User
    plans: dict[str, Plan]
    azure: Subscription  # pay-as-you-go, org, REF_A
    azure_other: Subscription  # pay-as-you-go, other org, REF_B
    basic: Subscription  # licence plan, org
    std: Subscription  # licence plan, org

    def actor(self, user: User | None = None) -> Actor:
        return f.actor(user or self.owner, self.org)


def sub(session: Session, org: Organisation, plan: Plan, name: str, ref: str = "") -> Subscription:
    s = Subscription(org_id=org.id, plan_id=plan.id, name=name, status="active", quantity=1, vendor_ref=ref)
    session.add(s)
    session.commit()
    return s


def world(session: Session, *, markup: str = "0") -> World:
    plans = f.catalog(session)
    if markup != "0":
        plans["azure-d"].usage_markup_pct = Decimal(markup)
        session.add(plans["azure-d"])
        session.commit()
    org = f.org(session, "ООО «Ромашка»")
    other = f.org(session, "ООО «Другая»", tax_id="300000002")
    owner = f.user(session, org, Role.OWNER)
    finance = f.user(session, org, Role.FINANCE)
    stranger = f.user(session, other, Role.OWNER)
    return World(
        org=org, other=other, owner=owner, finance=finance, stranger=stranger, plans=plans,
        azure=sub(session, org, plans["azure-d"], "Azure Prod", REF_A),
        azure_other=sub(session, other, plans["azure-d"], "Azure Other", REF_B),
        basic=sub(session, org, plans["basic-m"], "M365 Basic"),
        std=sub(session, org, plans["std-m"], "M365 Standard"),
    )


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


_n = [0]


def spend(session: Session, org: Organisation, amount: str, at: datetime, *, kind: str = "charge",
          subscription: Subscription | None = None) -> None:
    """A ledger entry: ``amount`` is the spend (positive = money taken; a refund gives it back)."""
    _n[0] += 1
    value = Decimal(amount)
    signed = value if kind == "refund" else -value
    ledger.post(session, org_id=org.id, kind=kind, amount=signed, idempotency_key=f"t-{_n[0]}-{at.isoformat()}",
                occurred_at=at, subscription_id=subscription.id if subscription else None)
    session.commit()


def rate(session: Session, day: date, value: str = "12000") -> None:
    f.usd_rate(session, day, value)
