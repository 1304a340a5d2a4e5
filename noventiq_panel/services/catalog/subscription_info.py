"""Each subscription of an organisation with its plan, product and vendor, read in one query: what
analytics, reports and the FOCUS export label their lines with."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlmodel import Session, select

from noventiq_panel.db import session_memo
from noventiq_panel.models import Plan, Product, Subscription, Vendor
from noventiq_panel.services.catalog.payment_models import payment_model

ZERO = Decimal("0")


@dataclass(frozen=True)
class SubInfo:
    id: int
    org_id: int
    name: str
    status: str
    vendor_ref: str
    plan_id: int
    plan_name: str
    product_id: int
    product_name: str
    vendor_id: int
    vendor_name: str
    payment_model: str
    currency: str  # the plan's currency (usage currency of pay-as-you-go plans)
    markup_pct: Decimal

    @property
    def is_payg(self) -> bool:
        return self.payment_model.startswith("payg")


def subscriptions_of(session: Session, org_id: int) -> dict[int, SubInfo]:
    """The organisation's subscriptions with plan, product and vendor, by id (one query, made
    once per unit of work until it writes)."""
    memo = session_memo(session, "subscriptions_of")
    if org_id not in memo:
        memo[org_id] = _subscriptions_of(session, org_id)
    return dict(memo[org_id])


def _subscriptions_of(session: Session, org_id: int) -> dict[int, SubInfo]:
    rows = session.execute(
        select(Subscription.id, Subscription.name, Subscription.status, Subscription.vendor_ref, Plan, Product.id,
               Product.name, Vendor.id, Vendor.name)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .join(Vendor, Vendor.id == Product.vendor_id)
        .where(Subscription.org_id == org_id)
    ).all()
    out: dict[int, SubInfo] = {}
    for sid, name, status, ref, plan, pid, pname, vid, vname in rows:
        out[sid] = SubInfo(sid, org_id, name or plan.name, status, ref or "", plan.id, plan.name, pid, pname, vid, vname,
                           payment_model(plan), plan.currency, plan.usage_markup_pct or ZERO)
    return out
