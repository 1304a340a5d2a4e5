"""A payment lapse: the days a licence subscription was used after a payment fell due unpaid.

A renewal or a monthly instalment that the balance does not cover starts a grace period: the seats
keep working (``grace_until``), then are suspended, then the subscription expires
(:mod:`renewals`). The grace days are service given on credit, so they are owed whatever happens
next — the rule, once:

- **Comes back** (paid, or resumed by the customer): the new term, or the charged rest of the
  month, starts moved back by the lapse days (``proration.comeback_start`` from :func:`due`).
- **Ends unpaid** (expires, is cancelled, or its auto-renewal is turned off while in grace):
  :func:`owed` is charged at the end, keyed ``lapse:<sub>:<yyyymmdd of the due day>``, even when
  it overdraws the balance — the debt is shown in the transactions and credit control tells the
  owners (:mod:`credit_control`).

A lapse needs evidence: the grace period started (``grace_until``), or the customer suspended the
seats after the payment fell due. A subscription that simply reached the end of a term it was not
renewing (auto-renew off, a cancellation at term end) owes nothing for the hour the job took.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from noventiq_panel.models import Plan, Subscription
from noventiq_panel.services.core import clock, proration
from noventiq_panel.services.subscriptions.context import S, anchor_day, seat_price


def due(sub: Subscription, plan: Plan, now: datetime) -> datetime | None:
    """The moment the first unpaid billing period began: an instalment that fell due unpaid inside
    the term, else the term's end once passed; None when nothing is due."""
    if plan.billing_type != "license" or sub.is_trial or sub.term_end is None:
        return None
    if (proration.is_billed_monthly(plan.term, plan.billing_frequency) and sub.next_billing_at is not None
            and sub.next_billing_at <= now and sub.next_billing_at < sub.term_end):
        return sub.next_billing_at
    return sub.term_end if sub.term_end <= now else None


def _stopped(sub: Subscription, now: datetime) -> datetime:
    """When the seats stopped being used: their suspension, or ``now`` while they run; never after
    the grace period ended (the hour the job took to suspend them is not charged)."""
    stopped = sub.suspended_at if sub.status == S.SUSPENDED and sub.suspended_at is not None else now
    return min(stopped, sub.grace_until) if sub.grace_until is not None else stopped


@dataclass(frozen=True)
class Lapse:
    due: datetime
    period: proration.Period  # the billing period whose payment lapsed: the entry's period (ledger check)
    days: int  # local days used from ``due`` (a day begun counts)
    plan_amount: Decimal  # what those days cost, plan currency, unrounded

    def what(self, tz: str, seats: int) -> str:
        """The ledger text of its charge (Russian, as every entry; other languages: ``action=lapse``)."""
        return f"использование без оплаты с {clock.local_date(self.due, tz):%d.%m.%Y}, {self.days} дн., {seats} шт."

    def key(self, sub_id: int, tz: str) -> str:
        return f"lapse:{sub_id}:{clock.local_date(self.due, tz):%Y%m%d}"


def owed(sub: Subscription, plan: Plan, tz: str, now: datetime) -> Lapse | None:
    """What the seats used after the unpaid due moment cost, up to their suspension (or ``now``
    while they still run); None when there is no lapse (see the module rules)."""
    start = due(sub, plan, now)
    if start is None:
        return None
    stopped = _stopped(sub, now)
    if sub.grace_until is None and not (sub.status == S.SUSPENDED and stopped > start):
        return None
    days = proration.lapse_days(start, stopped, tz)
    if not days:
        return None
    anchor = anchor_day(sub, tz)
    if start >= sub.term_end:  # the renewal: the first billing period of the term that was not paid
        end = proration.term_end(start, plan.term, tz, anchor)
        period = proration.billing_period(start, end, plan.term, plan.billing_frequency, start, tz, anchor)
    else:
        period = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, start,
                                          tz, anchor)
    total = proration.days_remaining(period.start, period.end, period.start, tz)[1]
    days = min(days, total)
    return Lapse(start, period, days, proration.prorate(seat_price(plan) * sub.quantity, days, total))


def comeback_from(sub: Subscription, plan: Plan, tz: str, now: datetime, period: proration.Period) -> datetime:
    """Where the charged rest of ``period`` starts when a yearly plan billed monthly comes back
    from an unpaid instalment: today, moved back by the lapse days (never before the period)."""
    start = proration.comeback_start(due(sub, plan, now), _stopped(sub, now), now, tz)
    return max(start, period.start)


def comeback_term_start(sub: Subscription, plan: Plan, tz: str, now: datetime) -> datetime:
    """Where a new term starts when a subscription comes back after its term ended unpaid."""
    return proration.comeback_start(due(sub, plan, now) or sub.term_end, _stopped(sub, now), now, tz)
