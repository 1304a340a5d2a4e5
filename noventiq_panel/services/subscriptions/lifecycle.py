"""A subscription's settings and its pauses: automatic renewal, trial conversion, suspension and
resumption, and the two steps renewals share with them (a new term, the due scheduled changes).

- **Suspend/resume** only where ``plan.suspendable``, and not while a renewal or an instalment is
  due (:mod:`lapse`: pay it or cancel). Nothing is charged while suspended (renewals
  and instalments skip the subscription). Resuming inside a paid period costs nothing; resuming
  after the term ended starts a new term today and charges it; resuming a yearly plan billed
  monthly whose instalment fell due while suspended charges the rest of the current month pro rata.
  A subscription suspended for non-payment (``grace_until`` set) is resumed by paying: the renewal
  is retried at once.
- **A new term** (:func:`restart_term`) starts at today's local midnight, charges its first billing
  period and gives all seats one new licence batch.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, select

from noventiq_panel.models import ScheduledChange
from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import audit, authz, clock, ledger, proration
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.subscriptions import lapse, licences, provisioning
from noventiq_panel.services.subscriptions.context import (
    LIFECYCLE_ROLES, S, Ctx, atomic, charge_once, clamp, current_period, days_left, desc, load, mail_org,
    parse_bool, require_licence, require_status, seat_price, utc_now,
)
from noventiq_panel.services.subscriptions.quotes import Outcome


def _set_flag(session: Session, actor: Actor | None, sub_id, enabled, now: datetime | None, *, name: str,
              statuses: tuple[str, ...], licence_only: bool) -> Outcome:
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        enabled = parse_bool(enabled, "enabled")
        ctx = load(session, access, sub_id, now)
        if licence_only:
            require_licence(ctx)
        require_status(ctx, *statuses)
        sub = ctx.sub
        if getattr(sub, name) != enabled:
            setattr(sub, name, enabled)
            session.add(sub)
            if name == "auto_renew" and not provisioning.is_manual(ctx.vendor.code):
                provisioning.tell_vendor(session, sub, ctx.vendor.code, "auto_renew", now=now,
                                         requested_by=access.user_id, enabled=enabled)
            audit.record(session, access.actor, f"subscription.{name}", subscription_id=sub.id, enabled=enabled)
        outcome = Outcome(sub.id, name, ctx.org.billing_currency, sub.status, sub.quantity)
    return outcome


def set_auto_renew(session: Session, actor: Actor | None, sub_id, enabled, *, now: datetime | None = None) -> Outcome:
    """Turn automatic renewal on or off (licence subscriptions that are active or suspended)."""
    return _set_flag(session, actor, sub_id, enabled, now, name="auto_renew", statuses=(S.ACTIVE, S.SUSPENDED),
                     licence_only=True)


def set_trial_convert(session: Session, actor: Actor | None, sub_id, enabled, *, now: datetime | None = None) -> Outcome:
    """Choose whether a trial becomes the paid plan when it ends (if the balance covers it)."""
    return _set_flag(session, actor, sub_id, enabled, now, name="trial_convert", statuses=(S.TRIAL,),
                     licence_only=False)


def suspend(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> Outcome:
    """Suspend an active subscription whose plan allows it. Nothing is charged while suspended."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = load(session, access, sub_id, now, lock=True)
        if not ctx.plan.suspendable:
            raise Conflict("this plan cannot be suspended", key="error.not_suspendable")
        require_status(ctx, S.ACTIVE)
        provisioning.require_nothing_waiting(session, ctx.sub.id)
        sub = ctx.sub
        if lapse.due(sub, ctx.plan, now) is not None:
            # a renewal or an instalment is due: a customer's pause would take the seats out of the
            # grace → suspension → expiry path and leave the days used unpaid (issue 13)
            raise Conflict("a payment is due: pay it or cancel", key="error.suspend_payment_due")
        provisioning.tell_vendor(session, sub, ctx.vendor.code, "suspend", now=now, requested_by=access.user_id)
        sub.status, sub.suspended_at, sub.grace_until, sub.suspend_reason = S.SUSPENDED, now, None, "customer"
        session.add(sub)
        audit.record(session, access.actor, "subscription.suspended", subscription_id=sub.id, reason="manual")
        mail_org(session, sub.org_id, LIFECYCLE_ROLES, "suspended",
                 {"product": ctx.product.name, "suspended_on": ctx.day, "reason": "manual",
                  "subscription_id": sub.id}, now=now)
        outcome = Outcome(sub.id, "suspend", ctx.org.billing_currency, sub.status, sub.quantity)
    return outcome


def restart_term(session: Session, ctx: Ctx, *, key_prefix: str = "renewal", user_id: int | None = None,
                 source: str = "renewal") -> Decimal:
    """Start a new term and charge its first billing period; all seats get a new batch. Used when a
    subscription comes back after its term ended: the term starts today, moved back by the days it
    was used after the term ended (``proration.comeback_start``). Requires funds. Flushes."""
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    start = lapse.comeback_term_start(sub, plan, org.timezone, now)
    end = proration.term_end(start, plan.term, org.timezone)
    period = proration.billing_period(start, end, plan.term, plan.billing_frequency, start, org.timezone)
    charged = charge_once(session, ctx, plan_amount=seat_price(plan) * sub.quantity,
                          key=f"{key_prefix}:{sub.id}:{clock.local_date(start, org.timezone):%Y%m%d}",
                          description=desc(ctx, f"новый срок с {clock.local_date(start, org.timezone):%d.%m.%Y}, "
                                                f"{sub.quantity} шт."),
                          period=period, user_id=user_id, meta={"action": "renewal"})
    licences.empty(session, [sub.id])
    licences.add(session, sub.id, sub.quantity, now, plan.cancellation_window_hours, source)
    sub.term_start, sub.term_end, sub.activated_at = start, end, start
    sub.next_billing_at = proration.next_period_start(period, end)
    sub.grace_until = None
    sub.status = S.ACTIVE
    session.add(sub)
    return charged


def apply_due_changes(session: Session, ctx: Ctx) -> Ctx:
    """Apply the subscription's pending scheduled changes that are due (flush only); returns the
    context with the plan the subscription has now."""
    sub = ctx.sub
    for change in session.exec(
            select(ScheduledChange).where(ScheduledChange.subscription_id == sub.id,
                                          ScheduledChange.status == "pending",
                                          ScheduledChange.effective_at <= ctx.now).order_by(ScheduledChange.id)).all():
        if change.kind == ChangeKind.QUANTITY and change.new_quantity:
            sub.quantity = clamp(change.new_quantity, ctx.plan)
        elif change.kind == ChangeKind.PLAN and change.new_plan_id:
            info = catalog.get_plan(session, change.new_plan_id, active_only=False)
            sub.plan_id = info.plan.id
            sub.quantity = clamp(sub.quantity, info.plan)
            ctx = ctx.on_plan(info)
        elif change.kind == ChangeKind.CANCEL:
            sub.cancel_at_term_end = True
        change.status = "applied"
        session.add_all([change, sub])
    return ctx


def resume(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> Outcome:
    """Resume a suspended subscription (see the module rules for what it costs)."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = load(session, access, sub_id, now, lock=True)
        require_status(ctx, S.SUSPENDED)
        provisioning.require_nothing_waiting(session, ctx.sub.id)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        if sub.suspend_reason == "credit" or (plan.billing_type == "payg" and ledger.available(session, org) < 0):
            # credit control resumes it once the balance is back; an overdrawn organisation cannot
            # run up pay-as-you-go usage by suspending and resuming around its hourly check
            raise Conflict("suspended until the balance is topped up", key="error.suspended_for_credit")
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
                start = lapse.comeback_from(sub, plan, org.timezone, now, period)
                amount = proration.pro_rata_charge(plan.price, plan.term, plan.billing_frequency, sub.quantity,
                                                   period, start, org.timezone)
                charged = charge_once(session, ctx, plan_amount=amount,
                                      key=f"resume:{sub.id}:{clock.local_date(period.start, org.timezone):%Y%m%d}",
                                      description=desc(ctx, "возобновление, остаток месяца"), period=period,
                                      user_id=access.user_id,
                                      meta={"action": "resume", **days_left(ctx, period, start)})
                sub.next_billing_at = proration.next_period_start(period, sub.term_end)
        provisioning.tell_vendor(session, sub, ctx.vendor.code, "resume", now=now, requested_by=access.user_id)
        sub.status, sub.suspended_at, sub.grace_until, sub.suspend_reason = S.ACTIVE, None, None, ""
        session.add(sub)
        audit.record(session, access.actor, "subscription.resumed", subscription_id=sub.id, charged=str(charged))
        outcome = Outcome(sub.id, "resume", org.billing_currency, sub.status, sub.quantity, charged=charged)
    return outcome
