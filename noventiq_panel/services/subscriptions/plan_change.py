"""Moving a subscription to another plan.

Only to codes in ``plan.allowed_changes``. A plan whose price per seat per year (in the
organisation's currency) is higher or equal is an upgrade, done at once for the pro rata difference
over the current billing period (when both plans share term and billing frequency; otherwise a new
term starts today: the new plan's first period is charged and the old plan's unused part of the
current period refunded). A cheaper plan is a downgrade, scheduled for the renewal.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlmodel import Session

from noventiq_panel.models import Organisation, Plan
from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import audit, authz, clock, ledger, proration
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, InvalidInput
from noventiq_panel.services.subscriptions.context import (
    S, Ctx, atomic, cancel_pending, connector, current_period, load, post_pro_rata, pro_rata, require_status,
    require_term_running, schedule, seat_price, shortfall, to_org_currency, utc_now,
)
from noventiq_panel.services.subscriptions.lifecycle import restart_term
from noventiq_panel.services.subscriptions.quotes import Outcome, PlanChangeQuote


def plan_direction(session: Session, current: Plan, target: Plan, org: Organisation, day: date) -> str:
    """``upgrade`` when the target's price per seat per year (org currency) is >= the current one."""
    if target.billing_type != "license" or current.billing_type != "license":
        return "upgrade"
    now_price = catalog.convert_price(session, proration.yearly_price(current.price, current.term), current.currency, org, day)[0]
    new_price = catalog.convert_price(session, proration.yearly_price(target.price, target.term), target.currency, org, day)[0]
    return "upgrade" if new_price >= now_price else "downgrade"


def _not_offered(plan: Plan) -> Conflict:
    return Conflict("this plan change is not offered", key="error.plan_change_not_allowed", plan=plan.code)


def _plan_change_plan(session: Session, ctx: Ctx, plan_code) -> tuple[PlanChangeQuote, catalog.PlanInfo]:
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    target = catalog.get_plan_by_code(session, plan_code)
    tp = target.plan
    if sub.is_trial or sub.status == S.TRIAL:
        raise Conflict("a trial cannot change plan", key="error.plan_change_not_allowed")
    require_status(ctx, S.ACTIVE)
    if tp.code == plan.code:
        raise InvalidInput("this is the current plan", field="plan", key="error.plan_change_same")
    if tp.code not in (plan.allowed_changes or []) or (tp.billing_type == "payg") != (plan.billing_type == "payg"):
        raise _not_offered(tp)
    if not tp.min_quantity <= sub.quantity <= tp.max_quantity:
        raise Conflict("the quantity does not fit the new plan", key="error.plan_quantity_out_of_range",
                       minimum=tp.min_quantity, maximum=tp.max_quantity)
    direction = plan_direction(session, plan, tp, org, ctx.day)
    q = PlanChangeQuote(subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code, to_plan_id=tp.id,
                        direction=direction, immediate=direction == "upgrade", currency=org.billing_currency,
                        available=ledger.available(session, org))
    if plan.billing_type == "payg":
        return q, target
    require_term_running(ctx)
    q.recurring_price = to_org_currency(session, seat_price(tp) * sub.quantity, tp, org, ctx.day)[0]
    if direction == "downgrade":
        q.effective_at = sub.term_end
        q.effective_date = clock.local_date(sub.term_end, org.timezone)
        return q, target
    period = current_period(sub, plan, org, now)
    old_left = to_org_currency(session, pro_rata(ctx, plan, sub.quantity, period), plan, org, ctx.day)[0]
    if tp.term == plan.term and tp.billing_frequency == plan.billing_frequency:
        new_left = to_org_currency(session, pro_rata(ctx, tp, sub.quantity, period), tp, org, ctx.day)[0]
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
    q.shortfall = shortfall(q.charge_now, q.available)
    return q, target


def quote_plan_change(session: Session, actor: Actor | None, sub_id, plan_code, *,
                      now: datetime | None = None) -> PlanChangeQuote:
    """Upgrade or downgrade, what it costs now and when it applies. Nothing is written."""
    access = authz.can_read(session, actor)
    ctx = load(session, access, sub_id, utc_now(now))
    return _plan_change_plan(session, ctx, plan_code)[0]


def change_plan(session: Session, actor: Actor | None, sub_id, plan_code, *, now: datetime | None = None) -> Outcome:
    """Move to another plan of ``plan.allowed_changes``: an upgrade at once for the pro rata
    difference (charge key ``plan:<sub>:<plan code>:<date>``), a downgrade at the next renewal."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = load(session, access, sub_id, now, lock=True)
        q, target = _plan_change_plan(session, ctx, plan_code)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        tp = target.plan
        outcome = Outcome(sub.id, "plan", org.billing_currency)
        cancel_pending(session, sub.id, ChangeKind.PLAN)
        if not q.immediate:
            change = schedule(session, ctx, ChangeKind.PLAN, new_plan_id=tp.id)
            outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        else:
            if q.charge_now > 0:
                ledger.require_funds(session, org, q.charge_now)
            key = f"plan:{sub.id}:{tp.code}:{ctx.day:%Y%m%d}"
            if plan.billing_type == "license":
                period = current_period(sub, plan, org, now)
                new_ctx = ctx.on_plan(target)
                credit = post_pro_rata(session, ctx, kind="refund", seats=sub.quantity, period=period,
                                       key=f"{key}:credit", what=f"переход на {tp.name}, возврат остатка",
                                       action="plan_change_credit")
                if q.new_term:
                    outcome.refunded = credit
                    sub.plan_id = tp.id
                    outcome.charged = restart_term(session, new_ctx, key_prefix=f"{key}:term", user_id=access.user_id,
                                                   source="purchase")
                else:
                    charge = post_pro_rata(session, new_ctx, kind="charge", seats=sub.quantity, period=period,
                                           key=f"{key}:charge", what=f"переход с {plan.name}, остаток периода",
                                           action="plan_change")
                    outcome.charged, outcome.refunded = (charge - credit, Decimal("0.00")) if charge >= credit \
                        else (Decimal("0.00"), credit - charge)
            sub.plan_id = tp.id
            connector(ctx.vendor).change_plan(sub.vendor_ref, tp.code)
            outcome.effective_at = now
        session.add(sub)
        audit.record(session, access.actor, "subscription.plan_changed" if q.immediate else "subscription.plan_change_scheduled",
                     subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code, direction=q.direction,
                     charged=str(outcome.charged), refunded=str(outcome.refunded))
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
    return outcome
