"""Subscriptions: ordering, licence counts, renewal settings, suspension, plan changes, cancellation.

Every public operation takes ``(session, actor, ..., now=None)``, checks the actor's organisation and
role itself (:mod:`authz`: Owner and Administrator change, Financial manager only reads, another
organisation's id is NotFound), commits its own transaction and rolls everything back on an error,
so a refused operation leaves the database as it was. Money moves only through :func:`ledger.post`
under deterministic idempotency keys; a charge is preceded by :func:`ledger.lock_organisation` and
a fresh read of the subscription, so two requests at once cannot both spend the same balance.

Billing rules (see :mod:`proration` for the day arithmetic):

- **Order**: the first billing period is charged at once (the whole term when billed upfront, the
  first monthly instalment of a yearly plan billed monthly), converted from the plan's currency at
  the day's rate, which is stored on the ledger entry. Prepaid: only if the balance covers it,
  else :class:`InsufficientFunds` with the shortfall (nothing is created); postpaid: balance plus
  credit limit. Trials are free, up to ``plan.trial_max_quantity`` seats, once per product and
  organisation. Pay-as-you-go subscriptions cost nothing at order: usage is rated later.
- **Increase** mid-term: the added seats cost ``period price x seats x remaining days / days of
  the current billing period`` (the term, or the current month of a yearly plan billed monthly).
- **Decrease**: seats still inside the cancellation window of the batch they came with
  (``plan.cancellation_window_hours``, 168 h, counted from purchase, renewal or increase) go at once
  with the same pro rata refund, newest first; the rest is a :class:`ScheduledChange` applied at
  the next renewal. A new quantity change replaces a pending scheduled one.
- **Plan change**: only to codes in ``plan.allowed_changes``. A plan whose price per seat per year
  (in the organisation's currency) is higher or equal is an upgrade, done at once for the pro rata
  difference over the current billing period (when both plans share term and billing frequency;
  otherwise a new term starts today: the new plan's first period is charged and the old plan's
  unused part of the current period refunded). A cheaper plan is a downgrade, scheduled for renewal.
- **Cancel**: when every seat is still inside its window, at once with a pro rata refund of the
  current billing period; otherwise at the end of the term (a scheduled ``cancel`` change that
  :func:`cancel_scheduled_change` can withdraw).
- **Suspend/resume** only where ``plan.suspendable``. Nothing is charged while suspended (renewals
  and instalments skip the subscription). Resuming inside a paid period costs nothing; resuming
  after the term ended starts a new term today and charges it; resuming a yearly plan billed
  monthly whose instalment fell due while suspended charges the rest of the current month pro rata.
  A subscription suspended for non-payment (``grace_until`` set) is resumed by paying: the renewal
  is retried at once.
"""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterator

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    LicenceBatch,
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
from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.core import audit, authz, clock, ledger
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core import proration
from noventiq_panel.services.subscriptions import provisioning
from noventiq_panel.services.core.authz import Access, Actor
from noventiq_panel.services.core.errors import Conflict, DomainError, InvalidInput, NotFound
from noventiq_panel.services.core.money import parse_quantity, round_money

S = SubscriptionStatus
LIFECYCLE_ROLES = (Role.OWNER, Role.ADMIN)
MONEY_ROLES = (Role.OWNER, Role.ADMIN, Role.FINANCE)
PAGE_MAX = 100
SORTS = ("term_end", "name", "status", "quantity", "vendor", "created")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_Q6 = Decimal("0.000001")


# --- results ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What an operation did. Amounts are in the organisation's currency, positive numbers."""

    subscription_id: int
    action: str
    currency: str
    status: str = ""
    quantity: int = 0
    charged: Decimal = Decimal("0.00")
    refunded: Decimal = Decimal("0.00")
    scheduled_change_id: int | None = None
    effective_at: datetime | None = None
    already_done: bool = False

    def __post_init__(self):
        self.status = str(self.status)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class OrderQuote:
    """The price of an order before it is placed (nothing is written)."""

    plan_id: int
    plan_code: str
    plan_name: str
    product_name: str
    vendor_name: str
    quantity: int
    currency: str  # the organisation's
    plan_currency: str
    unit_price: Decimal  # per seat per billing period, plan currency
    price_now: Decimal  # charged at once, org currency, rounded
    recurring_price: Decimal  # per billing period at this quantity, org currency
    recurring_period: str | None  # "month" | "year" | None (pay-as-you-go, trial)
    fx_rate: Decimal
    fx_date: date
    term_start: datetime
    term_end: datetime | None
    renewal_date: date | None  # local date the next term starts (the trial ends)
    next_billing_at: datetime | None
    next_charge_date: date | None  # local date of the next charge (instalment or renewal)
    is_trial: bool
    trial_ends_at: datetime | None
    converts_to: str | None
    is_payg: bool
    available: Decimal
    shortfall: Decimal  # 0 when the balance covers price_now

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class QuantityQuote:
    """What a licence-count change would do now and at the next renewal."""

    subscription_id: int
    old_quantity: int
    new_quantity: int
    currency: str
    charge_now: Decimal = Decimal("0.00")
    refund_now: Decimal = Decimal("0.00")
    quantity_now: int = 0  # seats right after the change
    removed_now: int = 0  # seats removed at once (inside their window)
    scheduled_quantity: int | None = None  # seats from the next renewal, when a decrease waits
    effective_at: datetime | None = None  # when the scheduled part applies
    effective_date: date | None = None  # its local date (organisation's time zone)
    remaining_days: int = 0
    total_days: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None
    recurring_price: Decimal = Decimal("0.00")  # per billing period at the final quantity
    available: Decimal = Decimal("0.00")
    shortfall: Decimal = Decimal("0.00")
    free: bool = False  # a trial: nothing is charged

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlanChangeQuote:
    subscription_id: int
    from_plan: str
    to_plan: str
    to_plan_id: int
    direction: str  # "upgrade" | "downgrade"
    immediate: bool
    currency: str
    charge_now: Decimal = Decimal("0.00")
    refund_now: Decimal = Decimal("0.00")
    effective_at: datetime | None = None
    effective_date: date | None = None
    new_term: bool = False  # the upgrade starts a new term today
    recurring_price: Decimal = Decimal("0.00")
    available: Decimal = Decimal("0.00")
    shortfall: Decimal = Decimal("0.00")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CancelQuote:
    subscription_id: int
    immediate: bool
    currency: str
    refund_now: Decimal = Decimal("0.00")
    effective_at: datetime | None = None
    effective_date: date | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# --- plumbing --------------------------------------------------------------------------------

@contextmanager
def atomic(session: Session) -> Iterator[None]:
    """Commit on success; on any error roll back, so nothing of the operation remains."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _now(now: datetime | None) -> datetime:
    return clock.aware(now) if now else clock.utcnow()


def _q6(value: Decimal) -> Decimal:
    return Decimal(value).quantize(_Q6, rounding=ROUND_HALF_UP)


def _parse_id(value, what: str = "subscription", key: str = "error.subscription_not_found") -> int:
    if isinstance(value, bool):
        raise NotFound(f"{what} not found", key=key)
    try:
        result = int(str(value).strip())
    except (TypeError, ValueError):
        raise NotFound(f"{what} not found", key=key) from None
    if not 0 < result <= catalog.MAX_ID:
        raise NotFound(f"{what} not found", key=key)
    return result


def _parse_token(value, field_name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidInput(f"{field_name}: 8-64 letters, digits, - or _", field=field_name, key="error.invalid_request_id")
    return value


def _parse_bool(value, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidInput(f"{field_name}: true or false", field=field_name, key="error.invalid_flag")


def _parse_int(value, field_name: str, minimum: int, maximum: int) -> int:
    return parse_quantity(value, minimum=minimum, maximum=maximum, field=field_name)


@dataclass
class _Ctx:
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


def _load_sub(session: Session, access: Access, sub_id, *, fresh: bool = False) -> Subscription:
    sid = _parse_id(sub_id)
    sub = session.get(Subscription, sid, populate_existing=fresh)
    if sub is None or sub.org_id != access.org_id:
        raise NotFound("subscription not found", key="error.subscription_not_found")
    return sub


def _ctx(session: Session, access: Access, sub_id, now: datetime, *, lock: bool = False) -> _Ctx:
    """Load the subscription (NotFound if foreign); with ``lock``, lock the organisation first and
    read the subscription again, so the checks below see what concurrent requests committed."""
    sub = _load_sub(session, access, sub_id)
    if lock:
        org = ledger.lock_organisation(session, access.org_id)
        session.refresh(sub)
    else:
        org = session.get(Organisation, access.org_id)
    info = catalog.get_plan(session, sub.plan_id, active_only=False)
    return _Ctx(access, org, sub, info.plan, info.product, info.vendor, now)


def anchor_day(sub: Subscription, tz: str) -> int | None:
    """The day of month terms are anchored to (that of the start of the current run of terms)."""
    ref = sub.activated_at or sub.term_start
    return clock.local_date(ref, tz).day if ref else None


def current_period(sub: Subscription, plan: Plan, org: Organisation, at: datetime) -> proration.Period:
    return proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, at,
                                    org.timezone, anchor_day(sub, org.timezone))


def to_org_currency(session: Session, amount: Decimal, plan: Plan, org: Organisation, day: date) -> tuple[Decimal, Decimal, Decimal]:
    """(rounded amount in the org's currency, unrounded amount, rate used)."""
    converted, rate = catalog.convert_price(session, amount, plan.currency, org, day)
    return round_money(converted, org.billing_currency), converted, rate


def post_money(session: Session, *, org: Organisation, sub: Subscription, plan: Plan, kind: str,
               plan_amount: Decimal, key: str, description: str, quantity: int, now: datetime,
               period: tuple[datetime | None, datetime | None] = (None, None), user_id: int | None = None,
               meta: dict | None = None):
    """Post a charge (``kind="charge"``, taken from the balance) or a refund (added) of
    ``plan_amount`` in the plan's currency, converted at today's rate; the rate, date and source
    amount are stored on the entry. Flushes only. Returns (entry or None when it rounds to 0, amount)."""
    day = clock.local_date(now, org.timezone)
    amount, _raw, rate = to_org_currency(session, plan_amount, plan, org, day)
    if amount == 0:
        return None, amount
    sign = Decimal(1) if kind in ("refund",) else Decimal(-1)
    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    entry = ledger.post(
        session, org_id=org.id, kind=kind, amount=sign * amount, idempotency_key=key, description=description,
        subscription_id=sub.id, quantity=Decimal(quantity), unit_price=_q6(unit), source_amount=_q6(plan_amount),
        source_currency=plan.currency, fx_rate=_q6(rate), fx_date=day, period_start=period[0],
        period_end=period[1], occurred_at=now, created_by=user_id, meta=meta or {},
    )
    return entry, amount


def _shortfall(required: Decimal, available: Decimal) -> Decimal:
    return max(Decimal("0.00"), required - available)


def _local_day(dt: datetime | None, tz: str) -> date | None:
    return clock.local_date(dt, tz) if dt else None


def _mail_org(session: Session, org_id: int, roles, kind: str, context: dict, *, dedupe_key: str | None = None,
              now: datetime | None = None) -> None:
    notifications.notify_org_roles(session, org_id, [str(r) for r in roles], kind, context,
                                   dedupe_key=dedupe_key, now=now)


def _mail_actor(session: Session, access: Access, kind: str, context: dict, *, now: datetime,
                roles=LIFECYCLE_ROLES) -> None:
    """To the acting user; an action of the system goes to the organisation's owners and admins."""
    if access.user_id is not None:
        user = session.get(User, access.user_id)
        if user is not None and user.is_active:
            notifications.notify_user(session, user, kind, context, org_id=access.org_id, now=now)
            return
    _mail_org(session, access.org_id, roles, kind, context, now=now)


def _pending_changes(session: Session, sub_id: int, kind: str | None = None) -> list[ScheduledChange]:
    query = select(ScheduledChange).where(ScheduledChange.subscription_id == sub_id, ScheduledChange.status == "pending")
    if kind:
        query = query.where(ScheduledChange.kind == kind)
    return list(session.exec(query.order_by(ScheduledChange.id)).all())


def _cancel_pending(session: Session, sub_id: int, kind: str | None = None) -> int:
    rows = _pending_changes(session, sub_id, kind)
    for row in rows:
        row.status = "cancelled"
        session.add(row)
    return len(rows)


def _batches(session: Session, sub_id: int) -> list[LicenceBatch]:
    return list(session.exec(
        select(LicenceBatch).where(LicenceBatch.subscription_id == sub_id, LicenceBatch.quantity > 0)
        .order_by(col(LicenceBatch.added_at).desc(), col(LicenceBatch.id).desc())
    ).all())


def _in_window(batches: list[LicenceBatch], now: datetime) -> int:
    return sum(b.quantity for b in batches if b.window_ends_at > now)


def _add_batch(session: Session, sub: Subscription, plan: Plan, quantity: int, now: datetime, source: str) -> LicenceBatch:
    batch = LicenceBatch(subscription_id=sub.id, quantity=quantity, added_at=now,
                         window_ends_at=now + timedelta(hours=plan.cancellation_window_hours), source=source)
    session.add(batch)
    return batch


def _require_licence(ctx: _Ctx) -> None:
    if ctx.plan.billing_type != "license":
        raise Conflict("not a licence subscription", key="error.not_licence")


def _require_status(ctx: _Ctx, *statuses: str) -> None:
    if ctx.sub.status not in statuses:
        raise Conflict(f"subscription is {ctx.sub.status}", key="error.subscription_not_active", status=ctx.sub.status)


def _require_term_running(ctx: _Ctx) -> None:
    if ctx.sub.term_end is not None and ctx.sub.term_end <= ctx.now:
        raise Conflict("the term has ended; the renewal is pending", key="error.renewal_pending")


def _desc(ctx: _Ctx, what: str) -> str:
    return f"{ctx.product.name} — {ctx.plan.name}: {what}"


def _connector(vendor: Vendor):
    return provisioning.connector_for(vendor.code)


# --- reading ---------------------------------------------------------------------------------

def payment_model(plan: Plan) -> str:
    """A short code of the billing variant for lists: payg | month | year | year_monthly | trial."""
    if plan.billing_type == "payg":
        return "payg"
    if plan.trial_days > 0:
        return "trial"
    if proration.is_billed_monthly(plan.term, plan.billing_frequency):
        return "year_monthly"
    return plan.term or "month"


def _row(sub: Subscription, plan: Plan, product: Product, vendor: Vendor, org: Organisation) -> dict:
    return {
        "id": sub.id,
        "name": sub.name or product.name,
        "product": product.name,
        "product_code": product.code,
        "category": product.category,
        "plan": plan.name,
        "plan_code": plan.code,
        "plan_id": plan.id,
        "vendor": vendor.name,
        "vendor_code": vendor.code,
        "portal_url": vendor.portal_url,
        "status": str(sub.status),
        "quantity": sub.quantity,
        "billing_type": str(plan.billing_type),
        "payment_model": payment_model(plan),
        "term": None if plan.term is None else str(plan.term),
        "billing_frequency": None if plan.billing_frequency is None else str(plan.billing_frequency),
        "price": plan.price,
        "price_currency": plan.currency,
        "term_start": sub.term_start,
        "term_end": sub.term_end,
        "end_date": _local_day(sub.term_end, org.timezone),
        "next_billing_at": sub.next_billing_at,
        "auto_renew": sub.auto_renew,
        "is_trial": sub.is_trial,
        "trial_ends_at": sub.trial_ends_at,
        "trial_convert": sub.trial_convert,
        "cancel_at_term_end": sub.cancel_at_term_end,
        "grace_until": sub.grace_until,
        "suspendable": plan.suspendable,
        "can_change_quantity": plan.billing_type == "license" and sub.status in (S.ACTIVE, S.TRIAL),
        "min_quantity": plan.min_quantity,
        "max_quantity": plan.trial_max_quantity if sub.is_trial else plan.max_quantity,
        "vendor_ref": sub.vendor_ref,
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_subscriptions(session: Session, actor: Actor | None, *, search: str = "", status: str | None = None,
                       vendor: str | None = None, sort: str = "term_end", descending: bool = False, offset=0,
                       limit=20) -> tuple[list[dict], int]:
    """A page of the organisation's subscriptions and how many match in all.

    ``search`` matches the subscription, product, plan or vendor name (case-insensitive; on SQLite
    Cyrillic matches in lower, upper and capitalised spelling); ``status`` one of the statuses or
    ``"current"`` (everything but expired and cancelled); ``vendor`` a vendor code; ``sort`` one of
    :data:`SORTS`. Paging by ``offset``/``limit`` (1..100).
    """
    access = authz.can_read(session, actor)
    if not isinstance(search, str):
        raise InvalidInput("search must be text", field="search", key="error.invalid")
    if sort not in SORTS:
        raise InvalidInput(f"unknown sort {sort!r}", field="sort", key="error.invalid_sort")
    if status not in (None, "", "current") and status not in set(S):
        raise InvalidInput(f"unknown status {status!r}", field="status", key="error.invalid_status_filter")
    descending = _parse_bool(descending, "descending")
    offset = _parse_int(offset, "offset", 0, 10**9)
    limit = _parse_int(limit, "limit", 1, PAGE_MAX)
    org = session.get(Organisation, access.org_id)

    query = (
        select(Subscription, Plan, Product, Vendor)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .join(Vendor, Vendor.id == Product.vendor_id)
        .where(Subscription.org_id == access.org_id)
    )
    if status == "current":
        query = query.where(col(Subscription.status).notin_([S.EXPIRED, S.CANCELLED]))
    elif status:
        query = query.where(Subscription.status == status)
    if vendor:
        if not isinstance(vendor, str):
            raise InvalidInput("vendor must be a code", field="vendor", key="error.invalid")
        query = query.where(Vendor.code == vendor)
    needle = search.strip()[:100]
    if needle:
        variants = {needle, needle.lower(), needle.upper(), needle.capitalize(), needle.title()}
        conditions = []
        for variant in variants:
            pattern = f"%{_escape_like(variant)}%"
            for column in (Subscription.name, Product.name, Plan.name, Vendor.name):
                conditions.append(col(column).ilike(pattern, escape="\\"))
        query = query.where(or_(*conditions))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    order_col = {
        "term_end": col(Subscription.term_end),
        "name": func.coalesce(func.nullif(Subscription.name, ""), Product.name), "status": col(Subscription.status),
        "quantity": col(Subscription.quantity), "vendor": col(Vendor.name), "created": col(Subscription.created_at),
    }[sort]
    ordering = order_col.desc() if descending else order_col.asc()
    query = query.order_by(ordering.nulls_last(), col(Subscription.id).desc() if descending else col(Subscription.id))
    rows = session.exec(query.offset(offset).limit(limit)).all()
    return [_row(s, p, pr, v, org) for s, p, pr, v in rows], int(total)


def _plan_direction(session: Session, current: Plan, target: Plan, org: Organisation, day: date) -> str:
    """``upgrade`` when the target's price per seat per year (org currency) is >= the current one."""
    if target.billing_type != "license" or current.billing_type != "license":
        return "upgrade"
    now_price = catalog.convert_price(session, proration.yearly_price(current.price, current.term), current.currency, org, day)[0]
    new_price = catalog.convert_price(session, proration.yearly_price(target.price, target.term), target.currency, org, day)[0]
    return "upgrade" if new_price >= now_price else "downgrade"


def get_subscription(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> dict:
    """The detail view: the list row plus plan, product texts, vendor, pending scheduled changes,
    licence batches with the time left in their cancellation windows, the current billing period
    and the plans it may change to (with direction)."""
    access = authz.can_read(session, actor)
    now = _now(now)
    ctx = _ctx(session, access, sub_id, now)
    sub, plan, org = ctx.sub, ctx.plan, ctx.org
    view = _row(sub, plan, ctx.product, ctx.vendor, org)
    view["plan_view"] = catalog.plan_view(session, plan, org, ctx.day)
    view["description"] = ctx.product.description
    view["activation_md"] = ctx.product.activation_md
    view["created_at"] = sub.created_at
    view["activated_at"] = sub.activated_at
    view["suspended_at"] = sub.suspended_at
    view["cancelled_at"] = sub.cancelled_at
    view["currency"] = org.billing_currency
    view["can_write"] = access.can_write
    batches = _batches(session, sub.id)
    view["batches"] = [
        {"id": b.id, "quantity": b.quantity, "source": b.source, "added_at": b.added_at,
         "window_ends_at": b.window_ends_at, "in_window": b.window_ends_at > now,
         "window_seconds_left": max(0, int((b.window_ends_at - now).total_seconds()))}
        for b in batches
    ]
    view["refundable_now"] = _in_window(batches, now) if sub.status == S.ACTIVE else 0
    changes = []
    for change in _pending_changes(session, sub.id):
        target = session.get(Plan, change.new_plan_id) if change.new_plan_id else None
        changes.append({"id": change.id, "kind": change.kind, "new_quantity": change.new_quantity,
                        "new_plan": target.name if target else None, "new_plan_code": target.code if target else None,
                        "effective_at": change.effective_at,
                        "effective_date": _local_day(change.effective_at, org.timezone)})
    view["scheduled_changes"] = changes
    period = None
    if plan.billing_type == "license" and sub.term_start and sub.term_end and not sub.is_trial:
        p = current_period(sub, plan, org, now)
        remaining, total = proration.days_remaining(p.start, p.end, now, org.timezone)
        period = {"start": p.start, "end": p.end, "remaining_days": remaining, "total_days": total}
        try:
            view["recurring_price"] = to_org_currency(
                session, proration.period_price(plan.price, plan.term, plan.billing_frequency) * sub.quantity,
                plan, org, ctx.day)[0]
        except DomainError:
            view["recurring_price"] = None
    view["period"] = period
    options = []
    for code in plan.allowed_changes or []:
        try:
            target = catalog.get_plan_by_code(session, code)
            direction = _plan_direction(session, plan, target.plan, org, ctx.day)
        except DomainError:
            continue
        options.append({"id": target.plan.id, "code": target.plan.code, "name": target.plan.name,
                        "product": target.product.name, "direction": direction,
                        "plan_view": catalog.plan_view(session, target.plan, org, ctx.day)})
    view["plan_options"] = options
    return view


def history(session: Session, actor: Actor | None, sub_id, *, limit: int = 100, offset: int = 0) -> list[dict]:
    """Audit events of one subscription, newest first (any member may read)."""
    access = authz.can_read(session, actor)
    sub = _load_sub(session, access, sub_id)
    limit = _parse_int(limit, "limit", 1, 500)
    offset = _parse_int(offset, "offset", 0, 10**9)
    events = audit.list_events(session, actor, subscription_id=sub.id, limit=limit, offset=offset)
    users = {}
    out = []
    for e in events:
        if e.user_id and e.user_id not in users:
            u = session.get(User, e.user_id)
            users[e.user_id] = (u.name or u.email) if u else ""
        out.append({"id": e.id, "action": e.action, "details": e.details, "created_at": e.created_at,
                    "user": users.get(e.user_id, "") if e.user_id else ""})
    return out


# --- ordering --------------------------------------------------------------------------------

def _order_quantity(plan: Plan, quantity) -> int:
    maximum = plan.trial_max_quantity if plan.trial_days > 0 else plan.max_quantity
    return parse_quantity(quantity, minimum=max(1, plan.min_quantity), maximum=maximum)


def _trial_used(session: Session, org_id: int, product_id: int) -> bool:
    """Has the organisation ever had a trial of this product (any status, converted included)?"""
    row = session.exec(
        select(Subscription.id).join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.org_id == org_id, Plan.product_id == product_id,
               or_(col(Subscription.trial_ends_at).is_not(None), Subscription.is_trial == True))  # noqa: E712
        .limit(1)
    ).first()
    return row is not None


def _order_quote(session: Session, org: Organisation, info: catalog.PlanInfo, quantity: int, now: datetime) -> OrderQuote:
    plan, product, vendor = info.plan, info.product, info.vendor
    tz = org.timezone
    day = clock.local_date(now, tz)
    is_trial = plan.trial_days > 0
    is_payg = plan.billing_type == "payg"
    if is_trial and _trial_used(session, org.id, product.id):
        raise Conflict("a trial of this product was already used", key="error.trial_already_used",
                       product=product.name)
    term_end = next_billing = trial_ends = None
    price_now = recurring = Decimal("0.00")
    unit = Decimal("0")
    rate = Decimal(1)
    recurring_period = None
    renewal_date = None
    if is_trial:
        trial_ends = term_end = proration.trial_end(now, plan.trial_days, tz)
        renewal_date = clock.local_date(term_end, tz)
    elif not is_payg:
        term_end = proration.term_end(now, plan.term, tz)
        period = proration.billing_period(now, term_end, plan.term, plan.billing_frequency, now, tz)
        unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
        price_now, _raw, rate = to_org_currency(session, unit * quantity, plan, org, day)
        recurring = price_now
        recurring_period = "month" if proration.is_billed_monthly(plan.term, plan.billing_frequency) \
            else (plan.term or "month")
        next_billing = proration.next_period_start(period, term_end)
        renewal_date = clock.local_date(term_end, tz)
    available = ledger.available(session, org)
    return OrderQuote(
        plan_id=plan.id, plan_code=plan.code, plan_name=plan.name, product_name=product.name,
        vendor_name=vendor.name, quantity=quantity, currency=org.billing_currency, plan_currency=plan.currency,
        unit_price=unit, price_now=price_now, recurring_price=recurring, recurring_period=recurring_period,
        fx_rate=rate, fx_date=day, term_start=now, term_end=term_end, renewal_date=renewal_date,
        next_billing_at=next_billing,
        next_charge_date=clock.local_date(next_billing, tz) if next_billing else (
            renewal_date if not is_trial and not is_payg else None),
        is_trial=is_trial, trial_ends_at=trial_ends,
        converts_to=plan.trial_converts_to, is_payg=is_payg, available=available,
        shortfall=_shortfall(price_now, available),
    )


def quote_order(session: Session, actor: Actor | None, plan_id, quantity, *, now: datetime | None = None) -> OrderQuote:
    """Price an order (nothing is written): price now, recurring price, renewal date, shortfall.
    Raises the same errors :func:`order` would, except for missing funds (reported as shortfall)."""
    access = authz.can_read(session, actor)
    now = _now(now)
    info = catalog.get_plan(session, plan_id)
    quantity = _order_quantity(info.plan, quantity)
    org = session.get(Organisation, access.org_id)
    return _order_quote(session, org, info, quantity, now)


def order(session: Session, actor: Actor | None, plan_id, quantity, *, trial_convert: bool = False,
          request_id: str | None = None, now: datetime | None = None) -> Outcome:
    """Order a subscription of ``quantity`` seats of the plan (Owner/Admin).

    The first billing period is charged at once; prepaid organisations need the balance to cover
    it (else InsufficientFunds with the shortfall and nothing is created). ``request_id`` (8-64
    characters, made once per order dialog) makes a retried request return the first result
    instead of charging again (charge key ``order:<org>:<request_id>``; without it
    ``order:<subscription id>``). Trials: ``trial_convert`` = become the paid plan when the trial ends.
    """
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        info = catalog.get_plan(session, plan_id)
        plan, product, vendor = info.plan, info.product, info.vendor
        quantity = _order_quantity(plan, quantity)
        trial_convert = _parse_bool(trial_convert, "trial_convert")
        request_id = _parse_token(request_id, "request_id")
        org = ledger.lock_organisation(session, access.org_id)
        key = f"order:{org.id}:{request_id}" if request_id else None
        if key and (done := ledger.find(session, key)) is not None:
            sub = session.get(Subscription, done.subscription_id)
            return Outcome(sub.id, "order", org.billing_currency, sub.status, sub.quantity,
                           charged=-done.amount, already_done=True)
        quote = _order_quote(session, org, info, quantity, now)
        if quote.price_now > 0:
            ledger.require_funds(session, org, quote.price_now)
        is_trial = quote.is_trial
        sub = Subscription(
            org_id=org.id, plan_id=plan.id, name=product.name, status=S.PENDING, quantity=quantity,
            term_start=now, term_end=quote.term_end, next_billing_at=quote.next_billing_at,
            auto_renew=not is_trial and not quote.is_payg, is_trial=is_trial, trial_ends_at=quote.trial_ends_at,
            trial_convert=trial_convert if is_trial else False, created_at=now,
        )
        session.add(sub)
        session.flush()
        result = _connector(vendor).provision(provisioning.ProvisionRequest(
            org_id=org.id, subscription_id=sub.id, vendor_code=vendor.code, product_code=product.code,
            plan_code=plan.code, quantity=quantity, is_trial=is_trial))
        sub.vendor_ref = result.vendor_ref
        if result.active:
            sub.status = S.TRIAL if is_trial else S.ACTIVE
            sub.activated_at = now
        if plan.billing_type == "license" and not is_trial:
            _add_batch(session, sub, plan, quantity, now, "purchase")
        charged = Decimal("0.00")
        if quote.price_now > 0:
            period = proration.billing_period(now, quote.term_end, plan.term, plan.billing_frequency, now, org.timezone)
            _entry, charged = post_money(
                session, org=org, sub=sub, plan=plan, kind="charge",
                plan_amount=quote.unit_price * quantity, key=key or f"order:{sub.id}",
                description=_desc(_Ctx(access, org, sub, plan, product, vendor, now), f"заказ, {quantity} шт."),
                quantity=quantity, now=now, period=(period.start, period.end), user_id=access.user_id,
                meta={"action": "order", "plan": plan.code},
            )
        session.add(sub)
        audit.record(session, access.actor, "subscription.ordered", subscription_id=sub.id, plan=plan.code,
                     quantity=quantity, amount=str(charged), currency=org.billing_currency, trial=is_trial)
        context = {"product": product.name, "plan": plan.name, "quantity": quantity, "amount": charged,
                   "currency": org.billing_currency, "subscription_id": sub.id}
        if is_trial:
            context["trial_ends_on"] = clock.local_date(quote.trial_ends_at, org.timezone)
        elif quote.term_end:
            context["period_end"] = clock.local_date(quote.term_end, org.timezone)
        _mail_actor(session, access, "order_confirmed", context, now=now)
        outcome = Outcome(sub.id, "order", org.billing_currency, sub.status, sub.quantity, charged=charged)
    return outcome


# --- licence count ---------------------------------------------------------------------------

def _quantity_plan(session: Session, ctx: _Ctx, quantity) -> QuantityQuote:
    _require_licence(ctx)
    _require_status(ctx, S.ACTIVE, S.TRIAL)
    _require_term_running(ctx)
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    maximum = plan.trial_max_quantity if sub.is_trial else plan.max_quantity
    new = parse_quantity(quantity, minimum=max(1, plan.min_quantity), maximum=maximum)
    old = sub.quantity
    if new == old:
        raise InvalidInput("the quantity is unchanged", field="quantity", key="error.quantity_unchanged")
    q = QuantityQuote(subscription_id=sub.id, old_quantity=old, new_quantity=new, currency=org.billing_currency,
                      quantity_now=new)
    q.available = ledger.available(session, org)
    if sub.is_trial:
        q.free = True
        return q
    period = current_period(sub, plan, org, now)
    q.period_start, q.period_end = period.start, period.end
    q.remaining_days, q.total_days = proration.days_remaining(period.start, period.end, now, org.timezone)
    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    q.recurring_price = to_org_currency(session, unit * new, plan, org, ctx.day)[0]
    if new > old:
        q.charge_now = to_org_currency(
            session, proration.prorate(unit * (new - old), q.remaining_days, q.total_days), plan, org, ctx.day)[0]
        q.shortfall = _shortfall(q.charge_now, q.available)
        return q
    removable = min(old - new, _in_window(_batches(session, sub.id), now))
    q.removed_now = removable
    q.quantity_now = old - removable
    if removable:
        q.refund_now = to_org_currency(
            session, proration.prorate(unit * removable, q.remaining_days, q.total_days), plan, org, ctx.day)[0]
    if q.quantity_now != new:
        q.scheduled_quantity = new
        q.effective_at = sub.term_end
        q.effective_date = clock.local_date(sub.term_end, org.timezone)
    return q


def quote_quantity_change(session: Session, actor: Actor | None, sub_id, quantity, *,
                          now: datetime | None = None) -> QuantityQuote:
    """What changing to ``quantity`` seats would do: charge or refund now, seats now, and what waits
    for the next renewal. Nothing is written."""
    access = authz.can_read(session, actor)
    ctx = _ctx(session, access, sub_id, _now(now))
    return _quantity_plan(session, ctx, quantity)


def change_quantity(session: Session, actor: Actor | None, sub_id, quantity, *, change_id: str | None = None,
                    now: datetime | None = None) -> Outcome:
    """Change the licence count (Owner/Admin); see the module rules. ``change_id`` (8-64 characters,
    one per confirmation) keys the money (``qty:<sub>:<change_id>``): a retried request with the same
    id does nothing more."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        change_id = _parse_token(change_id, "change_id") or uuid.uuid4().hex
        ctx = _ctx(session, access, sub_id, now, lock=True)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        key = f"qty:{sub.id}:{change_id}"
        if (done := ledger.find(session, key)) is not None:
            return Outcome(sub.id, "quantity", org.billing_currency, sub.status, sub.quantity,
                           charged=max(-done.amount, Decimal("0.00")), refunded=max(done.amount, Decimal("0.00")),
                           already_done=True)
        q = _quantity_plan(session, ctx, quantity)
        old = sub.quantity
        outcome = Outcome(sub.id, "quantity", org.billing_currency)
        period = (q.period_start, q.period_end)
        connector = _connector(ctx.vendor)
        if q.new_quantity > old:
            if q.charge_now > 0:
                ledger.require_funds(session, org, q.charge_now)
            _cancel_pending(session, sub.id, ChangeKind.QUANTITY)
            sub.quantity = q.new_quantity
            if not q.free:
                _add_batch(session, sub, plan, q.new_quantity - old, now, "increase")
                unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
                _e, outcome.charged = post_money(
                    session, org=org, sub=sub, plan=plan, kind="charge",
                    plan_amount=proration.prorate(unit * (q.new_quantity - old), q.remaining_days, q.total_days),
                    key=key, description=_desc(ctx, f"увеличение {old} → {q.new_quantity}"),
                    quantity=q.new_quantity - old, now=now, period=period, user_id=access.user_id,
                    meta={"action": "increase", "remaining_days": q.remaining_days, "total_days": q.total_days})
            connector.change_quantity(sub.vendor_ref, sub.quantity)
        else:
            _cancel_pending(session, sub.id, ChangeKind.QUANTITY)
            if q.free:
                sub.quantity = q.new_quantity
                connector.change_quantity(sub.vendor_ref, sub.quantity)
            if q.removed_now:
                left = q.removed_now
                for batch in _batches(session, sub.id):
                    if left == 0 or batch.window_ends_at <= now:
                        continue
                    take = min(left, batch.quantity)
                    batch.quantity -= take
                    left -= take
                    session.add(batch)
                sub.quantity = q.quantity_now
                unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
                _e, outcome.refunded = post_money(
                    session, org=org, sub=sub, plan=plan, kind="refund",
                    plan_amount=proration.prorate(unit * q.removed_now, q.remaining_days, q.total_days),
                    key=key, description=_desc(ctx, f"уменьшение {old} → {q.quantity_now}, возврат"),
                    quantity=q.removed_now, now=now, period=period, user_id=access.user_id,
                    meta={"action": "decrease", "remaining_days": q.remaining_days, "total_days": q.total_days})
                connector.change_quantity(sub.vendor_ref, sub.quantity)
            if q.scheduled_quantity is not None:
                change = ScheduledChange(subscription_id=sub.id, kind=ChangeKind.QUANTITY,
                                         new_quantity=q.scheduled_quantity, effective_at=sub.term_end,
                                         created_by=access.user_id, created_at=now)
                session.add(change)
                session.flush()
                outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        session.add(sub)
        audit.record(session, access.actor, "subscription.quantity_changed", subscription_id=sub.id,
                     old_quantity=old, new_quantity=sub.quantity, requested=q.new_quantity,
                     scheduled_quantity=q.scheduled_quantity, charged=str(outcome.charged),
                     refunded=str(outcome.refunded), change_id=change_id)
        context = {"product": ctx.product.name, "old_quantity": old, "new_quantity": q.new_quantity,
                   "amount": outcome.charged - outcome.refunded, "currency": org.billing_currency,
                   "subscription_id": sub.id}
        if q.scheduled_quantity is not None:
            context["scheduled_for"] = clock.local_date(sub.term_end, org.timezone)
        _mail_actor(session, access, "licence_changed", context, now=now)
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
    return outcome


# --- settings, suspension --------------------------------------------------------------------

def set_auto_renew(session: Session, actor: Actor | None, sub_id, enabled, *, now: datetime | None = None) -> Outcome:
    """Turn automatic renewal on or off (licence subscriptions that are active or suspended)."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        enabled = _parse_bool(enabled, "enabled")
        ctx = _ctx(session, access, sub_id, now)
        _require_licence(ctx)
        _require_status(ctx, S.ACTIVE, S.SUSPENDED)
        sub = ctx.sub
        if sub.auto_renew != enabled:
            sub.auto_renew = enabled
            session.add(sub)
            audit.record(session, access.actor, "subscription.auto_renew", subscription_id=sub.id, enabled=enabled)
        outcome = Outcome(sub.id, "auto_renew", ctx.org.billing_currency, sub.status, sub.quantity)
    return outcome


def set_trial_convert(session: Session, actor: Actor | None, sub_id, enabled, *, now: datetime | None = None) -> Outcome:
    """Choose whether a trial becomes the paid plan when it ends (if the balance covers it)."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        enabled = _parse_bool(enabled, "enabled")
        ctx = _ctx(session, access, sub_id, now)
        _require_status(ctx, S.TRIAL)
        sub = ctx.sub
        if sub.trial_convert != enabled:
            sub.trial_convert = enabled
            session.add(sub)
            audit.record(session, access.actor, "subscription.trial_convert", subscription_id=sub.id, enabled=enabled)
        outcome = Outcome(sub.id, "trial_convert", ctx.org.billing_currency, sub.status, sub.quantity)
    return outcome


def suspend(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> Outcome:
    """Suspend an active subscription whose plan allows it. Nothing is charged while suspended."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = _ctx(session, access, sub_id, now, lock=True)
        if not ctx.plan.suspendable:
            raise Conflict("this plan cannot be suspended", key="error.not_suspendable")
        _require_status(ctx, S.ACTIVE)
        sub = ctx.sub
        _connector(ctx.vendor).suspend(sub.vendor_ref)
        sub.status, sub.suspended_at, sub.grace_until = S.SUSPENDED, now, None
        session.add(sub)
        audit.record(session, access.actor, "subscription.suspended", subscription_id=sub.id, reason="manual")
        _mail_org(session, sub.org_id, LIFECYCLE_ROLES, "suspended",
                  {"product": ctx.product.name, "suspended_on": ctx.day, "reason": "manual",
                   "subscription_id": sub.id}, now=now)
        outcome = Outcome(sub.id, "suspend", ctx.org.billing_currency, sub.status, sub.quantity)
    return outcome


def restart_term(session: Session, ctx: _Ctx, *, key_prefix: str = "renewal", user_id: int | None = None,
                 source: str = "renewal") -> Decimal:
    """Start a new term today (local midnight) and charge its first billing period; all seats get a
    new batch. Used when a subscription comes back after its term ended. Requires funds. Flushes."""
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    start = clock.local_midnight(ctx.day, org.timezone)
    end = proration.term_end(start, plan.term, org.timezone)
    period = proration.billing_period(start, end, plan.term, plan.billing_frequency, start, org.timezone)
    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    required = to_org_currency(session, unit * sub.quantity, plan, org, ctx.day)[0]
    key = f"{key_prefix}:{sub.id}:{start:%Y%m%d}"
    if ledger.find(session, key) is None and required > 0:
        ledger.require_funds(session, org, required)
    _entry, charged = post_money(
        session, org=org, sub=sub, plan=plan, kind="charge", plan_amount=unit * sub.quantity, key=key,
        description=_desc(ctx, f"новый срок с {ctx.day:%d.%m.%Y}, {sub.quantity} шт."), quantity=sub.quantity,
        now=now, period=(period.start, period.end), user_id=user_id, meta={"action": "renewal"})
    session.exec(update(LicenceBatch).where(LicenceBatch.subscription_id == sub.id).values(quantity=0))
    _add_batch(session, sub, plan, sub.quantity, now, source)
    sub.term_start, sub.term_end, sub.activated_at = start, end, start
    sub.next_billing_at = proration.next_period_start(period, end)
    sub.grace_until = None
    sub.status = S.ACTIVE
    session.add(sub)
    return charged


def apply_due_changes(session: Session, ctx: _Ctx) -> _Ctx:
    """Apply the subscription's pending scheduled changes that are due (flush only); returns the
    context with the plan the subscription has now."""
    sub = ctx.sub
    for change in session.exec(
            select(ScheduledChange).where(ScheduledChange.subscription_id == sub.id,
                                          ScheduledChange.status == "pending",
                                          ScheduledChange.effective_at <= ctx.now).order_by(ScheduledChange.id)).all():
        if change.kind == ChangeKind.QUANTITY and change.new_quantity:
            sub.quantity = max(ctx.plan.min_quantity, min(change.new_quantity, ctx.plan.max_quantity))
        elif change.kind == ChangeKind.PLAN and change.new_plan_id:
            info = catalog.get_plan(session, change.new_plan_id, active_only=False)
            sub.plan_id = info.plan.id
            sub.quantity = max(info.plan.min_quantity, min(sub.quantity, info.plan.max_quantity))
            ctx = _Ctx(ctx.access, ctx.org, sub, info.plan, info.product, info.vendor, ctx.now)
        elif change.kind == ChangeKind.CANCEL:
            sub.cancel_at_term_end = True
        change.status = "applied"
        session.add_all([change, sub])
    return ctx


def resume(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> Outcome:
    """Resume a suspended subscription (see the module rules for what it costs)."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = _ctx(session, access, sub_id, now, lock=True)
        _require_status(ctx, S.SUSPENDED)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        if not plan.suspendable and sub.grace_until is None:
            raise Conflict("this plan cannot be suspended", key="error.not_suspendable")
        charged = Decimal("0.00")
        if sub.term_end is not None and sub.term_end <= now:
            ctx = apply_due_changes(session, ctx)
            sub, plan = ctx.sub, ctx.plan
            if sub.cancel_at_term_end or not sub.auto_renew:
                raise Conflict("the term has ended", key="error.term_ended")
            charged = restart_term(session, ctx, user_id=access.user_id)
        elif sub.grace_until is not None or (
                proration.is_billed_monthly(plan.term, plan.billing_frequency)
                and sub.next_billing_at is not None and sub.next_billing_at <= now):
            # The instalment of the current month was not paid: charge the rest of this month.
            period = current_period(sub, plan, org, now)
            if proration.is_billed_monthly(plan.term, plan.billing_frequency):
                remaining, total = proration.days_remaining(period.start, period.end, now, org.timezone)
                unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
                amount = proration.prorate(unit * sub.quantity, remaining, total)
                required = to_org_currency(session, amount, plan, org, ctx.day)[0]
                key = f"resume:{sub.id}:{period.start:%Y%m%d}"
                if ledger.find(session, key) is None and required > 0:
                    ledger.require_funds(session, org, required)
                _e, charged = post_money(
                    session, org=org, sub=sub, plan=plan, kind="charge", plan_amount=amount, key=key,
                    description=_desc(ctx, "возобновление, остаток месяца"), quantity=sub.quantity, now=now,
                    period=(period.start, period.end), user_id=access.user_id,
                    meta={"action": "resume", "remaining_days": remaining, "total_days": total})
                sub.next_billing_at = proration.next_period_start(period, sub.term_end)
        _connector(ctx.vendor).resume(sub.vendor_ref)
        sub.status, sub.suspended_at, sub.grace_until = S.ACTIVE, None, None
        session.add(sub)
        audit.record(session, access.actor, "subscription.resumed", subscription_id=sub.id, charged=str(charged))
        outcome = Outcome(sub.id, "resume", org.billing_currency, sub.status, sub.quantity, charged=charged)
    return outcome


# --- plan change -----------------------------------------------------------------------------

def _plan_change_plan(session: Session, ctx: _Ctx, plan_code) -> tuple[PlanChangeQuote, catalog.PlanInfo]:
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    target = catalog.get_plan_by_code(session, plan_code)
    if sub.is_trial or sub.status == S.TRIAL:
        raise Conflict("a trial cannot change plan", key="error.plan_change_not_allowed")
    _require_status(ctx, S.ACTIVE)
    if target.plan.code == plan.code:
        raise InvalidInput("this is the current plan", field="plan", key="error.plan_change_same")
    if target.plan.code not in (plan.allowed_changes or []):
        raise Conflict("this plan change is not offered", key="error.plan_change_not_allowed",
                       plan=target.plan.code)
    if (target.plan.billing_type == "payg") != (plan.billing_type == "payg"):
        raise Conflict("this plan change is not offered", key="error.plan_change_not_allowed",
                       plan=target.plan.code)
    if not target.plan.min_quantity <= sub.quantity <= target.plan.max_quantity:
        raise Conflict("the quantity does not fit the new plan", key="error.plan_quantity_out_of_range",
                       minimum=target.plan.min_quantity, maximum=target.plan.max_quantity)
    tp = target.plan
    direction = _plan_direction(session, plan, tp, org, ctx.day)
    q = PlanChangeQuote(subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code, to_plan_id=tp.id,
                        direction=direction, immediate=direction == "upgrade", currency=org.billing_currency,
                        available=ledger.available(session, org))
    if plan.billing_type == "payg":
        return q, target
    _require_term_running(ctx)
    new_unit = proration.period_price(tp.price, tp.term, tp.billing_frequency)
    q.recurring_price = to_org_currency(session, new_unit * sub.quantity, tp, org, ctx.day)[0]
    if direction == "downgrade":
        q.effective_at = sub.term_end
        q.effective_date = clock.local_date(sub.term_end, org.timezone)
        return q, target
    period = current_period(sub, plan, org, now)
    remaining, total = proration.days_remaining(period.start, period.end, now, org.timezone)
    old_unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    old_left = to_org_currency(session, proration.prorate(old_unit * sub.quantity, remaining, total), plan, org, ctx.day)[0]
    if tp.term == plan.term and tp.billing_frequency == plan.billing_frequency:
        new_left = to_org_currency(session, proration.prorate(new_unit * sub.quantity, remaining, total), tp, org, ctx.day)[0]
        net = new_left - old_left
    else:
        q.new_term = True
        net = q.recurring_price - old_left
    if net >= 0:
        q.charge_now = net
    else:
        q.refund_now = -net
    q.effective_at = now
    q.effective_date = clock.local_date(now, org.timezone)
    q.shortfall = _shortfall(q.charge_now, q.available)
    return q, target


def quote_plan_change(session: Session, actor: Actor | None, sub_id, plan_code, *,
                      now: datetime | None = None) -> PlanChangeQuote:
    """Upgrade or downgrade, what it costs now and when it applies. Nothing is written."""
    access = authz.can_read(session, actor)
    ctx = _ctx(session, access, sub_id, _now(now))
    return _plan_change_plan(session, ctx, plan_code)[0]


def change_plan(session: Session, actor: Actor | None, sub_id, plan_code, *, now: datetime | None = None) -> Outcome:
    """Move to another plan of ``plan.allowed_changes``: an upgrade at once for the pro rata
    difference (charge key ``plan:<sub>:<plan code>:<date>``), a downgrade at the next renewal."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = _ctx(session, access, sub_id, now, lock=True)
        q, target = _plan_change_plan(session, ctx, plan_code)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        tp = target.plan
        outcome = Outcome(sub.id, "plan", org.billing_currency)
        _cancel_pending(session, sub.id, ChangeKind.PLAN)
        if not q.immediate:
            change = ScheduledChange(subscription_id=sub.id, kind=ChangeKind.PLAN, new_plan_id=tp.id,
                                     effective_at=sub.term_end, created_by=access.user_id, created_at=now)
            session.add(change)
            session.flush()
            outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        else:
            if q.charge_now > 0:
                ledger.require_funds(session, org, q.charge_now)
            key = f"plan:{sub.id}:{tp.code}:{ctx.day:%Y%m%d}"
            if plan.billing_type == "license":
                period = current_period(sub, plan, org, now)
                remaining, total = proration.days_remaining(period.start, period.end, now, org.timezone)
                old_unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
                new_unit = proration.period_price(tp.price, tp.term, tp.billing_frequency)
                refund_old = proration.prorate(old_unit * sub.quantity, remaining, total)
                if q.new_term:
                    new_ctx = _Ctx(access, org, sub, tp, target.product, target.vendor, now)
                    _e, outcome.refunded = post_money(
                        session, org=org, sub=sub, plan=plan, kind="refund", plan_amount=refund_old,
                        key=f"{key}:credit", description=_desc(ctx, f"переход на {tp.name}, возврат остатка"),
                        quantity=sub.quantity, now=now, period=(period.start, period.end), user_id=access.user_id,
                        meta={"action": "plan_change_credit", "remaining_days": remaining, "total_days": total})
                    sub.plan_id = tp.id
                    outcome.charged = restart_term(session, new_ctx, key_prefix=f"{key}:term", user_id=access.user_id,
                                                   source="purchase")
                else:
                    _e1, credit = post_money(
                        session, org=org, sub=sub, plan=plan, kind="refund", plan_amount=refund_old,
                        key=f"{key}:credit", description=_desc(ctx, f"переход на {tp.name}, возврат остатка"),
                        quantity=sub.quantity, now=now, period=(period.start, period.end), user_id=access.user_id,
                        meta={"action": "plan_change_credit", "remaining_days": remaining, "total_days": total})
                    new_ctx = _Ctx(access, org, sub, tp, target.product, target.vendor, now)
                    _e2, charge = post_money(
                        session, org=org, sub=sub, plan=tp, kind="charge",
                        plan_amount=proration.prorate(new_unit * sub.quantity, remaining, total),
                        key=f"{key}:charge", description=_desc(new_ctx, f"переход с {plan.name}, остаток периода"),
                        quantity=sub.quantity, now=now, period=(period.start, period.end), user_id=access.user_id,
                        meta={"action": "plan_change", "remaining_days": remaining, "total_days": total})
                    outcome.charged, outcome.refunded = (charge - credit, Decimal("0.00")) if charge >= credit \
                        else (Decimal("0.00"), credit - charge)
            sub.plan_id = tp.id
            _connector(ctx.vendor).change_plan(sub.vendor_ref, tp.code)
            outcome.effective_at = now
        session.add(sub)
        audit.record(session, access.actor, "subscription.plan_changed" if q.immediate else "subscription.plan_change_scheduled",
                     subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code, direction=q.direction,
                     charged=str(outcome.charged), refunded=str(outcome.refunded))
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
    return outcome


# --- cancellation ----------------------------------------------------------------------------

def _cancel_plan(session: Session, ctx: _Ctx) -> CancelQuote:
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    _require_status(ctx, S.ACTIVE, S.TRIAL, S.SUSPENDED, S.PENDING)
    q = CancelQuote(subscription_id=sub.id, immediate=True, currency=org.billing_currency, effective_at=now,
                    effective_date=clock.local_date(now, org.timezone))
    if plan.billing_type != "license" or sub.is_trial or sub.status == S.PENDING or sub.grace_until is not None:
        return q  # nothing paid ahead (or unpaid): ends at once, nothing refunded
    if sub.term_end is not None and sub.term_end <= now:
        return q
    if sub.cancel_at_term_end:
        raise Conflict("the cancellation is already scheduled", key="error.cancel_already_scheduled")
    batches = _batches(session, sub.id)
    if sub.quantity > 0 and _in_window(batches, now) >= sub.quantity:
        period = current_period(sub, plan, org, now)
        remaining, total = proration.days_remaining(period.start, period.end, now, org.timezone)
        unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
        if not (proration.is_billed_monthly(plan.term, plan.billing_frequency) and sub.next_billing_at is not None
                and sub.next_billing_at <= now):
            q.refund_now = to_org_currency(session, proration.prorate(unit * sub.quantity, remaining, total),
                                           plan, org, ctx.day)[0]
        return q
    q.immediate = False
    q.effective_at = sub.term_end
    q.effective_date = clock.local_date(sub.term_end, org.timezone)
    return q


def quote_cancel(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> CancelQuote:
    """Whether cancelling ends the subscription now (with what refund) or at the term's end."""
    access = authz.can_read(session, actor)
    ctx = _ctx(session, access, sub_id, _now(now))
    return _cancel_plan(session, ctx)


def cancel(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> Outcome:
    """Cancel: at once with a pro rata refund when every seat is inside its cancellation window (key
    ``cancel:<sub>``), else at the end of the term (``cancel_at_term_end`` and a scheduled change).
    Trials, pay-as-you-go and unpaid (grace/suspended for funds) subscriptions end at once."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = _ctx(session, access, sub_id, now, lock=True)
        q = _cancel_plan(session, ctx)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        outcome = Outcome(sub.id, "cancel", org.billing_currency)
        if q.immediate:
            if q.refund_now > 0:
                period = current_period(sub, plan, org, now)
                remaining, total = proration.days_remaining(period.start, period.end, now, org.timezone)
                unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
                _e, outcome.refunded = post_money(
                    session, org=org, sub=sub, plan=plan, kind="refund",
                    plan_amount=proration.prorate(unit * sub.quantity, remaining, total), key=f"cancel:{sub.id}",
                    description=_desc(ctx, "отмена, возврат остатка"), quantity=sub.quantity, now=now,
                    period=(period.start, period.end), user_id=access.user_id,
                    meta={"action": "cancel", "remaining_days": remaining, "total_days": total})
            _cancel_pending(session, sub.id)
            session.exec(update(LicenceBatch).where(LicenceBatch.subscription_id == sub.id).values(quantity=0))
            _connector(ctx.vendor).cancel(sub.vendor_ref)
            sub.status, sub.cancelled_at, sub.auto_renew = S.CANCELLED, now, False
            sub.next_billing_at = None
            outcome.effective_at = now
        else:
            sub.cancel_at_term_end = True
            _cancel_pending(session, sub.id, ChangeKind.CANCEL)
            change = ScheduledChange(subscription_id=sub.id, kind=ChangeKind.CANCEL, effective_at=sub.term_end,
                                     created_by=access.user_id, created_at=now)
            session.add(change)
            session.flush()
            outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        session.add(sub)
        audit.record(session, access.actor, "subscription.cancelled" if q.immediate else "subscription.cancel_scheduled",
                     subscription_id=sub.id, refunded=str(outcome.refunded),
                     effective_at=outcome.effective_at.isoformat() if outcome.effective_at else None)
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
    return outcome


def cancel_scheduled_change(session: Session, actor: Actor | None, change_id, *, now: datetime | None = None) -> Outcome:
    """Withdraw a pending scheduled change (a decrease, a downgrade or a cancellation at term end)."""
    now = _now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        cid = _parse_id(change_id, "scheduled change", "error.scheduled_change_not_found")
        change = session.get(ScheduledChange, cid)
        sub = session.get(Subscription, change.subscription_id) if change else None
        if change is None or sub is None or sub.org_id != access.org_id:
            raise NotFound("scheduled change not found", key="error.scheduled_change_not_found")
        if change.status != "pending":
            raise Conflict("the change is no longer pending", key="error.change_not_pending")
        change.status = "cancelled"
        if change.kind == ChangeKind.CANCEL:
            sub.cancel_at_term_end = False
        session.add_all([change, sub])
        audit.record(session, access.actor, "subscription.scheduled_change_cancelled", subscription_id=sub.id,
                     change_id=change.id, kind=change.kind)
        outcome = Outcome(sub.id, "cancel_scheduled_change", session.get(Organisation, access.org_id).billing_currency,
                          sub.status, sub.quantity, scheduled_change_id=change.id)
    return outcome


# --- waiting for a payment (the shortfall path) ---------------------------------------------

def pending_action_for_order(actor: Actor, plan_id, quantity, *, trial_convert: bool = False,
                             request_id: str | None = None) -> dict:
    """The ``Payment.pending_action`` of an order waiting for a shortfall invoice (see
    :func:`complete_pending_action`). Validates nothing but the shape; completion re-checks all."""
    return {"type": "order", "version": 1, "org_id": actor.org_id, "user_id": actor.user_id,
            "plan_id": int(plan_id), "quantity": int(quantity), "trial_convert": bool(trial_convert),
            "request_id": request_id or uuid.uuid4().hex}


def pending_action_for_quantity(actor: Actor, sub_id, quantity, *, change_id: str | None = None) -> dict:
    """The ``Payment.pending_action`` of a licence increase waiting for a shortfall invoice."""
    return {"type": "quantity", "version": 1, "org_id": actor.org_id, "user_id": actor.user_id,
            "subscription_id": int(sub_id), "quantity": int(quantity), "change_id": change_id or uuid.uuid4().hex}


def _action_actor(session: Session, org_id: int, user_id) -> Actor:
    """The user who asked, if still an Owner/Admin of the organisation; else the system."""
    if user_id is not None:
        candidate = Actor(user_id=int(user_id), org_id=org_id)
        try:
            authz.can_write(session, candidate)
            return candidate
        except DomainError:
            pass
    return Actor.system(org_id)


def complete_pending_action(session: Session, action: dict, now: datetime | None = None) -> Outcome:
    """Carry out the order or licence increase that waited for a paid shortfall invoice.

    ``action`` is what :func:`pending_action_for_order` / :func:`pending_action_for_quantity` made:

    - ``{"type": "order", "version": 1, "org_id": int, "user_id": int | None, "plan_id": int,
      "quantity": int, "trial_convert": bool, "request_id": str}``
    - ``{"type": "quantity", "version": 1, "org_id": int, "user_id": int | None,
      "subscription_id": int, "quantity": int (the target count), "change_id": str}``

    It runs as the requesting user while they are still Owner/Admin, else as the system. It is
    idempotent: the money is keyed by ``request_id``/``change_id``, so calling it twice (a retried
    job) charges once; an increase already reached (the count is at or above the target) does
    nothing and returns ``already_done``. Every rule is checked again: a domain error
    (InsufficientFunds when the balance was spent meanwhile, Conflict, NotFound...) means it cannot
    be carried out now, nothing was changed, and the payment simply stays on the balance. Commits.
    """
    if not isinstance(action, dict) or action.get("type") not in ("order", "quantity"):
        raise InvalidInput("unknown pending action", field="action", key="error.invalid_pending_action")
    try:
        org_id = int(action["org_id"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("pending action without organisation", field="action",
                           key="error.invalid_pending_action") from None
    now = _now(now)
    actor = _action_actor(session, org_id, action.get("user_id"))
    if action["type"] == "order":
        return order(session, actor, action.get("plan_id"), action.get("quantity"),
                     trial_convert=bool(action.get("trial_convert", False)), request_id=action.get("request_id"),
                     now=now)
    sub_id = action.get("subscription_id")
    access = authz.can_read(session, actor)
    sub = _load_sub(session, access, sub_id, fresh=True)
    target = parse_quantity(action.get("quantity"), minimum=1)
    change_id = action.get("change_id")
    key = f"qty:{sub.id}:{change_id}" if change_id else None
    if sub.quantity >= target or (key and ledger.find(session, key) is not None):
        session.rollback()
        org = session.get(Organisation, org_id)
        return Outcome(sub.id, "quantity", org.billing_currency, sub.status, sub.quantity, already_done=True)
    return change_quantity(session, actor, sub.id, target, change_id=change_id, now=now)
