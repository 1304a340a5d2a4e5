"""The subscription lifecycle run by the scheduler: renewals, monthly instalments, trial ends, reminders.

Each function is ``f(session, now=None, ...) -> summary dict``; it commits once per chunk of
subscriptions and is safe to run twice, concurrently, or again after a crash half-way:

- every charge carries a key per subscription and period (``renewal:<sub>:<yyyymmdd of the new
  term's first local day>``, ``instalment:<sub>:<yyyymmdd>``, ``trial:<sub>``), and a key already
  in the ledger is never charged again;
- a chunk first locks its organisations, then reads its subscriptions again: a second runner
  waiting for the lock finds them renewed and skips them (:mod:`chunks`);
- mail goes to the outbox in the same transaction, with dedupe keys where a run may repeat it.

Renewal (``renew_due``), for a licence subscription whose ``term_end <= now``:

1. pending scheduled changes that are due apply first (decrease, downgrade, cancellation);
2. ``cancel_at_term_end`` → cancelled; auto-renew off → expired (at the term end);
3. auto-renew on and the balance (plus the credit limit of postpaid organisations) covers the next
   billing period (the whole term when billed upfront, the first instalment of a yearly plan billed
   monthly) → charged; the new term starts where the old one ended; all seats get a new licence
   batch (source ``renewal``) and so a new cancellation window;
4. no funds → ``grace_until = term_end + settings.renewal_grace_days`` (the subscription keeps working,
   a ``renewal_failed_funds`` mail); still unpaid when the grace period ends → suspended (``suspended``
   mail, ``grace_until`` kept as the mark of a suspension for non-payment); another grace period later
   → expired. While suspended for non-payment each run retries: once the balance covers it, a new
   term starts on that day (the suspended days are not charged).

A subscription suspended by the customer is never charged; at its term end it expires only if
auto-renew is off (or is cancelled if so scheduled), otherwise it waits for ``resume``.

10 000 due subscriptions renew in one run in a few seconds: chunks of 500 are read with a handful
of queries and written in bulk, one insert per table (:mod:`chunks`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import Plan, Subscription
from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.core import clock, proration
from noventiq_panel.services.subscriptions import lapse, provisioning
from noventiq_panel.services.subscriptions.chunks import CHUNK, Chunk, Sub, Summary, run_chunks
from noventiq_panel.services.subscriptions.context import MONEY_ROLES, S, anchor_day, clamp, seat_price, utc_now


def _ymd(moment: datetime, tz: str) -> str:
    return f"{clock.local_date(moment, tz):%Y%m%d}"


def _last_day(end: datetime, tz: str) -> date:
    """The last local day of a period ending (exclusively) at ``end`` — "paid through"."""
    return clock.local_date(end, tz) - timedelta(days=1)


def _apply_changes(chunk: Chunk, sub: Sub) -> None:
    """Apply the subscription's due scheduled changes (decrease, downgrade, cancel) in order."""
    for change in chunk.changes.pop(sub.id, []):
        plan, _product, vendor = chunk.plan(sub.plan_id)
        if change.kind == ChangeKind.QUANTITY and change.new_quantity:
            old = sub.quantity
            sub.quantity = clamp(change.new_quantity, plan)
            provisioning.tell_vendor(chunk.session, sub, vendor.code, "quantity", now=chunk.now, quantity=sub.quantity)
            chunk.audit(sub, "subscription.quantity_changed", old_quantity=old, new_quantity=sub.quantity,
                        scheduled=True, change_id=change.id)
        elif change.kind == ChangeKind.PLAN and change.new_plan_id in chunk.plans:
            new_plan = chunk.plan(change.new_plan_id)[0]
            old_code = plan.code
            sub.plan_id = new_plan.id
            sub.quantity = clamp(sub.quantity, new_plan)
            provisioning.tell_vendor(chunk.session, sub, vendor.code, "plan", now=chunk.now, plan_code=new_plan.code)
            chunk.audit(sub, "subscription.plan_changed", from_plan=old_code, to_plan=new_plan.code,
                        direction="downgrade", scheduled=True, change_id=change.id)
        elif change.kind == ChangeKind.CANCEL:
            sub.cancel_at_term_end = True
        change.status = "applied"
        chunk.summary.changes_applied += 1


def _end(chunk: Chunk, sub: Sub, status: str, at: datetime) -> None:
    plan, product, vendor = chunk.plan(sub.plan_id)
    _charge_lapse(chunk, sub, plan, product)
    provisioning.tell_vendor(chunk.session, sub, vendor.code, "cancel", now=chunk.now)
    sub.status = status
    sub.next_billing_at = None
    if status == S.CANCELLED:
        sub.cancelled_at = at
        chunk.summary.cancelled += 1
    else:
        chunk.summary.expired += 1
    for change in chunk.changes.pop(sub.id, []):
        change.status = "cancelled"
    tz = chunk.org(sub).timezone
    chunk.audit(sub, f"subscription.{status}", at=at.isoformat())
    chunk.mail(sub, "expired", {"product": product.name, "expired_on": clock.local_date(at, tz),
                                "subscription_id": sub.id}, dedupe=f"expired:{sub.id}:{_ymd(at, tz)}")


def _new_term(chunk: Chunk, sub: Sub, start: datetime, *, key: str, action: str, fresh: bool) -> bool:
    """Charge the first billing period of a term starting at ``start`` and move the subscription
    into it. ``fresh``: the term run restarts (anchor = start). False when the funds do not cover it."""
    org = chunk.org(sub)
    plan, product, _vendor = chunk.plan(sub.plan_id)
    tz = org.timezone
    anchor = clock.local_date(start, tz).day if fresh else anchor_day(sub, tz)
    end = proration.term_end(start, plan.term, tz, anchor)
    period = proration.billing_period(start, end, plan.term, plan.billing_frequency, start, tz, anchor)
    done, amount = chunk.charge(sub, plan, product, plan_amount=seat_price(plan) * sub.quantity, key=key,
                                what=f"продление с {clock.local_date(start, tz):%d.%m.%Y}, {sub.quantity} шт.",
                                quantity=sub.quantity, period=(period.start, period.end), action=action)
    if not done:
        return False
    sub.term_start, sub.term_end = start, end
    if fresh:
        sub.activated_at = start
    sub.next_billing_at = proration.next_period_start(period, end)
    sub.grace_until = None
    if sub.status != S.ACTIVE:
        provisioning.tell_vendor(chunk.session, sub, chunk.plan(sub.plan_id)[2].code, "resume", now=chunk.now)
        sub.status, sub.suspended_at, sub.suspend_reason = S.ACTIVE, None, ""
    chunk.renewed_ids.append(sub.id)
    chunk.batch(sub, plan, "renewal")
    chunk.audit(sub, "subscription.renewed", term_start=start.isoformat(), term_end=end.isoformat(),
                quantity=sub.quantity, amount=str(amount), plan=plan.code)
    chunk.mail(sub, "renewal_done", {"product": product.name, "quantity": sub.quantity, "amount": amount,
                                     "currency": org.billing_currency, "period_end": _last_day(period.end, tz),
                                     "subscription_id": sub.id}, roles=MONEY_ROLES)
    return True


def _charge_lapse(chunk: Chunk, sub: Sub, plan: Plan, product) -> None:
    """An unpaid subscription ends: the days it was used after the payment fell due are charged,
    whatever the balance (:mod:`lapse`)."""
    tz = chunk.org(sub).timezone
    owed = lapse.owed(sub, plan, tz, chunk.now)
    if owed is None:
        return
    _done, amount = chunk.charge(sub, plan, product, plan_amount=owed.plan_amount, key=owed.key(sub.id, tz),
                                 what=owed.what(tz, sub.quantity),
                                 quantity=sub.quantity, period=(owed.period.start, owed.period.end),
                                 action="lapse", force=True)
    if amount > 0:
        chunk.summary.lapses_charged += 1
        chunk.audit(sub, "subscription.lapse_charged", due=owed.due.isoformat(), days=owed.days, amount=str(amount))


def _unpaid(chunk: Chunk, sub: Sub, *, due_from: datetime, amount: Decimal, what: str) -> None:
    """The period starting ``due_from`` could not be paid: grace, then suspension."""
    org = chunk.org(sub)
    tz = org.timezone
    _plan, product, vendor = chunk.plan(sub.plan_id)
    grace = timedelta(days=get_settings().renewal_grace_days)
    started = sub.grace_until is None
    if started:
        sub.grace_until = due_from + grace
        chunk.summary.grace_started += 1
        chunk.audit(sub, "subscription.payment_failed", what=what, amount=str(amount),
                    grace_until=sub.grace_until.isoformat())
        shortfall = max(Decimal("0.00"), amount - chunk.available[org.id])
        chunk.mail(sub, "renewal_failed_funds",
                   {"product": product.name, "amount": amount, "shortfall": shortfall,
                    "currency": org.billing_currency, "suspend_on": clock.local_date(sub.grace_until, tz),
                    "subscription_id": sub.id},
                   roles=MONEY_ROLES, dedupe=f"{what}_failed:{sub.id}:{_ymd(due_from, tz)}")
    if chunk.now >= sub.grace_until and sub.status == S.ACTIVE:
        provisioning.tell_vendor(chunk.session, sub, vendor.code, "suspend", now=chunk.now)
        sub.status, sub.suspended_at, sub.suspend_reason = S.SUSPENDED, chunk.now, "payment"
        chunk.summary.suspended += 1
        chunk.audit(sub, "subscription.suspended", reason="funds")
        chunk.mail(sub, "suspended", {"product": product.name, "suspended_on": clock.local_date(chunk.now, tz), "reason": "funds",
                                      "subscription_id": sub.id},
                   roles=MONEY_ROLES, dedupe=f"suspended:{sub.id}:{_ymd(due_from, tz)}")
    elif sub.status == S.ACTIVE and not started:
        chunk.summary.waiting += 1


def _past_expiry(sub: Sub, now: datetime) -> bool:
    """Suspended for non-payment for a second grace period: it expires."""
    grace = timedelta(days=get_settings().renewal_grace_days)
    return sub.status == S.SUSPENDED and sub.grace_until is not None and now >= sub.grace_until + grace


# --- renewals --------------------------------------------------------------------------------

def _renewal_due_clause(now: datetime):
    term_over = and_(col(Subscription.term_end).is_not(None), col(Subscription.term_end) <= now,
                     Subscription.is_trial == False)  # noqa: E712
    return or_(
        and_(Subscription.status == S.ACTIVE, term_over),
        and_(Subscription.status == S.SUSPENDED, term_over,
             or_(col(Subscription.grace_until).is_not(None), Subscription.auto_renew == False,  # noqa: E712
                 Subscription.cancel_at_term_end == True)),  # noqa: E712
    )


def _renewal_start(chunk: Chunk, sub: Sub, tz: str) -> datetime:
    """Where the next term starts: where the last one ended; for a subscription suspended for
    non-payment, today moved back by the grace days it was used (``proration.comeback_start``:
    the suspended days are not charged, the grace days are)."""
    if sub.status == S.SUSPENDED:
        return lapse.comeback_term_start(sub, chunk.plan(sub.plan_id)[0], tz, chunk.now)
    return sub.term_end


def _renewal_key(sub: Sub, start: datetime, tz: str) -> str:
    return f"renewal:{sub.id}:{_ymd(start, tz)}"


def _renewal_keys(chunk: Chunk, sub: Sub) -> list[str]:
    tz = chunk.org(sub).timezone
    return [_renewal_key(sub, _renewal_start(chunk, sub, tz), tz)]


def _renew_one(chunk: Chunk, sub: Sub) -> None:
    now = chunk.now
    org = chunk.org(sub)
    tz = org.timezone
    _apply_changes(chunk, sub)
    plan = chunk.plan(sub.plan_id)[0]
    if plan.billing_type != "license":
        chunk.summary.skipped += 1
        return
    if sub.cancel_at_term_end:
        _end(chunk, sub, S.CANCELLED, sub.term_end)
        return
    if not sub.auto_renew:
        _end(chunk, sub, S.EXPIRED, sub.term_end)
        return
    if sub.status == S.SUSPENDED:
        if sub.grace_until is None:  # suspended by the customer: waits for resume, never charged
            chunk.summary.skipped += 1
            return
        if _past_expiry(sub, now):
            _end(chunk, sub, S.EXPIRED, now)
            return
        start = _renewal_start(chunk, sub, tz)
        if _new_term(chunk, sub, start, key=_renewal_key(sub, start, tz), action="renewal", fresh=True):
            chunk.summary.reactivated += 1
        else:
            chunk.summary.waiting += 1
        return
    start = _renewal_start(chunk, sub, tz)
    if _new_term(chunk, sub, start, key=_renewal_key(sub, start, tz), action="renewal", fresh=False):
        chunk.summary.renewed += 1
        return
    amount = chunk.price(plan, org, seat_price(plan) * sub.quantity)[0]
    _unpaid(chunk, sub, due_from=sub.term_end, amount=amount, what="renewal")
    if _past_expiry(sub, now):
        _end(chunk, sub, S.EXPIRED, now)


def renew_due(session: Session, now: datetime | None = None, *, chunk_size: int = CHUNK) -> dict:
    """Renew, expire, cancel or suspend every licence subscription whose term has ended (see the
    module docstring). Returns counts; commits per chunk."""
    now = utc_now(now)
    summary = Summary()
    clause = _renewal_due_clause(now)
    run_chunks(session, clause, now, summary, _renew_one, chunk_size=chunk_size, keys_for=_renewal_keys)
    return summary.as_dict()


# --- monthly instalments of yearly plans -----------------------------------------------------

def _instalment_clause(now: datetime, monthly_plan_ids: list[int]):
    return and_(
        col(Subscription.plan_id).in_(monthly_plan_ids or [-1]),
        Subscription.is_trial == False,  # noqa: E712
        col(Subscription.next_billing_at).is_not(None),
        col(Subscription.next_billing_at) <= now,
        col(Subscription.next_billing_at) < col(Subscription.term_end),
        col(Subscription.term_end) > now,
        or_(Subscription.status == S.ACTIVE,
            and_(Subscription.status == S.SUSPENDED, col(Subscription.grace_until).is_not(None))),
    )


def _instalment_keys(chunk: Chunk, sub: Sub) -> list[str]:
    tz = chunk.org(sub).timezone
    return [f"instalment:{sub.id}:{_ymd(sub.next_billing_at, tz)}", f"resume:{sub.id}:{_ymd(chunk.now, tz)}"]


def _instalment_one(chunk: Chunk, sub: Sub) -> None:
    now = chunk.now
    org = chunk.org(sub)
    tz = org.timezone
    plan, product, vendor = chunk.plan(sub.plan_id)
    if not proration.is_billed_monthly(plan.term, plan.billing_frequency):
        chunk.summary.skipped += 1
        return
    anchor = anchor_day(sub, tz)
    unit = seat_price(plan)
    if sub.status == S.SUSPENDED:  # for non-payment
        if _past_expiry(sub, now):
            _end(chunk, sub, S.EXPIRED, now)
            return
        period = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, now, tz, anchor)
        amount = proration.pro_rata_charge(plan.price, plan.term, plan.billing_frequency, sub.quantity, period,
                                           lapse.comeback_from(sub, plan, tz, now, period), tz)
        done, amount = chunk.charge(sub, plan, product, plan_amount=amount,
                                    key=f"resume:{sub.id}:{_ymd(period.start, tz)}", what="возобновление, остаток месяца",
                                    quantity=sub.quantity, period=(period.start, period.end), action="resume")
        if done:
            provisioning.tell_vendor(chunk.session, sub, vendor.code, "resume", now=chunk.now)
            sub.status, sub.suspended_at, sub.grace_until, sub.suspend_reason = S.ACTIVE, None, None, ""
            sub.next_billing_at = proration.next_period_start(period, sub.term_end)
            chunk.summary.reactivated += 1
            chunk.audit(sub, "subscription.resumed", reason="paid", amount=str(amount))
        else:
            chunk.summary.waiting += 1
        return
    while sub.next_billing_at is not None and sub.next_billing_at <= now and sub.next_billing_at < sub.term_end:
        period = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency,
                                          sub.next_billing_at, tz, anchor)
        done, amount = chunk.charge(sub, plan, product, plan_amount=unit * sub.quantity,
                                    key=f"instalment:{sub.id}:{_ymd(period.start, tz)}",
                                    what=f"ежемесячный платёж с {clock.local_date(period.start, tz):%d.%m.%Y}, {sub.quantity} шт.",
                                    quantity=sub.quantity, period=(period.start, period.end), action="instalment")
        if not done:
            _unpaid(chunk, sub, due_from=period.start, amount=amount, what="instalment")
            if _past_expiry(sub, now):
                _end(chunk, sub, S.EXPIRED, now)
            return
        sub.next_billing_at = proration.next_period_start(period, sub.term_end)
        sub.grace_until = None
        chunk.summary.instalments += 1
        chunk.audit(sub, "subscription.instalment", period_start=period.start.isoformat(), amount=str(amount))


def bill_instalments_due(session: Session, now: datetime | None = None, *, chunk_size: int = CHUNK) -> dict:
    """Charge the monthly instalments of yearly plans billed monthly that fell due (catching up on
    missed months one by one, each keyed ``instalment:<sub>:<yyyymmdd>``). Suspended subscriptions
    are not charged; an unpaid instalment follows the same grace → suspension → expiry path as a
    renewal, and a subscription suspended for non-payment is resumed (rest of the month, pro rata)
    once the balance covers it."""
    now = utc_now(now)
    summary = Summary()
    monthly = list(session.exec(select(Plan.id).where(Plan.term == "year", Plan.billing_frequency == "monthly")).all())
    clause = _instalment_clause(now, monthly)
    run_chunks(session, clause, now, summary, _instalment_one, chunk_size=chunk_size, keys_for=_instalment_keys)
    return summary.as_dict()


# --- trials ----------------------------------------------------------------------------------

def _trial_clause(now: datetime):
    return and_(Subscription.status == S.TRIAL, col(Subscription.trial_ends_at).is_not(None),
                col(Subscription.trial_ends_at) <= now)


def _trial_keys(chunk: Chunk, sub: Sub) -> list[str]:
    return [f"trial:{sub.id}"]


def _trial_expires(chunk: Chunk, sub: Sub) -> None:
    sub.is_trial = False
    _end(chunk, sub, S.EXPIRED, sub.trial_ends_at)
    chunk.summary.expired -= 1
    chunk.summary.trials_expired += 1


def _trial_one(chunk: Chunk, sub: Sub) -> None:
    plan = chunk.plan(sub.plan_id)[0]
    target = None
    if sub.trial_convert and plan.trial_converts_to:
        target = next((p for p, pr, _v in chunk.plans.values()
                       if p.code == plan.trial_converts_to and p.is_active and pr.is_active), None)
    if target is None or target.billing_type != "license":
        _trial_expires(chunk, sub)
        return
    org = chunk.org(sub)
    tz = org.timezone
    start = sub.trial_ends_at
    quantity = clamp(sub.quantity, target)
    end = proration.term_end(start, target.term, tz)
    period = proration.billing_period(start, end, target.term, target.billing_frequency, start, tz)
    target_product = chunk.plan(target.id)[1]
    done, amount = chunk.charge(sub, target, target_product, plan_amount=seat_price(target) * quantity,
                                key=f"trial:{sub.id}",
                                what=f"переход с пробного периода, {quantity} шт.", quantity=quantity,
                                period=(period.start, period.end), action="trial_conversion")
    if not done:
        _trial_expires(chunk, sub)
        return
    sub.plan_id, sub.quantity = target.id, quantity
    provisioning.tell_vendor(chunk.session, sub, chunk.plan(target.id)[2].code, "plan", now=chunk.now, plan_code=target.code)
    sub.status, sub.is_trial, sub.auto_renew = S.ACTIVE, False, True
    sub.term_start, sub.term_end, sub.activated_at = start, end, start
    sub.next_billing_at = proration.next_period_start(period, end)
    chunk.batch(sub, target, "purchase")
    chunk.summary.trials_converted += 1
    chunk.audit(sub, "subscription.trial_converted", plan=target.code, quantity=sub.quantity, amount=str(amount))
    chunk.mail(sub, "renewal_done", {"product": target_product.name, "quantity": sub.quantity, "amount": amount,
                                     "currency": org.billing_currency, "period_end": _last_day(period.end, tz),
                                     "subscription_id": sub.id}, roles=MONEY_ROLES)


def end_trials(session: Session, now: datetime | None = None, *, chunk_size: int = CHUNK) -> dict:
    """Trials whose time is up: converted to ``plan.trial_converts_to`` when the customer chose so
    (``trial_convert``) and the balance covers the first period (key ``trial:<sub>``), else expired."""
    now = utc_now(now)
    summary = Summary()
    clause = _trial_clause(now)
    run_chunks(session, clause, now, summary, _trial_one, chunk_size=chunk_size, keys_for=_trial_keys)
    return summary.as_dict()


# --- reminders -------------------------------------------------------------------------------
