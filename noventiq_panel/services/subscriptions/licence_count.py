"""Changing a subscription's licence count.

- **Increase** mid-term: the added seats cost ``period price x seats x remaining days / days of
  the current billing period`` (the term, or the current month of a yearly plan billed monthly;
  :func:`proration.pro_rata_charge`) and come as a new licence batch with its own cancellation
  window.
- **Decrease**: seats still inside the cancellation window of the batch they came with
  (``plan.cancellation_window_hours``, 168 h, counted from purchase, renewal or increase) go at once
  with the same pro rata refund, newest first; the rest is a scheduled change applied at the next
  renewal. A new quantity change replaces a pending scheduled one.
- A trial's seats change for free, within the trial's maximum.
- A vendor without a connector (``provisioning``): a decrease inside the window changes nothing
  until the vendor confirms it; the seats and the refund follow then.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.core import audit, authz, clock, ledger, proration
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.core.money import parse_quantity
from noventiq_panel.services.subscriptions import confirmation, licences, provisioning
from noventiq_panel.services.subscriptions.context import (
    require_instalment_paid,
    capped_refund, post_refund,
    S, Ctx, atomic, cancel_pending, current_period, load, mail_actor, post_pro_rata,
    pro_rata, require_licence, require_status, require_term_running, schedule, seat_price, shortfall,
    to_org_currency, utc_now,
)
from noventiq_panel.services.subscriptions.quotes import Outcome, QuantityQuote


def _quantity_plan(session: Session, ctx: Ctx, quantity) -> tuple[QuantityQuote, proration.Period | None]:
    """The quote of the change and the billing period it is priced over (None for a trial)."""
    require_licence(ctx)
    require_status(ctx, S.ACTIVE, S.TRIAL)
    require_term_running(ctx)
    require_instalment_paid(ctx)
    provisioning.require_nothing_waiting(session, ctx.sub.id)
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
        return q, None
    period = current_period(sub, plan, org, now)
    q.period_start, q.period_end = period.start, period.end
    q.remaining_days, q.total_days = proration.days_remaining(period.start, period.end, now, org.timezone)
    q.recurring_price = to_org_currency(session, seat_price(plan) * new, plan, org, ctx.day)[0]
    if new > old:
        q.charge_now = to_org_currency(session, pro_rata(ctx, plan, new - old, period), plan, org, ctx.day)[0]
        q.shortfall = shortfall(q.charge_now, q.available)
        return q, period
    removable = min(old - new, licences.in_window(licences.held(session, sub.id), now))
    q.removed_now = removable
    q.quantity_now = old - removable
    if removable:
        q.refund_now = capped_refund(session, ctx, removable, period)
        q.vendor_confirms = provisioning.refund_waits(ctx.vendor.code)
    if q.quantity_now != new:
        q.scheduled_quantity = new
        q.effective_at = sub.term_end
        q.effective_date = clock.local_date(sub.term_end, org.timezone)
    return q, period


def quote_quantity_change(session: Session, actor: Actor | None, sub_id, quantity, *,
                          now: datetime | None = None) -> QuantityQuote:
    """What changing to ``quantity`` seats would do: charge or refund now, seats now, and what waits
    for the next renewal. Nothing is written."""
    access = authz.can_read(session, actor)
    ctx = load(session, access, sub_id, utc_now(now))
    quote = _quantity_plan(session, ctx, quantity)[0]
    quote.quote_id = confirmation.issue(session, access, "quantity", _params(ctx, quote.new_quantity), quote.amount_due,
                                        ctx.org.billing_currency, now=ctx.now, subscription_id=ctx.sub.id)
    session.commit()
    return quote


def _params(ctx: Ctx, quantity: int) -> dict:
    return {"subscription_id": ctx.sub.id, "quantity": quantity}


def change_quantity(session: Session, actor: Actor | None, sub_id, quantity, *, quote_id: str | None = None,
                    amount=None, now: datetime | None = None, _paid: bool = False) -> Outcome:
    """Change the licence count (Owner/Admin); see the module rules. ``quote_id`` and ``amount`` are
    those of the preview (:func:`quote_quantity_change`): a changed price is refused, a second
    confirmation returns the first result; the money's key is ``op:<operation id>:charge`` or
    ``:refund``. ``_paid``: a paid shortfall invoice completes the increase (``pending_actions``)."""
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        ctx = load(session, access, sub_id, now, lock=True)
        if (done := confirmation.confirmed_before(session, access, "quantity", quote_id, subscription_id=ctx.sub.id)) is not None:
            return Outcome.replayed(done)
        sub, plan, org = ctx.sub, ctx.plan, ctx.org
        q, period = _quantity_plan(session, ctx, quantity)
        op = confirmation.begin(session, access, "quantity", quote_id, amount, params=_params(ctx, q.new_quantity),
                                amount_due=q.amount_due, now=now, check_price=not _paid)
        if op.done is not None:
            return Outcome.replayed(op.done)
        if _paid and ledger.find(session, op.key("charge")) is not None:  # a waiting action done before
            return Outcome(sub.id, "quantity", org.billing_currency, sub.status, sub.quantity, already_done=True)
        old = sub.quantity
        outcome = Outcome(sub.id, "quantity", org.billing_currency)
        cancel_pending(session, sub.id, ChangeKind.QUANTITY)
        if q.new_quantity > old:
            if q.charge_now > 0:
                ledger.require_funds(session, org, q.charge_now)
            sub.quantity = q.new_quantity
            if not q.free:
                added = q.new_quantity - old
                licences.add(session, sub.id, added, now, plan.cancellation_window_hours, "increase")
                outcome.charged = post_pro_rata(session, ctx, seats=added, period=period,
                                                key=op.key("charge"),
                                                what=f"увеличение {old} → {q.new_quantity}", action="increase")
            provisioning.tell_vendor(session, sub, ctx.vendor.code, "quantity", now=now, requested_by=access.user_id, quantity=sub.quantity)
        else:
            if q.free:
                sub.quantity = q.new_quantity
                provisioning.tell_vendor(session, sub, ctx.vendor.code, "quantity", now=now, requested_by=access.user_id, quantity=sub.quantity)
            if q.removed_now and q.vendor_confirms:
                provisioning.ask_take_back(session, ctx, seats=q.removed_now, quantity=q.quantity_now)
                outcome.at_vendor = True
            elif q.removed_now:
                licences.take_back(session, sub.id, q.removed_now, now)
                sub.quantity = q.quantity_now
                outcome.refunded = post_refund(session, ctx, seats=q.removed_now, period=period,
                                                 key=op.key("refund"), what=f"уменьшение {old} → {q.quantity_now}, возврат",
                                                 action="decrease")
                provisioning.tell_vendor(session, sub, ctx.vendor.code, "quantity", now=now, requested_by=access.user_id, quantity=sub.quantity)
            if q.scheduled_quantity is not None:
                change = schedule(session, ctx, ChangeKind.QUANTITY, new_quantity=q.scheduled_quantity)
                outcome.scheduled_change_id, outcome.effective_at = change.id, change.effective_at
        session.add(sub)
        audit.record(session, access.actor,
                     "subscription.decrease_at_vendor" if outcome.at_vendor else "subscription.quantity_changed",
                     subscription_id=sub.id,
                     old_quantity=old, new_quantity=sub.quantity, requested=q.new_quantity,
                     scheduled_quantity=q.scheduled_quantity, charged=str(outcome.charged),
                     refunded=str(outcome.refunded), operation=op.id)
        context = {"product": ctx.product.name, "old_quantity": old, "new_quantity": q.new_quantity,
                   "amount": outcome.charged - outcome.refunded, "currency": org.billing_currency,
                   "subscription_id": sub.id}
        if q.scheduled_quantity is not None:
            context["scheduled_for"] = clock.local_date(sub.term_end, org.timezone)
        if not outcome.at_vendor:  # else the vendor's confirmation is what the customer is told of
            mail_actor(session, access, "licence_changed", context, now=now)
        outcome.status, outcome.quantity = str(sub.status), sub.quantity
        confirmation.finish(session, op, outcome.stored(), now=now)
    return outcome
