"""What every subscription operation shares: how it loads and guards a subscription, prices and
posts money, and whom it mails.

Every public operation takes ``(session, actor, ..., now=None)``, checks the actor's organisation
and role itself (:mod:`authz`: Owner and Administrator change, Financial manager only reads, another
organisation's id is NotFound), commits its own transaction and rolls everything back on an error
(:func:`atomic`), so a refused operation leaves the database as it was. Money moves only through
:func:`post_money` (``ledger.post``) under deterministic idempotency keys; a charge is preceded by
``ledger.lock_organisation`` and a fresh read of the subscription (:func:`load` with ``lock``), so
two requests at once cannot both spend the same balance.

Recipients by role: :data:`LIFECYCLE_ROLES` get the mails about a subscription's life (orders,
licence counts, expiry), :data:`MONEY_ROLES` those about money (renewals charged or unpaid),
:data:`BILLING_ROLES` those about invoices and the balance.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterator

from sqlalchemy import func
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    LedgerEntry,
    Organisation,
    Plan,
    Product,
    Role,
    ScheduledChange,
    Subscription,
    SubscriptionStatus,
    User,
    Vendor,
)
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import authz, clock, ledger, proration
from noventiq_panel.services.core.authz import Access
from noventiq_panel.services.core.errors import Conflict, InvalidInput
from noventiq_panel.services.core.money import parse_quantity, round_money
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.subscriptions import spans  # noqa: F401  (registers the seat-span listener)

S = SubscriptionStatus
LIFECYCLE_ROLES = (Role.OWNER, Role.ADMIN)
MONEY_ROLES = (Role.OWNER, Role.ADMIN, Role.FINANCE)
BILLING_ROLES = (Role.OWNER, Role.FINANCE)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_Q6 = Decimal("0.000001")


# --- transactions, time and input ------------------------------------------------------------

@contextmanager
def atomic(session: Session) -> Iterator[None]:
    """Commit on success; on any error roll back, so nothing of the operation remains."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def utc_now(now: datetime | None) -> datetime:
    """``now`` as an aware UTC moment (tests and the CLI travel in time), else the clock's."""
    return clock.aware(now) if now else clock.utcnow()


def q6(value: Decimal) -> Decimal:
    """A price or rate as the ledger stores it (6 decimals, half-up)."""
    return Decimal(value).quantize(_Q6, rounding=ROUND_HALF_UP)


def parse_token(value, field_name: str) -> str | None:
    """A request id made by the page (8-64 letters, digits, - or _), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidInput(f"{field_name}: 8-64 letters, digits, - or _", field=field_name, key="error.invalid_request_id")
    return value


def parse_bool(value, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidInput(f"{field_name}: true or false", field=field_name, key="error.invalid_flag")


def parse_int(value, field_name: str, minimum: int, maximum: int) -> int:
    return parse_quantity(value, minimum=minimum, maximum=maximum, field=field_name)


# --- one subscription and its plan -----------------------------------------------------------

@dataclass
class Ctx:
    """One subscription with everything needed to price and change it."""

    access: Access
    org: Organisation
    sub: Subscription
    plan: Plan
    product: Product
    vendor: Vendor
    now: datetime

    @property
    def tz(self) -> str:
        return self.org.timezone

    @property
    def day(self) -> date:
        return clock.local_date(self.now, self.org.timezone)

    def on_plan(self, info: catalog.PlanInfo) -> "Ctx":
        """The same subscription priced on another plan."""
        return Ctx(self.access, self.org, self.sub, info.plan, info.product, info.vendor, self.now)


def load_sub(session: Session, access: Access, sub_id, *, fresh: bool = False) -> Subscription:
    """The caller's subscription ``sub_id`` (request input); NotFound for a malformed, missing or
    foreign id alike."""
    return authz.load_owned(session, access, Subscription, sub_id, "subscription",
                            key="error.subscription_not_found", fresh=fresh)


def load(session: Session, access: Access, sub_id, now: datetime, *, lock: bool = False) -> Ctx:
    """Load the subscription (NotFound if foreign); with ``lock``, lock the organisation first and
    read the subscription again, so the checks below see what concurrent requests committed."""
    sub = load_sub(session, access, sub_id)
    if lock:
        org = ledger.lock_organisation(session, access.org_id)
        session.refresh(sub)
    else:
        org = session.get(Organisation, access.org_id)
    info = catalog.get_plan(session, sub.plan_id, active_only=False)
    return Ctx(access, org, sub, info.plan, info.product, info.vendor, now)


def require_licence(ctx: Ctx) -> None:
    if ctx.plan.billing_type != "license":
        raise Conflict("not a licence subscription", key="error.not_licence")


def require_status(ctx: Ctx, *statuses: str) -> None:
    if ctx.sub.status not in statuses:
        raise Conflict(f"subscription is {ctx.sub.status}", key="error.subscription_not_active", status=ctx.sub.status)


def require_instalment_paid(ctx: Ctx) -> None:
    """A yearly plan billed monthly whose instalment fell due but is not charged yet: a change now
    would price the month that is not paid yet as paid (and charge it twice). Wait for the
    instalment (the renewal job charges it within the hour)."""
    sub, plan = ctx.sub, ctx.plan
    if proration.is_billed_monthly(plan.term, plan.billing_frequency) and sub.next_billing_at is not None \
            and sub.next_billing_at <= ctx.now:
        raise Conflict("this month's instalment is due", key="error.instalment_due")


def require_term_running(ctx: Ctx) -> None:
    if ctx.sub.term_end is not None and ctx.sub.term_end <= ctx.now:
        raise Conflict("the term has ended; the renewal is pending", key="error.renewal_pending")


def local_day(dt: datetime | None, tz: str) -> date | None:
    return clock.local_date(dt, tz) if dt else None


# --- periods and prices ----------------------------------------------------------------------

def anchor_day(sub: Subscription, tz: str) -> int | None:
    """The day of month terms are anchored to (that of the start of the current run of terms)."""
    ref = sub.activated_at or sub.term_start
    return clock.local_date(ref, tz).day if ref else None


def current_period(sub: Subscription, plan: Plan, org: Organisation, at: datetime) -> proration.Period:
    return proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, at,
                                    org.timezone, anchor_day(sub, org.timezone))


def clamp(quantity: int, plan: Plan) -> int:
    """``quantity`` within the plan's seat limits (a scheduled change or a new plan applied later)."""
    return max(plan.min_quantity, min(quantity, plan.max_quantity))


def seat_price(plan: Plan) -> Decimal:
    """One seat for one billing period of the plan (plan currency)."""
    return proration.period_price(plan.price, plan.term, plan.billing_frequency)


def pro_rata(ctx: Ctx, plan: Plan, seats: int, period: proration.Period) -> Decimal:
    """What ``seats`` of ``plan`` cost from the context's day to the end of ``period`` (plan
    currency, unrounded): :func:`proration.pro_rata_charge`."""
    return proration.pro_rata_charge(plan.price, plan.term, plan.billing_frequency, seats, period, ctx.now, ctx.tz)


def days_left(ctx: Ctx, period: proration.Period, at: datetime | None = None) -> dict[str, int]:
    """The whole local days of ``period`` left from the context's day (or ``at``) and its length,
    as stored with a pro rata entry."""
    remaining, total = proration.days_remaining(period.start, period.end, at or ctx.now, ctx.tz)
    return {"remaining_days": remaining, "total_days": total}


def to_org_currency(session: Session, amount: Decimal, plan: Plan, org: Organisation, day: date) -> tuple[Decimal, Decimal, Decimal]:
    """(rounded amount in the org's currency, unrounded amount, rate used). The plan-currency amount
    is first taken as the ledger stores it (6 decimals, :func:`q6`), so every entry's amount is
    ``round(source_amount x fx_rate)`` of the figures it shows, and a quote says the same."""
    converted, rate = catalog.convert_price(session, q6(amount), plan.currency, org, day)
    return round_money(converted, org.billing_currency), converted, rate


def shortfall(required: Decimal, available: Decimal) -> Decimal:
    return max(Decimal("0.00"), required - available)


def entry_fields(*, org: Organisation, sub_id: int, plan: Plan, kind: str, amount: Decimal, plan_amount: Decimal,
                 rate: Decimal, day: date, key: str, description: str, quantity: int, now: datetime,
                 period: tuple[datetime | None, datetime | None], user_id: int | None, meta: dict) -> dict[str, Any]:
    """The ledger columns of a subscription's charge (``amount`` taken from the balance) or refund
    (added): the plan's price, the source amount and the rate stored with it. For ``ledger.post``
    and ``ledger.entry_row`` alike."""
    sign = Decimal(1) if kind == "refund" else Decimal(-1)
    return dict(org_id=org.id, kind=kind, amount=sign * amount, currency=org.billing_currency, idempotency_key=key,
                description=description, subscription_id=sub_id, quantity=Decimal(quantity),
                unit_price=q6(seat_price(plan)), source_amount=q6(plan_amount), source_currency=plan.currency,
                fx_rate=q6(rate), fx_date=day, period_start=period[0], period_end=period[1], occurred_at=now,
                created_by=user_id, meta=meta)


def refund_cap(session: Session, sub_id: int, period_end: datetime | None) -> Decimal:
    """What is left to refund of a billing period: what the subscription was charged for the period
    ending at ``period_end`` less what was refunded of it (organisation currency). A refund never
    exceeds it, whatever the exchange rate did since the charge."""
    total = session.exec(select(func.sum(LedgerEntry.amount)).where(
        LedgerEntry.subscription_id == sub_id, LedgerEntry.period_end == period_end,
        col(LedgerEntry.kind).in_(("charge", "refund")))).one()
    return max(-(total or Decimal("0.00")), Decimal("0.00"))


def refund_terms(session: Session, ctx: Ctx, seats: int, period: proration.Period) -> tuple[Decimal, Decimal, Decimal]:
    """(plan-currency amount, rate, org-currency amount) of refunding ``seats`` for the rest of
    ``period``. The rule: today was used, so it is paid (the days left count from tomorrow); a seat
    is refunded at the price and rate it was charged (the period's latest charge), never at a price
    or rate that rose since; and the total is capped by :func:`refund_cap`."""
    plan, tz = ctx.plan, ctx.tz
    basis = session.exec(
        select(LedgerEntry).where(LedgerEntry.subscription_id == ctx.sub.id, LedgerEntry.period_end == period.end,
                                  LedgerEntry.kind == "charge", col(LedgerEntry.unit_price).is_not(None))
        .order_by(col(LedgerEntry.occurred_at).desc(), col(LedgerEntry.id).desc())).first()
    unit, rate = (basis.unit_price, basis.fx_rate) if basis is not None and basis.fx_rate else (
        seat_price(plan), to_org_currency(session, Decimal(1), plan, ctx.org, ctx.day)[2])
    tomorrow = clock.local_midnight(ctx.day + timedelta(days=1), tz)
    left, total = proration.days_remaining(period.start, period.end, tomorrow, tz)
    plan_amount = proration.prorate(unit * seats, left, total)
    amount = min(round_money(q6(plan_amount) * rate, ctx.org.billing_currency),
                 refund_cap(session, ctx.sub.id, period.end))
    return plan_amount, rate, amount


def capped_refund(session: Session, ctx: Ctx, seats: int, period: proration.Period) -> Decimal:
    """What refunding ``seats`` for the rest of ``period`` gives back now (:func:`refund_terms`)."""
    return refund_terms(session, ctx, seats, period)[2]


def post_refund(session: Session, ctx: Ctx, *, seats: int, period: proration.Period, key: str, what: str,
                action: str) -> Decimal:
    """Refund ``seats`` for the rest of ``period`` by :func:`refund_terms`. Flushes; returns the amount."""
    plan_amount, rate, _amount = refund_terms(session, ctx, seats, period)
    tomorrow = clock.local_midnight(ctx.day + timedelta(days=1), ctx.tz)
    left, total = proration.days_remaining(period.start, period.end, tomorrow, ctx.tz)
    return post_money(session, org=ctx.org, sub=ctx.sub, plan=ctx.plan, kind="refund", plan_amount=plan_amount,
                      key=key, description=desc(ctx, what), quantity=seats, now=ctx.now,
                      period=(period.start, period.end), user_id=ctx.access.user_id, rate=rate,
                      meta={"action": action, "remaining_days": left, "total_days": total})


def post_money(session: Session, *, org: Organisation, sub: Subscription, plan: Plan, kind: str,
               plan_amount: Decimal, key: str, description: str, quantity: int, now: datetime,
               period: tuple[datetime | None, datetime | None] = (None, None), user_id: int | None = None,
               meta: dict | None = None, rate: Decimal | None = None, rate_day: date | None = None) -> Decimal:
    """Post a charge (``kind="charge"``, taken from the balance) or a refund (added) of
    ``plan_amount`` in the plan's currency, converted at today's rate (``rate_day``'s: an order the
    vendor activated later is charged at the rate it was quoted and reserved at; or ``rate``); the
    rate, date and source amount are stored on the entry (nothing when it rounds to 0). A refund is capped by
    :func:`refund_cap` (then its source amount is scaled down and its meta says ``capped``).
    Flushes only. Returns the amount in the organisation's currency."""
    day = rate_day or clock.local_date(now, org.timezone)
    if rate is None:
        amount, _raw, rate = to_org_currency(session, plan_amount, plan, org, day)
    else:
        amount = round_money(q6(plan_amount) * rate, org.billing_currency)
    if kind == "refund" and amount > (cap := refund_cap(session, sub.id, period[1])):
        plan_amount = plan_amount * cap / amount if amount else Decimal(0)
        amount, meta = cap, {**(meta or {}), "capped": True}
    if amount == 0:
        return amount
    ledger.post(session, **entry_fields(
        org=org, sub_id=sub.id, plan=plan, kind=kind, amount=amount, plan_amount=plan_amount, rate=rate, day=day,
        key=key, description=description, quantity=quantity, now=now, period=period, user_id=user_id,
        meta=meta or {}))
    return amount


def post_pro_rata(session: Session, ctx: Ctx, *, seats: int, period: proration.Period, key: str,
                  what: str, action: str) -> Decimal:
    """Charge what ``seats`` of the context's plan cost from today to the end of ``period``
    (:func:`pro_rata`), with the days it was counted over stored on the entry. Flushes only;
    returns the amount (org currency). Refunds: :func:`post_refund`."""
    return post_money(session, org=ctx.org, sub=ctx.sub, plan=ctx.plan, kind="charge",
                      plan_amount=pro_rata(ctx, ctx.plan, seats, period), key=key, description=desc(ctx, what),
                      quantity=seats, now=ctx.now, period=(period.start, period.end), user_id=ctx.access.user_id,
                      meta={"action": action, **days_left(ctx, period)})


def charge_once(session: Session, ctx: Ctx, *, plan_amount: Decimal, key: str, description: str,
                period: proration.Period, user_id: int | None, meta: dict) -> Decimal:
    """Charge ``plan_amount`` of the context's plan for all its seats under ``key``: the balance must
    cover it, unless the key is already posted (a retried request: nothing is charged again).
    Flushes only; returns the amount charged (org currency)."""
    org, plan, sub = ctx.org, ctx.plan, ctx.sub
    required = to_org_currency(session, plan_amount, plan, org, ctx.day)[0]
    if ledger.find(session, key) is None and required > 0:
        ledger.require_funds(session, org, required)
    return post_money(session, org=org, sub=sub, plan=plan, kind="charge", plan_amount=plan_amount, key=key,
                      description=description, quantity=sub.quantity, now=ctx.now, period=(period.start, period.end),
                      user_id=user_id, meta=meta)


def describe(product: Product, plan: Plan, what: str) -> str:
    """The ledger description of a subscription's charge or refund."""
    return f"{product.name} — {plan.name}: {what}"


def desc(ctx: Ctx, what: str) -> str:
    return describe(ctx.product, ctx.plan, what)


# --- scheduled changes -----------------------------------------------------------------------

def pending_changes(session: Session, sub_id: int, kind: str | None = None) -> list[ScheduledChange]:
    query = select(ScheduledChange).where(ScheduledChange.subscription_id == sub_id, ScheduledChange.status == "pending")
    if kind:
        query = query.where(ScheduledChange.kind == kind)
    return list(session.exec(query.order_by(ScheduledChange.id)).all())


def cancel_pending(session: Session, sub_id: int, kind: str | None = None) -> int:
    rows = pending_changes(session, sub_id, kind)
    for row in rows:
        row.status = "cancelled"
        session.add(row)
    return len(rows)


def schedule(session: Session, ctx: Ctx, kind: str, **change) -> ScheduledChange:
    """A change that applies at the end of the term (flushed, so it has its id)."""
    row = ScheduledChange(subscription_id=ctx.sub.id, kind=kind, effective_at=ctx.sub.term_end,
                          created_by=ctx.access.user_id, created_at=ctx.now, **change)
    session.add(row)
    session.flush()
    return row


# --- mail ------------------------------------------------------------------------------------

def mail_org(session: Session, org_id: int, roles, kind: str, context: dict, *, dedupe_key: str | None = None,
             now: datetime | None = None) -> None:
    notifications.notify_org_roles(session, org_id, [str(r) for r in roles], kind, context,
                                   dedupe_key=dedupe_key, now=now)


def mail_actor(session: Session, access: Access, kind: str, context: dict, *, now: datetime,
               roles=LIFECYCLE_ROLES) -> None:
    """To the acting user; an action of the system goes to the organisation's owners and admins."""
    if access.user_id is not None:
        user = session.get(User, access.user_id)
        if user is not None and user.is_active:
            notifications.notify_user(session, user, kind, context, org_id=access.org_id, now=now)
            return
    mail_org(session, access.org_id, roles, kind, context, now=now)
