"""Metered rating: each usage record charged exactly once, one entry per local day (hourly and daily
plans alike), at the day's rate with the markup, rounded once; safe twice, from two threads, and
after a crash mid-batch."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, UsageRecord
from noventiq_panel.services.billing import postpaid
from noventiq_panel.services.core import rates
from noventiq_panel.services.usage import rating
from tests import factories as f
from tests.concurrency import at_once
from tests.services.usage_world import (
    add_usage,
    assert_entries_match_records,
    assert_ledger_matches_usage,
    charge_of,
    expected_charges,
    ledger_usage,
    payg_sub,
    payg_world,
    set_rates,
    tashkent,
    unrated,
)

START = tashkent(2026, 11, 10, 9)  # 10 Nov 2026 09:00 in Tashkent
DAY = tashkent(2026, 11, 10)  # its local day's start


def test_hourly_usage_is_one_entry_per_local_day_with_markup_and_the_days_rate(session):
    org, plans, _ = payg_world(session, markup="12.5")
    sub = payg_sub(session, org, plans["azure-h"], name="Azure prod")
    set_rates(session, date(2026, 11, 9), 3)
    add_usage(session, sub, START, 3, services=4)
    summary = rating.rate_usage(session, now=START + timedelta(hours=4))
    assert summary.records == 12 and summary.entries == 1 and summary.subscriptions == 1
    assert_ledger_matches_usage(session, sub)
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage").order_by(LedgerEntry.id)).all()
    first = entries[0]
    assert first.period_start == DAY and first.period_end == DAY + timedelta(days=1)
    assert first.occurred_at == DAY  # usage counts in the month of its period
    assert first.currency == "UZS" and first.source_currency == "USD" and first.fx_date == date(2026, 11, 10)
    assert first.fx_rate == rates.unit_rate(session, "USD", date(2026, 11, 10))
    records = session.exec(select(UsageRecord).where(UsageRecord.subscription_id == sub.id)).all()
    assert len({r.period_start for r in records}) == 3  # the hours stay in the records
    cost = sum(r.cost for r in records)
    assert first.source_amount == (cost * Decimal("1.125")).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    # the amount is recomputable from the two figures the entry shows
    assert first.amount == -(first.source_amount * first.fx_rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert first.amount == charge_of(cost, Decimal("12.5"), first.fx_rate)
    assert first.idempotency_key == f"usage:{sub.id}:{DAY:%Y%m%dT%H%M}:{max(r.id for r in records)}"
    assert first.meta["records"] == 12 and "records_from" not in first.meta
    assert summary.charged == {"UZS": -sum(e.amount for e in entries)}


def test_daily_plan_is_split_at_midnight_of_the_organisations_time_zone(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-d"])
    set_rates(session, date(2026, 11, 9), 3, step="10")
    # 17:00..22:00 UTC = 22:00..03:00 in Tashkent: two local days, two rates
    add_usage(session, sub, tashkent(2026, 11, 10, 22), 5, services=2)
    rating.rate_usage(session, now=tashkent(2026, 11, 11, 4))
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage").order_by(LedgerEntry.period_start)).all()
    assert [(e.period_start, e.period_end) for e in entries] == [
        (tashkent(2026, 11, 10), tashkent(2026, 11, 11)), (tashkent(2026, 11, 11), tashkent(2026, 11, 12))]
    assert [e.fx_date for e in entries] == [date(2026, 11, 10), date(2026, 11, 11)]
    assert [e.meta["records"] for e in entries] == [4, 6]
    assert_ledger_matches_usage(session, sub)


def test_a_second_run_charges_nothing(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 3)
    add_usage(session, sub, START, 5)
    rating.rate_usage(session, now=START + timedelta(hours=6))
    before = session.exec(select(LedgerEntry)).all()
    again = rating.rate_usage(session, now=START + timedelta(hours=7))
    assert again.records == 0 and again.entries == 0
    assert len(session.exec(select(LedgerEntry)).all()) == len(before)
    assert_ledger_matches_usage(session, sub)


def test_late_records_of_a_rated_hour_get_their_own_entry(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 3)
    add_usage(session, sub, START, 2)
    rating.rate_usage(session, now=START + timedelta(hours=3))
    first_total = ledger_usage(session, sub.id)[DAY]
    late = add_usage(session, sub, START, 1, services=1, cost="2.5")
    summary = rating.rate_usage(session, now=START + timedelta(hours=5))
    assert summary.records == 1 and summary.entries == 1
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.period_start == DAY)).all()
    assert len(entries) == 2 and len({e.idempotency_key for e in entries}) == 2
    late_row = session.get(UsageRecord, late[0])
    rate = rates.unit_rate(session, "USD", date(2026, 11, 10))
    assert ledger_usage(session, sub.id)[DAY] == first_total + charge_of(late_row.cost, Decimal(10), rate)
    assert unrated(session) == 0
    assert_entries_match_records(session)


def test_a_day_keeps_the_rate_it_was_first_charged_at(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 1)  # 10 Nov has no rate of its own yet: 9 Nov's is used
    add_usage(session, sub, START, 2)
    rating.rate_usage(session, now=START + timedelta(hours=3))
    first_rate = rates.unit_rate(session, "USD", date(2026, 11, 9))
    rates.store_rate(session, "USD", date(2026, 11, 10), Decimal("13000.00"), source="manual")  # published late
    session.commit()
    add_usage(session, sub, START + timedelta(hours=2), 2)  # the rest of 10 Nov
    rating.rate_usage(session, now=START + timedelta(hours=5))
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all()
    assert len(entries) == 2 and {e.fx_rate for e in entries} == {first_rate}  # two runs of one day
    assert rates.usage_rate(session, "USD", "UZS", date(2026, 11, 10)) == first_rate
    # each run's increment of the day is rounded once: every entry is its own records' charge
    assert unrated(session, sub.id) == 0
    assert_entries_match_records(session, subs=[sub.id])


def test_records_of_a_day_without_any_rate_hold_back_the_later_ones(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 3)
    add_usage(session, sub, START, 2)  # 10 Nov: has a rate
    add_usage(session, sub, tashkent(2026, 11, 5, 10), 1)  # 5 Nov, late: no rate on or before it
    add_usage(session, sub, START + timedelta(hours=2), 1)  # 10 Nov again, after the late ones
    summary = rating.rate_usage(session, now=START + timedelta(hours=4))
    assert summary.records == 6 and sub.id in summary.missing_rates
    assert unrated(session, sub.id) == 6  # the 5 Nov records and everything imported after them wait
    assert_entries_match_records(session)
    set_rates(session, date(2026, 11, 4), 1)
    assert rating.rate_usage(session, now=START + timedelta(hours=5)).records == 6
    assert unrated(session) == 0
    assert_entries_match_records(session)
    # 10 Nov was rated in two runs (its first records, then the rest): two roundings of that day.
    # Each entry is rounded once — the marked-up cost to a micro-dollar, then the сум to a tiyin —
    # and the recomputation of each day once more, so the totals differ by at most that per rounding.
    # (The costs depend on the tests run before: the bound must hold for any; a run met 0.02.)
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all()
    assert len(entries) == 3
    per_rounding = Decimal("0.005") + max(e.fx_rate for e in entries) * Decimal("0.0000005")
    difference = abs(sum(ledger_usage(session, sub.id).values()) - sum(expected_charges(session, sub).values()))
    assert difference <= per_rounding * (len(entries) + 2)


def _world_with_subs(session, n: int, hours: int = 6):
    org, plans, _ = payg_world(session)
    set_rates(session, date(2026, 11, 9), 3)
    subs = []
    for i in range(n):
        sub = payg_sub(session, org, plans["azure-h" if i % 2 == 0 else "azure-d"])
        add_usage(session, sub, START + timedelta(minutes=0), hours)
        subs.append(sub)
    return org, subs


def test_two_threads_at_once_charge_each_record_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        _org, subs = _world_with_subs(s, 6)

    def rate():
        with Session(engine, expire_on_commit=False) as s:
            return rating.rate_usage(s, now=START + timedelta(days=1), batch_subscriptions=2)

    results = at_once(rate, rate)  # raises what either raised
    assert sum(r.records for r in results) == 6 * 6 * 3  # together they rated every record once
    with Session(engine) as s:
        assert_ledger_matches_usage(s, *subs)


def test_crash_mid_run_leaves_no_half_batch_and_the_rerun_completes(session, monkeypatch):
    _org, subs = _world_with_subs(session, 3)
    real = rating._Batch.move_watermarks
    calls = {"n": 0}

    def crash_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            real(*args, **kwargs)  # the entries of batch 2 are inserted and its watermark moved ...
            raise RuntimeError("killed")  # ... then the process dies before the commit
        return real(*args, **kwargs)

    monkeypatch.setattr(rating._Batch, "move_watermarks", crash_on_second_batch)
    with pytest.raises(RuntimeError):
        rating.rate_usage(session, now=START + timedelta(days=1), batch_subscriptions=1)
    session.expire_all()
    assert unrated(session, subs[0].id) == 0
    for sub in subs[1:]:  # batch 2 rolled back entirely; batch 3 never started
        assert unrated(session, sub.id) == 18 and ledger_usage(session, sub.id) == {}
    monkeypatch.setattr(rating._Batch, "move_watermarks", real)
    summary = rating.rate_usage(session, now=START + timedelta(days=1), batch_subscriptions=1)
    assert summary.records == 36
    assert_ledger_matches_usage(session, *subs)


def test_suspended_subscription_is_not_charged_for_usage_after_the_suspension(session):
    org, plans, _ = payg_world(session)
    set_rates(session, date(2026, 11, 9), 3)
    sub = payg_sub(session, org, plans["azure-h"], status="suspended", suspended_at=START + timedelta(hours=2))
    add_usage(session, sub, START, 4)
    summary = rating.rate_usage(session, now=START + timedelta(hours=5))
    assert summary.records == 12 and summary.not_billed_records == 6
    assert unrated(session) == 0
    # one day, cut at the suspension: the hours before it charged, those from it on not billed
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage").order_by(LedgerEntry.id)).all()
    assert [e.amount < 0 for e in entries] == [True, False]
    assert [e.meta.get("not_billed") for e in entries] == [None, "suspended"]
    assert [e.meta["records"] for e in entries] == [6, 6] and entries[1].amount == 0
    assert {(e.period_start, e.period_end) for e in entries} == {(DAY, DAY + timedelta(days=1))}
    assert entries[0].meta["records_until"] == entries[1].meta["records_from"] == (START + timedelta(hours=2)).isoformat()
    assert_entries_match_records(session, subs=[sub.id])  # each part holds exactly the records of its hours
    # resuming later charges nothing for the suspension's usage
    sub.status, sub.suspended_at = "active", None
    session.add(sub)
    session.commit()
    assert rating.rate_usage(session, now=START + timedelta(hours=6)).records == 0
    billed = [r for r in session.exec(select(UsageRecord)).all() if r.period_start < START + timedelta(hours=2)]
    rate = rates.usage_rate(session, "USD", "UZS", date(2026, 11, 10))
    assert sum(e.amount for e in entries) == charge_of(sum(r.cost for r in billed), Decimal(10), rate)


def test_usage_without_any_rate_waits_for_the_rate(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    add_usage(session, sub, START, 2)
    summary = rating.rate_usage(session, now=START + timedelta(hours=3))
    assert summary.records == 0 and sub.id in summary.missing_rates
    assert unrated(session) == 6 and session.exec(select(LedgerEntry)).all() == []
    set_rates(session, date(2026, 11, 8), 1)  # an earlier day's rate is used when the day has none
    assert rating.rate_usage(session, now=START + timedelta(hours=4)).records == 6
    assert_ledger_matches_usage(session, sub)
    assert {e.fx_date for e in session.exec(select(LedgerEntry)).all()} == {date(2026, 11, 10)}


def test_billing_currency_other_than_uzs_uses_the_cross_rate(session):
    org, plans, _ = payg_world(session, currency="EUR")
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 3)
    set_rates(session, date(2026, 11, 9), 3, base="13000.00", currency="EUR")
    add_usage(session, sub, START, 2)
    rating.rate_usage(session, now=START + timedelta(hours=3))
    assert_ledger_matches_usage(session, sub)
    entry = session.exec(select(LedgerEntry)).first()
    assert entry.currency == "EUR"
    assert entry.fx_rate == (rates.unit_rate(session, "USD", date(2026, 11, 10)) /
                             rates.unit_rate(session, "EUR", date(2026, 11, 10))).quantize(Decimal("0.000001"),
                                                                                          rounding=ROUND_HALF_UP)


def test_month_boundary_in_tashkent_puts_usage_in_its_local_month(session):
    org, plans, _ = payg_world(session)
    set_rates(session, date(2026, 10, 30), 4)
    daily = payg_sub(session, org, plans["azure-d"])
    hourly = payg_sub(session, org, plans["azure-h"])
    # 31 Oct 22:00 .. 1 Nov 02:00 Tashkent (17:00..21:00 UTC, still 31 Oct in UTC)
    for sub in (daily, hourly):
        add_usage(session, sub, tashkent(2026, 10, 31, 22), 4)
    rating.rate_usage(session, now=tashkent(2026, 11, 1, 3))
    assert_ledger_matches_usage(session, daily, hourly)
    october = postpaid.month_charges(session, org, date(2026, 10, 1))
    november = postpaid.month_charges(session, org, date(2026, 11, 1))
    exp = {**{("d", k): v for k, v in expected_charges(session, daily).items()},
           **{("h", k): v for k, v in expected_charges(session, hourly).items()}}
    assert october == -sum(v for (_, k), v in exp.items() if k < tashkent(2026, 11, 1))
    assert november == -sum(v for (_, k), v in exp.items() if k >= tashkent(2026, 11, 1))
    assert october > 0 and november > 0


def test_licence_and_foreign_records_are_left_alone(session):
    org, plans, _ = payg_world(session)
    set_rates(session, date(2026, 11, 9), 3)
    lic = payg_sub(session, org, plans["basic-m"])
    add_usage(session, lic, START, 1)
    assert rating.rate_usage(session, now=START + timedelta(hours=2)).records == 0
    assert unrated(session) == 3


@pytest.mark.parametrize("seed", range(5))
def test_integer_pricing_equals_decimal_half_up(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        cost = rng.randint(-10**10, 10**13)  # micro units, credits included
        markup = rng.choice([0, 5_000_000, 12_500_000, rng.randint(0, 200_000_000)])
        rate = rng.randint(1, 20_000 * 10**6)
        want = charge_of(Decimal(cost).scaleb(-6), Decimal(markup).scaleb(-6), Decimal(rate).scaleb(-6))
        assert Decimal(-rating.amount_minor(rating.source_micro(cost, markup), rate)).scaleb(-2) == want


@pytest.mark.parametrize("small", [True, False], ids=["integer-sql", "exact"])
def test_sql_pricing_is_the_python_rule_on_this_backend(engine, small):
    """The SQL the batch runs (numeric on PostgreSQL; on SQLite integer SQL for small figures, the
    Python rule as a function for large ones) gives the Python rule's figures."""
    rng = random.Random(7)
    cases = [(10**13, 200_000_000, 20_000 * 10**6, 1), (-10**10, 12_500_000, 12_171_030_000, 1), (5000, 0, 10**6, 1),
             (-5000, 0, 10**6, 1), (123_456_789, 15_000_000, 1_000_000, 100)]
    cases += [(rng.randint(-10**10, 10**13), rng.randint(0, 200_000_000), rng.randint(1, 20_000 * 10**6),
               rng.choice([1, 100])) for _ in range(200)]
    if small:  # what small_figures lets through to integer SQL
        cases = [(cost % 10**8 - 5 * 10**7, markup, rate, step) for cost, markup, rate, step in cases]
        cases += [(-5000, 0, 10**6, 1), (5000, 0, 10**6, 1), (-15_000, 0, 10**6, 100), (25_000_000, 0, 2 * 10**6, 100)]
    with Session(engine) as s:
        conn = s.connection()
        batch = rating._Batch.__new__(rating._Batch)
        batch.dialect = rating._Dialect(engine.dialect.name)
        batch.raw = conn.connection.dbapi_connection
        batch.cur = batch.raw.cursor()
        if not batch.dialect.pg:
            batch.raw.create_function("rating_source", 2, rating.source_micro, deterministic=True)
            batch.raw.create_function("rating_amount", 3, rating.amount_minor, deterministic=True)
        d = batch.dialect
        values = ("SELECT CAST(? AS bigint) AS cost, CAST(? AS bigint) AS markup, CAST(? AS bigint) AS rate, "
                  "CAST(? AS bigint) AS step")
        for cost, markup, rate, step in cases:
            source, amount = batch.q(
                f"SELECT y.source, {d.amount('y.source', 'y.rate', 'y.step', small)} FROM "
                f"(SELECT v.*, {d.source('v.cost', 'v.markup', small)} AS source FROM ({values}) v) y",
                (cost, markup, rate, step)).fetchone()
            assert source == rating.source_micro(cost, markup)
            assert amount == rating.amount_minor(source, rate, step)


def test_half_cent_rounds_up(session):
    org, plans, _ = payg_world(session, markup="0")
    sub = payg_sub(session, org, plans["azure-h"])
    rates.store_rate(session, "USD", date(2026, 11, 10), Decimal(1), source="manual")
    session.commit()
    session.add(UsageRecord(org_id=org.id, subscription_id=sub.id, period_start=START,
                            period_end=START + timedelta(hours=1), cost=Decimal("0.005"), currency="USD",
                            source_key="half"))
    session.commit()
    rating.rate_usage(session, now=START + timedelta(hours=2))
    assert session.exec(select(LedgerEntry)).one().amount == Decimal("-0.01")


def test_topup_balance_goes_down_by_the_usage(session):
    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 3)
    f.topup(session, org, "10000000")
    add_usage(session, sub, START, 3)
    rating.rate_usage(session, now=START + timedelta(hours=4))
    from noventiq_panel.services.core import ledger

    assert ledger.balance(session, org.id) == Decimal("10000000.00") + sum(expected_charges(session, sub).values())


def test_late_usage_of_a_month_already_documented_goes_into_the_next_document(session):
    from noventiq_panel.services.billing import documents

    org, plans, _ = payg_world(session)
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 10, 29), 5)
    add_usage(session, sub, tashkent(2026, 10, 31, 20), 2)
    rating.rate_usage(session, now=tashkent(2026, 11, 1, 1))
    [october] = documents.generate_month(session, "2026-10", now=tashkent(2026, 11, 1, 2))
    add_usage(session, sub, tashkent(2026, 10, 31, 22), 1, services=1)  # the vendor's late record
    rated_at = tashkent(2026, 11, 2, 10)
    rating.rate_usage(session, now=rated_at)
    late = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")
                        .order_by(LedgerEntry.id.desc())).first()
    assert late.period_start == tashkent(2026, 10, 31)  # the usage's own day ...
    assert late.occurred_at == rated_at  # ... charged in the open month
    [november] = documents.generate_month(session, "2026-11", now=tashkent(2026, 12, 1, 2))
    assert november.total == -late.amount
    usage = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all()
    assert october.total + november.total == -sum(e.amount for e in usage)  # every charge in one act
    assert_entries_match_records(session)


def test_the_analytics_roll_up_is_rebuilt_only_where_the_rate_charged_differs(session):
    from noventiq_panel.models import UsageDaily
    from noventiq_panel.services.usage import rollup

    org, plans, _ = payg_world(session, markup="12.5")  # marked-up costs need rounding to 6 decimals
    sub = payg_sub(session, org, plans["azure-h"])
    set_rates(session, date(2026, 11, 9), 2)  # 10 Nov has its own rate
    add_usage(session, sub, START, 6, services=5)
    rollup.refresh_daily_rollup(session, [sub.id], [date(2026, 11, 10)])  # as the importer does
    session.commit()
    assert rating.rate_usage(session, now=START + timedelta(hours=7)).rollup_rows == 0  # same rate: kept

    tomorrow = START + timedelta(days=1)
    add_usage(session, sub, tomorrow, 2)
    rollup.refresh_daily_rollup(session, [sub.id], [date(2026, 11, 11)])  # at 11 Nov's rate as known then
    rates.store_rate(session, "USD", date(2026, 11, 11), Decimal("13000.00"), source="manual")  # corrected
    session.commit()
    # rating fixes the corrected rate for 11 Nov: that day's roll-up is rebuilt at it, 10 Nov's is kept
    assert rating.rate_usage(session, now=tomorrow + timedelta(hours=3)).rollup_rows > 0
    for day in (date(2026, 11, 10), date(2026, 11, 11)):
        fixed = rates.usage_rate(session, "USD", "UZS", day)
        for row in session.exec(select(UsageDaily).where(UsageDaily.day == day)).all():
            assert abs(row.cost_org - row.cost * fixed) <= Decimal("0.000001") * (fixed + 1)
    assert rates.usage_rate(session, "USD", "UZS", date(2026, 11, 11)) == Decimal("13000.00")
