"""Cancelling a subscription, and withdrawing a scheduled change.

When every seat is still inside its licence batch's cancellation window, a cancellation ends the
subscription at once with a pro rata refund of the current billing period; otherwise at the end of
the term (a scheduled ``cancel`` change that :func:`cancel_scheduled_change` can withdraw). Trials,
pay-as-you-go and unpaid (grace, suspended for funds) subscriptions end at once, refunding nothing;
an unpaid one is charged the days it was used after its payment fell due (:mod:`lapse`), even when
that overdraws the balance. A vendor without a connector (``provisioning``): a cancellation with a
refund changes nothing until the vendor confirms it; the subscription ends, refunded, then.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel import Session

from noventiq_panel.models import Organisation, ScheduledChange, Subscription
from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.core import audit, authz, clock, proration
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.subscriptions import confirmation, lapse, licences, provisioning
from noventiq_panel.services.subscriptions.context import (
    Ctx, S, atomic, cancel_pending, capped_refund, current_period, desc, load, post_money, post_refund,
    require_status, schedule, to_org_currency, utc_now,
)
from noventiq_panel.services.subscriptions.quotes import CancelQuote, Outcome


def _cancel_plan(session: Session, ctx: Ctx) -> CancelQuote:
    sub, plan, org, now = ctx.sub, ctx.plan, ctx.org, ctx.now
    require_status(ctx, S.ACTIVE, S.TRIAL, S.SUSPENDED, S.PENDING)
    provisioning.require_nothing_waiting(session, sub.id)
    q = CancelQuote(subscription_id=sub.id, immediate=True, currency=org.billing_currency, effective_at=now,
                    effective_date=clock.local_date(now, org.timezone))
    if (owed := lapse.owed(sub, plan, org.timezone, now)) is not None:
        q.charge_now = to_org_currency(session, owed.plan_amount, plan, org, ctx.day)[0]
    # a yearly commitment billed monthly is not left by skipping an instalment: in grace it is
    # cancelled as if paid (at once only inside the window, else at the term's end)
    commitment = proration.is_billed_monthly(plan.term, plan.billing_frequency) and sub.term_end is not None \
        and sub.term_end > now
    if plan.billing_type != "license" or sub.is_trial or sub.status == S.PENDING or (
            sub.grace_until is not None and not commitment):
        return q  # nothing paid ahead (or unpaid): ends at once, nothing refunded
    if sub.term_end is not None and sub.term_end <= now:
        return q
    if sub.cancel_at_term_end:
        raise Conflict("the cancellation is already scheduled", key="error.cancel_already_scheduled")
    if sub.quantity > 0 and licences.in_window(licences.held(session, sub.id), now) >= sub.quantity:
        period = current_period(sub, plan, org, now)
        if not (proration.is_billed_monthly(plan.term, plan.billing_frequency) and sub.next_billing_at is not None
                and sub.next_billing_at <= now):
            q.refund_now = capped_refund(session, ctx, sub.quantity, period)
            q.vendor_confirms = q.refund_now > 0 and provisioning.refund_waits(ctx.vendor.code)
        return q
    q.immediate, q.charge_now = False, Decimal("0.00")  # a lapse is charged when it ends
    q.effective_at = sub.term_end
    q.effective_date = clock.local_date(sub.term_end, org.timezone)
    return q


def _charge_lapse(session: Session, ctx: Ctx, user_id: int | None) -> Decimal:
    """The lapse is keyed by what it bills (the subscription and the due day), not by the
    operation: it is one debt however the subscription ends, a cancellation or the expiry job."""
    owed = lapse.owed(ctx.sub, ctx.plan, ctx.tz, ctx.now)
    return post_money(session, org=ctx.org, sub=ctx.sub, plan=ctx.plan, kind="charge", plan_amount=owed.plan_amount,
               key=owed.key(ctx.sub.id, ctx.tz), quantity=ctx.sub.quantity, now=ctx.now, period=(owed.period.start, owed.period.end),
               description=desc(ctx, owed.what(ctx.tz, ctx.sub.quantity)),
               user_id=user_id, meta={"action": "lapse", "days": owed.days})


def quote_cancel(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> CancelQuote:
    """Whether cancelling ends the subscription now (with what refund) or at the term's end."""
    access = authz.can_read(session, actor)
    ctx = load(session, access, sub_id, utc_now(now))
    quote = _cancel_plan(session, ctx)
    quote.quote_id = confirmation.issue(session, access, "cancel", _params(ctx), quote.amount_due,
                                        ctx.org.billing_currency, now=ctx.now, subscription_id=ctx.sub.id)
    session.commit()
    return quote


def _params(ctx: Ctx) -> dict:
    return {"subscription_id": ctx.sub.id}


def cancel(session: Session, actor: Actor | None, sub_id, *, quote_id: str | None = None, amount=None,
           now: datetime | None = None) -> Outcome:
    """Cancel: at once with a pro rata refund when every seat is inside its cancellation window (key
    ``op:<operation id>:refund``), else at the end of the term (``cancel_at_term_end`` and a
    scheduled change). Trials, pay-as-you-go and unpaid (grace/suspended for funds) subscriptions end
    at once. ``quote_id`` and ``amount`` are those of the preview (:func:`quote_cancel`)."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = load(session, access, sub_id, now, lock=True)
        if (done := confirmation.confirmed_before(session, access, "cancel", quote_id, subscription_id=ctx.sub.id)) is not None:
            return Outcome.replayed(done)
        q = _cancel_plan(session, ctx)
        op = confirmation.begin(session, access, "cancel", quote_id, amount, params=_params(ctx),
                                amount_due=q.amount_due, now=now)
        if op.done is not None:
            return Outcome.replayed(op.done)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        outcome = Outcome(sub.id, "cancel", org.billing_currency)
        if q.vendor_confirms:
            provisioning.ask_cancel(session, ctx)
            outcome.at_vendor = True
        elif q.immediate:
            if q.charge_now > 0:
                outcome.charged = _charge_lapse(session, ctx, access.user_id)
            if q.refund_now > 0:
                period = current_period(sub, plan, org, now)
                outcome.refunded = post_refund(session, ctx, seats=sub.quantity, period=period,
                                                 key=op.key("refund"), what="отмена, возврат остатка",
                                                 action="cancel")
            cancel_pending(session, sub.id)
            licences.empty(session, [sub.id])
            if provisioning.cancel_order(session, access, sub, now) is None:  # an open order: nothing there yet
                provisioning.tell_vendor(session, sub, ctx.vendor.code, "cancel", now=now, requested_by=access.user_id)
            sub.status, sub.cancelled_at, sub.auto_renew = S.CANCELLED, now, False
            sub.next_billing_at = None
            outcome.effective_at = now
        else:
            sub.cancel_at_term_end = True
            cancel_pending(session, sub.id, ChangeKind.CANCEL)
            change = schedule(session, ctx, ChangeKind.CANCEL)
            outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        session.add(sub)
        event = ("subscription.cancel_at_vendor" if outcome.at_vendor else
                 "subscription.cancelled" if q.immediate else "subscription.cancel_scheduled")
        audit.record(session, access.actor, event,
                     subscription_id=sub.id, refunded=str(outcome.refunded),
                     effective_at=outcome.effective_at.isoformat() if outcome.effective_at else None, operation=op.id)
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
        confirmation.finish(session, op, outcome.stored(), now=now)
    return outcome


def cancel_scheduled_change(session: Session, actor: Actor | None, change_id, *, now: datetime | None = None) -> Outcome:
    """Withdraw a pending scheduled change (a decrease, a downgrade or a cancellation at term end)."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        key = "error.scheduled_change_not_found"
        change = session.get(ScheduledChange, authz.parse_id(change_id, "scheduled change", key=key))
        sub = authz.own(session.get(Subscription, change.subscription_id) if change else None, access,
                        "scheduled change", key=key)
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
