"""Pay-as-you-go credit control: a deposit to order, and suspension while the balance is overdrawn.

The rule:

- **Deposit.** A prepaid organisation orders a pay-as-you-go plan only while what it can spend
  (``ledger.available``) is at least :func:`deposit_required`: the plan's ``expected_monthly_cost``
  (plan currency, converted at the day's rate and rounded to the organisation's currency), else the
  setting ``PANEL_PAYG_DEPOSIT`` (organisation currency). A postpaid organisation needs no deposit,
  but it cannot order pay-as-you-go beyond its credit limit (what it can spend must not be negative).
  Licence plans are not concerned: their order is charged and checked by ``ordering`` itself.
- **Overdrawn** means ``ledger.available < 0``: a prepaid balance below zero, a postpaid one beyond
  minus its credit limit. :func:`check` looks at every active organisation under its lock
  (``ledger.lock_organisation``, so two runs at once do the work once):

  1. becoming overdrawn: ``Organisation.overdrawn_since = now``; the owners and administrators get
     ``credit_overdrawn`` at once (the balance, the credit limit when postpaid, when the suspension
     comes and how to top up) — once per episode (dedupe key with the organisation and
     ``overdrawn_since``);
  2. still overdrawn when the grace period (``PANEL_CREDIT_GRACE_HOURS`` after ``overdrawn_since``)
     is over: every ACTIVE pay-as-you-go subscription of the organisation is suspended
     (``status="suspended"``, ``suspend_reason="credit"``), the vendor is told (connector
     ``suspend``), it is audited, and ``credit_suspended`` is mailed once per episode;
  3. no longer overdrawn: ``overdrawn_since`` is cleared and every subscription suspended with
     reason ``credit`` is resumed (vendor ``resume``, audited, ``credit_resumed`` mailed once).
     Resuming costs nothing (pay-as-you-go has no term).

  A subscription the customer suspended (``customer``) or one suspended for an unpaid renewal
  (``payment``) is never touched. A second run changes and mails nothing. Usage of a suspended
  subscription that still arrives is charged by rating as usual.
- **When.** The hourly ``rating`` job runs :func:`check` right after rating; a payment credited
  (``payments.on_payment_received``, registered when this module is imported) runs it for that
  payment's organisation at once, so a top-up resumes without waiting for the next hour.

Each organisation is one transaction: a vendor that refuses rolls back that organisation's work
(it is retried on the next run) and the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import (
    BillingMode,
    BillingType,
    LedgerEntry,
    Organisation,
    Payment,
    Plan,
    Product,
    Subscription,
    Vendor,
)
from noventiq_panel.services.billing import payments
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import audit, ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import InsufficientFunds
from noventiq_panel.services.core.money import round_money
from noventiq_panel.services.subscriptions import provisioning
from noventiq_panel.services.subscriptions.context import (
    LIFECYCLE_ROLES,
    S,
    mail_org,
    utc_now,
)

log = logging.getLogger(__name__)

REASON = "credit"


# --- the deposit -----------------------------------------------------------------------------

def deposit_required(session: Session, org: Organisation, plan: Plan, day: date) -> Decimal:
    """What a prepaid organisation must be able to spend to order ``plan`` (organisation currency):
    the plan's expected first month converted at ``day``'s rate, else the ``payg_deposit`` setting;
    0 for postpaid organisations and licence plans. RateMissing when the plan's currency has no rate."""
    if plan.billing_type != BillingType.PAYG or org.billing_mode == BillingMode.POSTPAID:
        return Decimal("0.00")
    if plan.expected_monthly_cost is not None:
        converted, _rate = catalog.convert_price(session, plan.expected_monthly_cost, plan.currency, org, day)
        return round_money(converted, org.billing_currency)
    return round_money(get_settings().payg_deposit, org.billing_currency)


def require_deposit(session: Session, org: Organisation, plan: Plan, day: date) -> None:
    """Raise InsufficientFunds (required, available, shortfall) unless the organisation can order the
    pay-as-you-go ``plan`` (module rule). Licence plans pass. Reads only; call it under the
    organisation's lock, before anything is created."""
    if plan.billing_type != BillingType.PAYG:
        return
    required = deposit_required(session, org, plan, day)
    funds = ledger.available(session, org)
    if funds < required:
        raise InsufficientFunds(required=required, available=funds, currency=org.billing_currency)


# --- the check -------------------------------------------------------------------------------

@dataclass
class CreditSummary:
    organisations: int = 0  # looked at under their lock
    overdrawn: int = 0  # became overdrawn (told)
    suspended: int = 0  # subscriptions suspended
    recovered: int = 0  # organisations back within their funds
    resumed: int = 0  # subscriptions resumed
    failed: list[int] = field(default_factory=list)  # organisations whose work was rolled back (retried)

    def __str__(self) -> str:
        parts = [f"{name} {value}" for name, value in (
            ("overdrawn", self.overdrawn), ("suspended", self.suspended), ("recovered", self.recovered),
            ("resumed", self.resumed)) if value]
        if self.failed:
            parts.append(f"failed {len(self.failed)} (organisations {', '.join(map(str, self.failed))})")
        return f"credit control: {', '.join(parts) or 'nothing to do'}"


def grace_period() -> timedelta:
    return timedelta(hours=get_settings().credit_grace_hours)


def check(session: Session, now: datetime | None = None, *, org_id: int | None = None) -> CreditSummary:
    """Apply the credit rule (module documentation) to every active organisation that is overdrawn,
    was overdrawn or holds subscriptions suspended for credit — or to ``org_id`` only. Commits one
    transaction per organisation."""
    now = utc_now(now)
    summary = CreditSummary()
    if org_id is not None:
        candidates = [int(org_id)]
    else:
        candidates = _candidates(session)
        session.rollback()  # the look-up holds no lock past here (SQLite: the write lock)
    grace = grace_period()
    for oid in candidates:
        try:
            _check_org(session, oid, now, grace, summary)
            session.commit()
        except Exception:
            session.rollback()
            summary.failed.append(oid)
            log.exception("credit control of organisation %s failed; retried on the next run", oid)
    return summary


def _candidates(session: Session) -> list[int]:
    """Active organisations to look at: overdrawn now (one aggregate over the ledger), marked
    overdrawn, or holding subscriptions suspended for credit."""
    totals = (select(LedgerEntry.org_id.label("org_id"), func.sum(LedgerEntry.amount).label("total"))
              .group_by(LedgerEntry.org_id).subquery())
    rows = session.exec(
        select(Organisation.id, Organisation.billing_mode, Organisation.credit_limit, Organisation.overdrawn_since,
               totals.c.total)
        .outerjoin(totals, totals.c.org_id == Organisation.id)
        .where(Organisation.is_active == True)  # noqa: E712
        .order_by(Organisation.id)
    ).all()
    held = set(session.exec(
        select(Subscription.org_id).where(Subscription.status == S.SUSPENDED, Subscription.suspend_reason == REASON)
        .distinct()
    ).all())
    reserved = ledger.reserved_by_org(session)  # open orders' reservations count as spent
    out = []
    for oid, mode, limit, since, total in rows:
        funds = ledger.spendable(total, reserved.get(oid), mode, limit)
        if funds < 0 or since is not None or oid in held:
            out.append(oid)
    return out


def _check_org(session: Session, org_id: int, now: datetime, grace: timedelta, summary: CreditSummary) -> None:
    """One organisation, under its lock (flushes; the caller commits)."""
    org = ledger.lock_organisation(session, org_id)
    session.refresh(org)  # a long-lived session may hold an older copy
    if not org.is_active:
        return
    summary.organisations += 1
    funds = ledger.available(session, org)
    if funds >= 0:
        _recover(session, org, now, summary)
        return
    if org.overdrawn_since is None:
        org.overdrawn_since = now
        session.add(org)
        session.flush()
        summary.overdrawn += 1
        _mail(session, org, "credit_overdrawn", {
            "suspend_at": now + grace,
            "products": [name for _sub, _vendor, name in _payg(session, org.id, S.ACTIVE)],
        }, now)
    if now >= org.overdrawn_since + grace:
        _suspend(session, org, now, summary)


def _payg(session: Session, org_id: int, status: str, reason: str | None = None) -> list[tuple[Subscription, str, str]]:
    """The organisation's pay-as-you-go subscriptions in ``status`` (and ``reason``), read afresh:
    (subscription, vendor code, name to show)."""
    query = (select(Subscription, Vendor.code, Product.name)
             .join(Plan, Plan.id == Subscription.plan_id)
             .join(Product, Product.id == Plan.product_id)
             .join(Vendor, Vendor.id == Product.vendor_id)
             .where(Subscription.org_id == org_id, Subscription.status == status,
                    Plan.billing_type == BillingType.PAYG))
    if reason is not None:
        query = query.where(Subscription.suspend_reason == reason)
    rows = session.exec(query.order_by(Subscription.id).execution_options(populate_existing=True)).all()
    return [(sub, code, sub.name or product) for sub, code, product in rows]


def _suspend(session: Session, org: Organisation, now: datetime, summary: CreditSummary) -> None:
    rows = _payg(session, org.id, S.ACTIVE)
    for sub, vendor_code, _name in rows:
        provisioning.tell_vendor(session, sub, vendor_code, "suspend", now=now)
        sub.status, sub.suspended_at, sub.suspend_reason = S.SUSPENDED, now, REASON
        session.add(sub)
        audit.record(session, Actor.system(org.id), "subscription.suspended", subscription_id=sub.id, reason=REASON,
                     overdrawn_since=org.overdrawn_since.isoformat(), created_at=now)
    if rows:
        session.flush()
        summary.suspended += len(rows)
        _mail(session, org, "credit_suspended", {"products": [name for _s, _v, name in rows]}, now)


def _recover(session: Session, org: Organisation, now: datetime, summary: CreditSummary) -> None:
    since = org.overdrawn_since
    if since is not None:
        org.overdrawn_since = None
        session.add(org)
        summary.recovered += 1
    rows = _payg(session, org.id, S.SUSPENDED, REASON)
    for sub, vendor_code, _name in rows:
        provisioning.tell_vendor(session, sub, vendor_code, "resume", now=now)
        sub.status, sub.suspended_at, sub.suspend_reason = S.ACTIVE, None, ""
        session.add(sub)
        audit.record(session, Actor.system(org.id), "subscription.resumed", subscription_id=sub.id, reason=REASON,
                     charged="0.00", created_at=now)
    session.flush()
    if rows:
        summary.resumed += len(rows)
        episode = since or min(sub.suspended_at or now for sub, _v, _n in rows)
        _mail(session, org, "credit_resumed", {"products": [name for _s, _v, name in rows]}, now, episode=episode)


def _mail(session: Session, org: Organisation, kind: str, context: dict, now: datetime, *,
          episode: datetime | None = None) -> None:
    """``kind`` to the owners and administrators, once per overdrawn episode."""
    episode = episode or org.overdrawn_since
    ctx = {"balance": ledger.balance(session, org.id), "currency": org.billing_currency, **context}
    if org.billing_mode == BillingMode.POSTPAID:
        ctx["credit_limit"] = org.credit_limit
    mail_org(session, org.id, LIFECYCLE_ROLES, kind, ctx, dedupe_key=f"{kind}:{org.id}:{episode:%Y%m%dT%H%M%S%f}",
             now=now)


# --- a payment credited: check its organisation at once ----------------------------------------

@payments.on_payment_received
def on_payment(session: Session, payment: Payment, now: datetime) -> CreditSummary:
    """Money arrived for ``payment``: apply the rule to its organisation now (a top-up resumes)."""
    return check(session, now, org_id=payment.org_id)
