"""Reading subscriptions: the list (search, filters, sorting, paging), one subscription's detail
(batches and their cancellation windows, scheduled changes, current billing period, the plans it
may change to) and its history. Any member of the organisation may read; nothing is written."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from noventiq_panel.models import Organisation, Plan, Product, Subscription, User, Vendor
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import audit, authz, proration
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import DomainError, InvalidInput
from noventiq_panel.services.subscriptions import licences, provisioning
from noventiq_panel.services.subscriptions.context import (
    S, current_period, load, load_sub, local_day, parse_bool, parse_int, pending_changes, seat_price,
    to_org_currency, utc_now,
)
from noventiq_panel.services.subscriptions.plan_change import plan_direction

PAGE_MAX = 100
SORTS = ("term_end", "name", "status", "quantity", "vendor", "created")


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
        "end_date": local_day(sub.term_end, org.timezone),
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
    descending = parse_bool(descending, "descending")
    offset = parse_int(offset, "offset", 0, 10**9)
    limit = parse_int(limit, "limit", 1, PAGE_MAX)
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


def get_subscription(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> dict:
    """The detail view: the list row plus plan, product texts, vendor, pending scheduled changes,
    licence batches with the time left in their cancellation windows, the current billing period
    and the plans it may change to (with direction)."""
    access = authz.can_read(session, actor)
    now = utc_now(now)
    ctx = load(session, access, sub_id, now)
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
    batches = licences.held(session, sub.id)
    view["batches"] = [
        {"id": b.id, "quantity": b.quantity, "source": b.source, "added_at": b.added_at,
         "window_ends_at": b.window_ends_at, "in_window": b.window_ends_at > now,
         "window_seconds_left": max(0, int((b.window_ends_at - now).total_seconds()))}
        for b in batches
    ]
    view["refundable_now"] = licences.in_window(batches, now) if sub.status == S.ACTIVE else 0
    changes = []
    for change in pending_changes(session, sub.id):
        target = session.get(Plan, change.new_plan_id) if change.new_plan_id else None
        changes.append({"id": change.id, "kind": change.kind, "new_quantity": change.new_quantity,
                        "new_plan": target.name if target else None, "new_plan_code": target.code if target else None,
                        "effective_at": change.effective_at,
                        "effective_date": local_day(change.effective_at, org.timezone)})
    view["scheduled_changes"] = changes
    period = None
    if (plan.billing_type == "license" and sub.term_start and sub.term_end and not sub.is_trial
            and sub.status != S.PENDING):  # awaiting activation: the term starts when the vendor activates
        p = current_period(sub, plan, org, now)
        remaining, total = proration.days_remaining(p.start, p.end, now, org.timezone)
        period = {"start": p.start, "end": p.end, "remaining_days": remaining, "total_days": total}
        try:
            view["recurring_price"] = to_org_currency(session, seat_price(plan) * sub.quantity, plan, org, ctx.day)[0]
        except DomainError:
            view["recurring_price"] = None
    view["period"] = period
    options = []
    for code in plan.allowed_changes or []:
        try:
            target = catalog.get_plan_by_code(session, code)
            direction = plan_direction(session, plan, target.plan, org, ctx.day)
        except DomainError:
            continue
        options.append({"id": target.plan.id, "code": target.plan.code, "name": target.plan.name,
                        "product": target.product.name, "direction": direction,
                        "plan_view": catalog.plan_view(session, target.plan, org, ctx.day)})
    view["plan_options"] = options
    view["at_vendor"] = provisioning.open_tasks_of(session, sub.id)  # the provisioning queue
    if any(t["params"].get("refund") for t in view["at_vendor"]):  # provisioning.require_nothing_waiting
        view["can_change_quantity"] = False
    view["refused"] = provisioning.last_rejection(session, sub.id)
    return view


def history(session: Session, actor: Actor | None, sub_id, *, limit: int = 100, offset: int = 0) -> list[dict]:
    """Audit events of one subscription, newest first (any member may read)."""
    access = authz.can_read(session, actor)
    sub = load_sub(session, access, sub_id)
    limit = parse_int(limit, "limit", 1, 500)
    offset = parse_int(offset, "offset", 0, 10**9)
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
