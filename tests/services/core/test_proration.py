"""Proration: term ends on short months, leap days, local days in Tashkent, monthly periods of a
yearly plan, and the pro rata amounts of the edge days."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from noventiq_panel.services.core import clock
from noventiq_panel.services.core import proration

from tests.services.subs_world import tashkent

TZ = "Asia/Tashkent"


def local(dt: datetime):
    return clock.local_date(dt, TZ)


def test_term_bought_on_31_january_ends_on_28_february():
    end = proration.term_end(tashkent(2026, 1, 31, 15), "month", TZ)
    assert end == tashkent(2026, 2, 28, 0)  # exclusive: the term holds 31 Jan .. 27 Feb
    assert local(end).isoformat() == "2026-02-28"


def test_term_bought_on_31_january_of_a_leap_year_ends_on_29_february():
    assert local(proration.term_end(tashkent(2028, 1, 31), "month", TZ)).isoformat() == "2028-02-29"


def test_anchor_day_stops_the_drift_after_a_short_month():
    # The next term after 31 Jan → 28 Feb runs to 31 Mar, not 28 Mar.
    assert local(proration.term_end(tashkent(2026, 2, 28, 0), "month", TZ, anchor_day=31)).isoformat() == "2026-03-31"
    assert local(proration.term_end(tashkent(2026, 3, 31, 0), "month", TZ, anchor_day=31)).isoformat() == "2026-04-30"


def test_yearly_term_from_29_february_ends_on_28_february():
    assert local(proration.term_end(tashkent(2028, 2, 29), "year", TZ)).isoformat() == "2029-02-28"


def test_term_end_uses_the_local_day_not_the_utc_day():
    # 23:30 on 31 Jan in Tashkent is still 31 Jan there although UTC says 18:30 the same day;
    # 00:30 on 1 Feb in Tashkent is 19:30 UTC on 31 Jan: a term bought then starts on 1 Feb.
    assert local(proration.term_end(tashkent(2026, 1, 31, 23, 30), "month", TZ)).isoformat() == "2026-02-28"
    early = tashkent(2026, 2, 1, 0, 30)
    assert early.day == 31  # UTC
    assert local(proration.term_end(early, "month", TZ)).isoformat() == "2026-03-01"


def test_first_day_of_a_period_counts_it_whole_and_the_last_day_counts_one_day():
    start, end = tashkent(2026, 3, 10, 14), tashkent(2026, 4, 10, 0)
    assert proration.days_remaining(start, end, tashkent(2026, 3, 10, 23, 59), TZ) == (31, 31)
    assert proration.days_remaining(start, end, tashkent(2026, 4, 9, 23, 59), TZ) == (1, 31)
    assert proration.days_remaining(start, end, tashkent(2026, 4, 10, 0, 0), TZ) == (0, 31)  # half-open
    assert proration.days_remaining(start, end, tashkent(2026, 1, 1), TZ) == (31, 31)  # before the period


def test_increase_on_29_february_costs_one_day_of_a_29_day_february():
    start, end = tashkent(2028, 2, 1, 0), tashkent(2028, 3, 1, 0)
    period = proration.Period(start, end, 0)
    cost = proration.pro_rata_charge(Decimal("29000"), "month", "upfront", 3, period, tashkent(2028, 2, 29, 18), TZ)
    assert cost == Decimal("3000")  # 3 seats x 29000 x 1/29


def test_increase_on_the_first_day_costs_the_whole_period_and_on_the_last_day_one_day():
    start = tashkent(2026, 1, 31, 10)
    end = proration.term_end(start, "month", TZ)  # 28 Feb: 28 days
    period = proration.Period(start, end, 0)
    assert proration.pro_rata_charge(Decimal("28000"), "month", "upfront", 2, period, start, TZ) == Decimal("56000")
    last = tashkent(2026, 2, 27, 23, 59)
    assert proration.pro_rata_charge(Decimal("28000"), "month", "upfront", 2, period, last, TZ) == Decimal("2000")


def test_yearly_plan_billed_monthly_has_twelve_anchored_periods_covering_the_term():
    start = tashkent(2026, 1, 31, 9)
    end = proration.term_end(start, "year", TZ)
    assert local(end).isoformat() == "2027-01-31"
    seen = []
    at = start
    while at < end:
        p = proration.billing_period(start, end, "year", "monthly", at, TZ)
        seen.append((local(p.start).isoformat(), local(p.end).isoformat(), p.index))
        at = p.end
    assert len(seen) == 12
    assert seen[0] == ("2026-01-31", "2026-02-28", 0)
    assert seen[1] == ("2026-02-28", "2026-03-31", 1)  # anchored to the 31st again
    assert seen[-1] == ("2026-12-31", "2027-01-31", 11)
    assert proration.next_period_start(proration.billing_period(start, end, "year", "monthly", start, TZ), end) \
        == tashkent(2026, 2, 28, 0)
    last = proration.billing_period(start, end, "year", "monthly", tashkent(2027, 1, 15), TZ)
    assert proration.next_period_start(last, end) is None  # the renewal takes over


def test_upfront_plan_has_one_period_the_term():
    start = tashkent(2026, 3, 10)
    end = proration.term_end(start, "year", TZ)
    p = proration.billing_period(start, end, "year", "upfront", tashkent(2026, 9, 1), TZ)
    assert (p.start, p.end, p.index) == (start, end, 0)


def test_period_price_of_a_yearly_plan_billed_monthly_is_a_twelfth():
    assert proration.period_price(Decimal("360000"), "year", "monthly") == Decimal("30000")
    assert proration.period_price(Decimal("360000"), "year", "upfront") == Decimal("360000")
    assert proration.yearly_price(Decimal("30000"), "month") == Decimal("360000")


def test_prorate_refuses_float_and_empty_periods():
    with pytest.raises(TypeError):
        proration.prorate(1.5, 1, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        proration.prorate(Decimal("1"), 0, 0)
    with pytest.raises(ValueError):
        proration.term_months("week")
    assert proration.term_months(None) == 1  # a licence plan stored without a term is monthly


def test_trial_ends_at_local_midnight_after_its_days():
    assert proration.trial_end(tashkent(2026, 3, 10, 23, 50), 30, TZ) == tashkent(2026, 4, 9, 0)
    assert datetime(2026, 4, 8, 19, 0, tzinfo=timezone.utc) == tashkent(2026, 4, 9, 0)
