"""Terms, billing periods and pro rata amounts. Pure functions: no database, no clock.

The rule, once:

- **Dates are the organisation's.** A term or billing period is a half-open interval
  ``[start, end)`` of UTC instants whose *end* is a local midnight of the organisation's time zone.
  The first term starts at the moment of purchase; every later term starts where the previous one
  ended (a local midnight).
- **Term length.** A term ends on the same local calendar day ``n`` months later (1 for a monthly
  term, 12 for a yearly one), clamped to the month's end (``clock.add_months``): a term bought on
  31 January ends on 28 February (29 in a leap year). An *anchor day* (the day of the month of the
  original purchase) keeps later terms from drifting: the term after 31 Jan → 28 Feb runs to 31 Mar,
  not 28 Mar.
- **Billing periods.** An upfront plan has one billing period: the term. A yearly plan billed
  monthly has twelve monthly periods inside the term, with the same anchor rule; the price of one
  period is ``price / 12`` per seat.
- **Days, not seconds.** Pro rata counts whole local days. A period of ``total`` days
  (``local_date(end) - local_date(start)``) has ``remaining`` days left on a local date ``today``:
  ``local_date(end) - today``, the current day included. A change on the first day of a period
  therefore costs the whole period; one on the last day costs ``1/total`` of it.
- **Amounts** are ``period price x seats x remaining / total``, not rounded here: the ledger rounds
  once, half-up, to the currency's minor unit.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from noventiq_panel.services.core import clock

MONTHS_PER_TERM = {"month": 1, "year": 12}


def term_months(term: str | None) -> int:
    """Months in a term (``month`` → 1, ``year`` → 12). A licence plan stored without a term is
    monthly, as the catalog import defaults it."""
    if term is None:
        return 1
    try:
        return MONTHS_PER_TERM[str(term)]
    except KeyError:
        raise ValueError(f"not a licence term: {term!r}") from None


def is_billed_monthly(term: str | None, frequency: str | None) -> bool:
    """A yearly term paid in twelve monthly instalments."""
    return term == "year" and frequency == "monthly"


def period_months(term: str | None, frequency: str | None) -> int:
    """Months in one billing period: 1 for a yearly plan billed monthly, else the whole term."""
    return 1 if is_billed_monthly(term, frequency) else term_months(term)


def add_period(day: date, months: int, anchor_day: int | None = None) -> date:
    """``day`` plus ``months``, clamped to the month's end; with ``anchor_day`` the result is the
    anchor day of that month where it exists (31 → 28/29 Feb → 31 Mar)."""
    result = clock.add_months(day, months)
    if anchor_day:
        last = calendar.monthrange(result.year, result.month)[1]
        result = result.replace(day=min(max(anchor_day, day.day), last))
    return result


def term_end(start: datetime, term: str, tz: str, anchor_day: int | None = None) -> datetime:
    """The exclusive end of a term starting at ``start``: the local midnight that begins the same
    calendar day one term later (clamped to the month's end)."""
    start_day = clock.local_date(start, tz)
    return clock.local_midnight(add_period(start_day, term_months(term), anchor_day), tz)


def trial_end(start: datetime, days: int, tz: str) -> datetime:
    """A trial of ``days`` days started at ``start`` ends at the local midnight ``days`` days later."""
    from datetime import timedelta

    return clock.local_midnight(clock.local_date(start, tz) + timedelta(days=days), tz)


@dataclass(frozen=True)
class Period:
    """A billing period ``[start, end)`` and its index inside the term (0 = first)."""

    start: datetime
    end: datetime
    index: int


def billing_period(term_start: datetime, term_end_: datetime, term: str, frequency: str | None, at: datetime,
                   tz: str, anchor_day: int | None = None) -> Period:
    """The billing period of the term ``[term_start, term_end_)`` that contains ``at``.

    Upfront plans: the whole term. Yearly plans billed monthly: the monthly period (the first one
    starts at ``term_start``, the others at local midnights). ``at`` before the term gives the first
    period, ``at`` after it the last.
    """
    if not is_billed_monthly(term, frequency):
        return Period(term_start, term_end_, 0)
    start_day = clock.local_date(term_start, tz)
    anchor = anchor_day or start_day.day
    prev = term_start
    for k in range(1, 13):
        boundary = min(clock.local_midnight(add_period(start_day, k, anchor), tz), term_end_)
        if at < boundary or boundary >= term_end_:
            return Period(prev, boundary, k - 1)
        prev = boundary
    return Period(prev, term_end_, 11)  # pragma: no cover - a year has twelve periods


def next_period_start(period: Period, term_end_: datetime) -> datetime | None:
    """Where the next instalment falls, or None when the period ends the term (renewal takes over)."""
    return None if period.end >= term_end_ else period.end


def days_remaining(start: datetime, end: datetime, at: datetime, tz: str) -> tuple[int, int]:
    """``(remaining, total)`` whole local days of ``[start, end)`` seen on the local day of ``at``.

    The current day counts as remaining; before the period everything remains, after it nothing.
    """
    first, stop = clock.local_date(start, tz), clock.local_date(end, tz)
    total = max((stop - first).days, 1)
    today = clock.local_date(at, tz)
    remaining = (stop - max(today, first)).days
    return max(0, min(remaining, total)), total


def prorate(amount: Decimal, remaining: int, total: int) -> Decimal:
    """``amount x remaining / total``, unrounded (the ledger rounds once)."""
    if isinstance(amount, float):
        raise TypeError("money must be Decimal, not float")
    if total <= 0:
        raise ValueError("a period has at least one day")
    return Decimal(amount) * Decimal(remaining) / Decimal(total)


def period_price(price: Decimal, term: str | None, frequency: str | None) -> Decimal:
    """Price of one seat for one billing period: the term price, or a twelfth of it when a yearly
    plan is billed monthly."""
    price = Decimal(price)
    return price / 12 if is_billed_monthly(term, frequency) else price


def yearly_price(price: Decimal, term: str | None) -> Decimal:
    """Price of one seat per year (monthly terms x 12): compares plans of different terms."""
    return Decimal(price) * (12 // term_months(term))


def pro_rata_charge(price: Decimal, term: str, frequency: str | None, seats: int, period: Period, at: datetime,
                    tz: str) -> Decimal:
    """What ``seats`` cost from the local day of ``at`` to the end of ``period`` (plan currency)."""
    remaining, total = days_remaining(period.start, period.end, at, tz)
    return prorate(period_price(price, term, frequency) * seats, remaining, total)


def window_end(added_at: datetime, window_hours: int) -> datetime:
    """The end of the cancellation window of licences added (bought, renewed or increased) at
    ``added_at``: the plan's ``cancellation_window_hours`` (168 h by default) later."""
    return added_at + timedelta(hours=window_hours)


def lapse_days(due: datetime | None, used_until: datetime | None, tz: str) -> int:
    """The local days a subscription kept running after a payment fell due (``due``) until it
    stopped (``used_until``: suspended, ended, or now): used, so owed. A day begun counts; nothing
    before ``due`` counts."""
    if due is None or used_until is None or used_until <= due:
        return 0
    used = (clock.local_date(used_until, tz) - clock.local_date(due, tz)).days
    if used_until > clock.local_midnight(clock.local_date(used_until, tz), tz):
        used += 1
    return used


def comeback_start(due: datetime | None, suspended_at: datetime | None, now: datetime, tz: str) -> datetime:
    """Where a term, or the charged part of a billing period, starts when a subscription comes back
    after a payment lapse: today's local midnight, moved back by the lapse days it was used
    (:func:`lapse_days` from ``due`` to ``suspended_at``), but never before the due day. A term of
    one period starting there charges exactly one period for the days of service it gives: the
    grace days and the days ahead."""
    today = clock.local_date(now, tz)
    used = lapse_days(due, suspended_at, tz)
    if not used:
        return clock.local_midnight(today, tz)
    start = max(today - timedelta(days=used), clock.local_date(due, tz))
    return clock.local_midnight(start, tz)
