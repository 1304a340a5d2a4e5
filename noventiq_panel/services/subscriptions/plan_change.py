"""Moving a subscription to another plan, as Microsoft's new-commerce rules have it.

Only to codes in ``plan.allowed_changes``.

- **Upgrade** (the same term and billing frequency, and a higher price per seat per year in the
  organisation's currency): at once; the term end stays; only the pro rata difference for the rest
  of the current billing period is charged (:func:`proration.pro_rata_charge` of each plan). The
  seats keep their cancellation windows: a plan change never starts one.
- **Everything else** (a cheaper plan, a plan of the same price, another term length or billing
  frequency): a scheduled change applied at the next renewal (the new plan's term starts then),
  nothing charged now. Choosing the current plan again withdraws the scheduled change.
- Pay-as-you-go plans switch at once and cost nothing (usage is rated at the new plan from then).

Money moves under the operation's id (``confirmation``): a plan change confirmed twice, or A → B
→ A on one day, never reuses a key.
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
from noventiq_panel.services.subscriptions import confirmation, provisioning
from noventiq_panel.services.subscriptions.context import (
    require_instalment_paid,
    S, Ctx, atomic, cancel_pending, current_period, load, pending_changes, post_money, pro_rata,
    require_status, require_term_running, schedule, seat_price, shortfall, to_org_currency, utc_now, desc,
)
from noventiq_panel.services.subscriptions.quotes import Outcome, PlanChangeQuote


def plan_direction(session: Session, current: Plan, target: Plan, org: Organisation, day: date) -> str:
    """``upgrade`` (at once), or why the change waits for the renewal: ``downgrade`` (cheaper per
    seat per year, org currency), ``same_price``, ``switch`` (another term or billing frequency)."""
    if target.billing_type != "license" or current.billing_type != "license":
        return "upgrade"
    if (target.term, target.billing_frequency) != (current.term, current.billing_frequency):
        return "switch"
    now_price = catalog.convert_price(session, proration.yearly_price(current.price, current.term), current.currency, org, day)[0]
    new_price = catalog.convert_price(session, proration.yearly_price(target.price, target.term), target.currency, org, day)[0]
    if new_price > now_price:
        return "upgrade"
    return "downgrade" if new_price < now_price else "same_price"


def _not_offered(plan: Plan) -> Conflict:
    return Conflict("this plan change is not offered", key="error.plan_change_not_allowed", plan=plan.code)


def _plan_change_plan(session: Session, ctx: Ctx, plan_code) -> tuple[PlanChangeQuote, catalog.PlanInfo]:
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    target = catalog.get_plan_by_code(session, plan_code)
    tp = target.plan
    if sub.is_trial or sub.status == S.TRIAL:
        raise Conflict("a trial cannot change plan", key="error.plan_change_not_allowed")
    require_status(ctx, S.ACTIVE)
    provisioning.require_nothing_waiting(session, ctx.sub.id)
    available = ledger.available(session, org)
    if tp.code == plan.code:
        if not pending_changes(session, sub.id, ChangeKind.PLAN):
            raise InvalidInput("this is the current plan", field="plan", key="error.plan_change_same")
        return PlanChangeQuote(subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code, to_plan_id=tp.id,
                               direction="same_price", immediate=True, currency=org.billing_currency,
                               effective_at=now, effective_date=ctx.day, available=available,
                               withdraws_pending=True), target
    if tp.code not in (plan.allowed_changes or []) or (tp.billing_type == "payg") != (plan.billing_type == "payg"):
        raise _not_offered(tp)
    if not tp.min_quantity <= sub.quantity <= tp.max_quantity:
        raise Conflict("the quantity does not fit the new plan", key="error.plan_quantity_out_of_range",
                       minimum=tp.min_quantity, maximum=tp.max_quantity)
    direction = plan_direction(session, plan, tp, org, ctx.day)
    q = PlanChangeQuote(subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code, to_plan_id=tp.id,
                        direction=direction, immediate=direction == "upgrade", currency=org.billing_currency,
                        available=available)
    if plan.billing_type == "payg":
        q.effective_at, q.effective_date = now, ctx.day
        return q, target
    require_term_running(ctx)
    require_instalment_paid(ctx)
    q.recurring_price = to_org_currency(session, seat_price(tp) * sub.quantity, tp, org, ctx.day)[0]
    if not q.immediate:
        q.effective_at = sub.term_end
        q.effective_date = clock.local_date(sub.term_end, org.timezone)
        return q, target
    q.charge_now = sum((amount for _plan, _part, amount in _upgrade_parts(session, ctx, target)), Decimal("0.00"))
    q.effective_at, q.effective_date = now, ctx.day
    q.shortfall = shortfall(q.charge_now, q.available)
    return q, target


def _upgrade_parts(session: Session, ctx: Ctx, target: catalog.PlanInfo) -> list[tuple[Plan, Decimal, Decimal]]:
    """The money of an upgrade as (plan, plan-currency amount, org-currency amount) charges: the
    difference of the two plans' pro rata prices for the rest of the period, as one charge when
    both plans have one currency; else the new plan's charge and the old plan's credit (negative)."""
    sub, plan, org = ctx.sub, ctx.plan, ctx.org
    period = current_period(sub, plan, org, ctx.now)
    new_part, old_part = pro_rata(ctx, target.plan, sub.quantity, period), pro_rata(ctx, plan, sub.quantity, period)
    if target.plan.currency == plan.currency:
        diff = new_part - old_part
        return [(target.plan, diff, to_org_currency(session, diff, target.plan, org, ctx.day)[0])]
    return [(target.plan, new_part, to_org_currency(session, new_part, target.plan, org, ctx.day)[0]),
            (plan, -old_part, -to_org_currency(session, old_part, plan, org, ctx.day)[0])]


def quote_plan_change(session: Session, actor: Actor | None, sub_id, plan_code, *,
                      now: datetime | None = None) -> PlanChangeQuote:
    """Upgrade at once or a change at the renewal, what it costs now and when it applies."""
    access = authz.can_read(session, actor)
    ctx = load(session, access, sub_id, utc_now(now))
    quote = _plan_change_plan(session, ctx, plan_code)[0]
    quote.quote_id = confirmation.issue(session, access, "plan", _params(ctx, quote.to_plan), quote.amount_due,
                                        ctx.org.billing_currency, now=ctx.now, subscription_id=ctx.sub.id)
    session.commit()
    return quote


def _params(ctx: Ctx, plan_code: str) -> dict:
    return {"subscription_id": ctx.sub.id, "from_plan": ctx.plan.code, "to_plan": plan_code}


def change_plan(session: Session, actor: Actor | None, sub_id, plan_code, *, quote_id: str | None = None, amount=None,
                now: datetime | None = None) -> Outcome:
    """Move to another plan of ``plan.allowed_changes`` (see the module rules). ``quote_id`` and
    ``amount`` are those of the preview (:func:`quote_plan_change`)."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = load(session, access, sub_id, now, lock=True)
        if (done := confirmation.confirmed_before(session, access, "plan", quote_id, subscription_id=ctx.sub.id)) is not None:
            return Outcome.replayed(done)
        q, target = _plan_change_plan(session, ctx, plan_code)
        op = confirmation.begin(session, access, "plan", quote_id, amount, params=_params(ctx, q.to_plan),
                                amount_due=q.amount_due, now=now)
        if op.done is not None:
            return Outcome.replayed(op.done)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        tp = target.plan
        outcome = Outcome(sub.id, "plan", org.billing_currency)
        cancel_pending(session, sub.id, ChangeKind.PLAN)
        if q.withdraws_pending:
            outcome.effective_at = now
        elif not q.immediate:
            change = schedule(session, ctx, ChangeKind.PLAN, new_plan_id=tp.id)
            outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        else:
            if q.charge_now > 0:
                ledger.require_funds(session, org, q.charge_now)
            if plan.billing_type == "license":
                period = current_period(sub, plan, org, now)
                days = proration.days_remaining(period.start, period.end, now, org.timezone)
                for part_plan, plan_amount, _amount in _upgrade_parts(session, ctx, target):
                    charge = plan_amount >= 0
                    posted = post_money(
                        session, org=org, sub=sub, plan=part_plan, kind="charge" if charge else "refund",
                        plan_amount=abs(plan_amount), key=op.key("charge" if charge else "credit"),
                        description=desc(ctx, f"переход с {plan.name} на {tp.name}, остаток периода"),
                        quantity=sub.quantity, now=now, period=(period.start, period.end), user_id=access.user_id,
                        meta={"action": "plan_upgrade", "from_plan": plan.code, "to_plan": tp.code,
                              "remaining_days": days[0], "total_days": days[1]})
                    if charge:
                        outcome.charged += posted
                    else:
                        outcome.refunded += posted
                net = outcome.charged - outcome.refunded
                outcome.charged, outcome.refunded = max(net, Decimal("0.00")), max(-net, Decimal("0.00"))
            sub.plan_id = tp.id
            provisioning.tell_vendor(session, sub, ctx.vendor.code, "plan", now=now, requested_by=access.user_id, plan_code=tp.code)
            outcome.effective_at = now
        session.add(sub)
        action = ("subscription.plan_change_withdrawn" if q.withdraws_pending else
                  "subscription.plan_changed" if q.immediate else "subscription.plan_change_scheduled")
        audit.record(session, access.actor, action, subscription_id=sub.id, from_plan=plan.code, to_plan=tp.code,
                     direction=q.direction, charged=str(outcome.charged), refunded=str(outcome.refunded),
                     operation=op.id)
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
        confirmation.finish(session, op, outcome.stored(), now=now)
    return outcome
