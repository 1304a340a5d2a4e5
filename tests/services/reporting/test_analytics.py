"""Analytics: the figures equal the ledger to the tiyin (time-zone month edges included), filters,
the previous period, the IaaS detail from the roll-up, and who may read what."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import select

from noventiq_panel.models import Budget, LedgerEntry, Role, UsageDaily, UsageFxRate, UsageRecord
from noventiq_panel.services.reporting.filters import (
    OTHER, Filters, comparison_period, filter_options, parse_filters, period_presets, previous_period)
from noventiq_panel.services.reporting import iaas
from noventiq_panel.services.reporting.iaas import iaas_detail
from noventiq_panel.services.usage.rollup import rebuild_rollup, refresh_daily_rollup
from noventiq_panel.services.reporting.spend import dynamics, structure
from noventiq_panel.services.core import clock, ledger
from noventiq_panel.services.usage import usage_import
from noventiq_panel.services.core.errors import Forbidden, InvalidInput, NotFound

from tests import factories as f
from tests.services.analytics_helpers import DATA, rate, spend, sub, utc, world

SPEND_KINDS = ("charge", "usage", "refund")


def ledger_spend(session, org, start: date, end: date, subscription_ids=None) -> Decimal:
    """The ledger's own sum for the period (the reference the analytics must equal)."""
    a, b = clock.local_midnight(start, org.timezone), clock.local_midnight(end, org.timezone)
    q = select(func.sum(LedgerEntry.amount)).where(
        LedgerEntry.org_id == org.id, LedgerEntry.occurred_at >= a, LedgerEntry.occurred_at < b,
        LedgerEntry.kind.in_(SPEND_KINDS))
    if subscription_ids is not None:
        q = q.where(LedgerEntry.subscription_id.in_(subscription_ids))
    total = session.exec(q).one()
    return -(total or Decimal("0.00"))


def random_ledger(session, w, seed=1, n=150):
    rng = random.Random(seed)
    subs = [w.azure, w.basic, w.std, None]
    for i in range(n):
        at = utc(2024, 12, 1) + timedelta(seconds=rng.randint(0, 120 * 86400))
        kind = rng.choice(["charge", "charge", "usage", "refund", "topup", "adjustment"])
        amount = Decimal(rng.randint(1, 5_000_000)) / 100
        s = rng.choice(subs)
        if kind in ("topup", "adjustment"):
            ledger.post(session, org_id=w.org.id, kind=kind, amount=amount, idempotency_key=f"r{seed}-{i}",
                        occurred_at=at)
        else:
            spend(session, w.org, str(amount), at, kind=kind, subscription=s)
    # The same kinds in the other organisation must never show up.
    for i in range(20):
        spend(session, w.other, "1000.00", utc(2025, 2, 1) + timedelta(days=i), subscription=w.azure_other)
    session.commit()


def test_structure_and_dynamics_equal_the_ledger_to_the_tiyin(session):
    w = world(session)
    random_ledger(session, w)
    for start, end in [(date(2025, 1, 1), date(2025, 2, 1)), (date(2025, 2, 1), date(2025, 3, 1)),
                       (date(2024, 12, 15), date(2025, 3, 20)), (date(2025, 1, 1), date(2026, 1, 1))]:
        flt = Filters(start=start, end=end)
        s = structure(session, w.actor(), flt)
        d = dynamics(session, w.actor(), flt)
        expected = ledger_spend(session, w.org, start, end)
        assert s.total == d.total == expected
        for slices in (s.by_product, s.by_vendor, s.by_subscription, s.by_payment_model):
            assert sum((x.amount for x in slices), Decimal(0)) == expected
        assert sum(d.totals, Decimal(0)) == expected
        assert sum((x.total for x in d.series), Decimal(0)) == expected
        p_start, p_end = previous_period(start, end)
        assert d.previous_total == ledger_spend(session, w.org, p_start, p_end)
        for sid in (w.azure.id, w.basic.id):
            by_sub = {x.key: x.amount for x in s.by_subscription}
            assert by_sub.get(str(sid), Decimal(0)) == ledger_spend(session, w.org, start, end, [sid])


def test_month_edge_in_tashkent_belongs_to_the_local_month(session):
    w = world(session)
    # 31 Jan 19:00 UTC is 1 Feb 00:00 in Tashkent (UTC+5); 18:59:59 is still 31 Jan.
    spend(session, w.org, "100.01", utc(2025, 1, 31, 18, 59, 59), subscription=w.basic)
    spend(session, w.org, "200.02", utc(2025, 1, 31, 19, 0, 0), subscription=w.basic)
    spend(session, w.org, "400.04", utc(2025, 2, 28, 19, 0, 0), subscription=w.basic)  # 1 March local
    jan = structure(session, w.actor(), Filters(start=date(2025, 1, 1), end=date(2025, 2, 1)))
    feb = structure(session, w.actor(), Filters(start=date(2025, 2, 1), end=date(2025, 3, 1)))
    assert (jan.total, feb.total) == (Decimal("100.01"), Decimal("200.02"))
    d = dynamics(session, w.actor(), Filters(start=date(2025, 2, 1), end=date(2025, 3, 1)))
    assert d.granularity == "day"
    assert d.totals[0] == Decimal("200.02") and sum(d.totals[1:]) == 0
    assert d.previous_start == date(2025, 1, 1) and d.previous_totals[30] == Decimal("100.01")
    year = dynamics(session, w.actor(), Filters(start=date(2025, 1, 1), end=date(2026, 1, 1)))
    assert year.granularity == "month"
    assert year.totals[:3] == [Decimal("100.01"), Decimal("200.02"), Decimal("400.04")]


def test_day_buckets_across_a_daylight_saving_change(session):
    w = world(session)
    berlin = f.org(session, "Berlin GmbH", tax_id="300000009", timezone="Europe/Berlin", billing_currency="EUR")
    owner = f.user(session, berlin, Role.OWNER)
    s = sub(session, berlin, w.plans["basic-m"], "Basic")
    # Summer time starts on 30 March 2025 at 02:00 (UTC+1 -> UTC+2); it ends on 26 October.
    spend(session, berlin, "1.00", utc(2025, 3, 29, 22, 30), subscription=s)  # 29 Mar 23:30 CET
    spend(session, berlin, "2.00", utc(2025, 3, 29, 23, 30), subscription=s)  # 30 Mar 00:30 CET
    spend(session, berlin, "4.00", utc(2025, 3, 30, 21, 30), subscription=s)  # 30 Mar 23:30 CEST
    spend(session, berlin, "8.00", utc(2025, 3, 30, 22, 30), subscription=s)  # 31 Mar 00:30 CEST
    spend(session, berlin, "16.00", utc(2025, 10, 25, 22, 30), subscription=s)  # 26 Oct 00:30 CEST
    spend(session, berlin, "32.00", utc(2025, 10, 26, 22, 30), subscription=s)  # 26 Oct 23:30 CET
    spend(session, berlin, "64.00", utc(2025, 10, 26, 23, 30), subscription=s)  # 27 Oct 00:30 CET
    actor = f.actor(owner, berlin)
    d = dynamics(session, actor, Filters(start=date(2025, 3, 29), end=date(2025, 4, 1)))
    assert d.totals == [Decimal("1.00"), Decimal("6.00"), Decimal("8.00")]
    d = dynamics(session, actor, Filters(start=date(2025, 10, 25), end=date(2025, 10, 28)))
    assert d.totals == [Decimal("0"), Decimal("48.00"), Decimal("64.00")]
    # A long period across both changes: the months still add up to the ledger.
    year = dynamics(session, actor, Filters(start=date(2025, 1, 1), end=date(2026, 1, 1)))
    assert year.totals[2] == Decimal("15.00") and year.totals[9] == Decimal("112.00") and year.totals[3] == 0
    assert year.total == ledger_spend(session, berlin, date(2025, 1, 1), date(2026, 1, 1)) == Decimal("127.00")
    assert year.currency == "EUR"


def test_filters_by_product_vendor_subscription_and_payment_model(session):
    w = world(session)
    at = utc(2025, 2, 10, 8)
    spend(session, w.org, "10.00", at, subscription=w.basic)
    spend(session, w.org, "20.00", at, subscription=w.std)
    spend(session, w.org, "40.00", at, kind="usage", subscription=w.azure)
    spend(session, w.org, "5.00", at, kind="refund", subscription=w.std)
    spend(session, w.org, "1.00", at)  # not tied to a subscription
    base = dict(start=date(2025, 2, 1), end=date(2025, 3, 1))
    actor = w.actor()

    def total(**kw):
        return structure(session, actor, Filters(**base, **kw)).total

    assert total() == Decimal("66.00")
    basic_product = w.plans["basic-m"].product_id
    assert total(product_id=basic_product) == Decimal("10.00")
    assert total(subscription_id=w.std.id) == Decimal("15.00")  # refund lowers spend
    assert total(payment_model="payg") == Decimal("40.00")
    assert total(payment_model="payg_day") == Decimal("40.00")
    assert total(payment_model="license") == Decimal("25.00")
    assert total(payment_model="year_upfront") == Decimal("0")
    s = structure(session, actor, Filters(**base))
    assert [(x.label, x.amount) for x in s.by_vendor] == [("Microsoft", Decimal("65.00")), ("", Decimal("1.00"))]
    assert s.by_vendor[1].key == OTHER
    assert s.by_product[0].label == "Microsoft Azure" and s.by_product[0].share == Decimal("60.61")
    assert {x.key for x in s.by_payment_model} == {"payg_day", "month", "other"}
    with pytest.raises(NotFound):  # another organisation's subscription id
        total(subscription_id=w.azure_other.id)
    d = dynamics(session, actor, Filters(**base, product_id=basic_product))
    assert [x.label for x in d.series] == ["Microsoft 365 Business Basic"] and d.total == Decimal("10.00")


def test_previous_period_is_whole_months_or_same_length():
    assert previous_period(date(2025, 3, 1), date(2025, 4, 1)) == (date(2025, 2, 1), date(2025, 3, 1))
    assert previous_period(date(2025, 1, 1), date(2025, 4, 1)) == (date(2024, 10, 1), date(2025, 1, 1))
    assert previous_period(date(2025, 3, 10), date(2025, 3, 20)) == (date(2025, 2, 28), date(2025, 3, 10))


def test_period_presets_around_a_date():
    p = period_presets(date(2025, 5, 17), "Asia/Tashkent")
    assert p["this_month"] == (date(2025, 5, 1), date(2025, 6, 1))
    assert p["last_month"] == (date(2025, 4, 1), date(2025, 5, 1))
    assert p["quarter"] == (date(2025, 4, 1), date(2025, 7, 1))
    assert p["year"] == (date(2025, 1, 1), date(2026, 1, 1))
    assert p["last_12_months"] == (date(2024, 6, 1), date(2025, 6, 1))
    assert p["custom"][1] == date(2025, 5, 18)
    # "today" is the organisation's: 31 Dec 20:00 UTC is already 1 January in Tashkent.
    p = period_presets(None, "Asia/Tashkent", now=utc(2024, 12, 31, 20))
    assert p["this_month"] == (date(2025, 1, 1), date(2025, 2, 1))


def test_filters_survive_the_url_and_bad_values_are_refused():
    flt = Filters(start=date(2025, 3, 5), end=date(2025, 3, 20), preset="custom", product_id=3,
                  subscription_id=7, payment_model="payg", service="Storage")
    q = flt.to_query()
    assert q == {"period": "custom", "from": "2025-03-05", "to": "2025-03-19", "product": "3",
                 "subscription": "7", "model": "payg", "service": "Storage"}
    assert parse_filters(q, today=date(2025, 5, 1)) == flt
    assert parse_filters({"period": "last_month"}, today=date(2025, 5, 1)).start == date(2025, 4, 1)
    assert parse_filters({"period": "nonsense"}, today=date(2025, 5, 1)).preset == "this_month"
    for bad in ({"product": "1 OR 1=1"}, {"period": "custom", "from": "2025-02-30"},
                {"period": "custom", "from": "2025-03-10", "to": "2025-03-01"}, {"model": "free"},
                {"period": "custom", "from": "2015-01-01", "to": "2025-01-01"}):
        with pytest.raises(InvalidInput):
            parse_filters(bad, today=date(2025, 5, 1))


def test_finance_reads_and_other_organisations_see_nothing(session):
    w = world(session)
    spend(session, w.org, "123.45", utc(2025, 2, 3), subscription=w.basic)
    flt = Filters(start=date(2025, 2, 1), end=date(2025, 3, 1))
    assert structure(session, w.actor(w.finance), flt).total == Decimal("123.45")
    # A member of the other organisation naming this one is refused ...
    with pytest.raises(Forbidden):
        structure(session, f.actor(w.stranger, w.org), flt)
    with pytest.raises(Forbidden):
        iaas_detail(session, f.actor(w.stranger, w.org), flt.start, flt.end)
    # ... and in their own organisation sees none of it.
    theirs = structure(session, f.actor(w.stranger, w.other), flt)
    assert theirs.total == 0 and theirs.by_subscription == []
    with pytest.raises(NotFound):
        iaas_detail(session, f.actor(w.stranger, w.other), flt.start, flt.end, w.azure.id)


def _rated(session, w, day: date, fx: str):
    """Charge the records of ``day`` in one ledger entry at rate ``fx``, fixed for the day (what rating does)."""
    a, b = clock.day_bounds(day, w.org.timezone)
    recs = session.exec(select(UsageRecord).where(UsageRecord.subscription_id == w.azure.id,
                                                  UsageRecord.period_start >= a, UsageRecord.period_start < b)).all()
    cost = sum((r.cost for r in recs), Decimal(0))
    ledger.post(session, org_id=w.org.id, kind="usage", amount=-(cost * Decimal(fx)),
                        idempotency_key=f"usage-{day}", occurred_at=a, subscription_id=w.azure.id,
                        fx_rate=Decimal(fx), source_amount=cost, source_currency="USD")
    session.add(UsageFxRate(currency="USD", billing_currency="UZS", day=day, rate=Decimal(fx)))
    refresh_daily_rollup(session, [w.azure.id], [day])
    session.commit()


def test_iaas_detail_by_service_group_resource_with_movers_and_budget(session):
    w = world(session)
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "focus_1_0.csv")  # 10 and 11 Jan
    usage_import.import_file(session, DATA / "azure_ea_legacy.csv")  # 15 and 16 Jan
    _rated(session, w, date(2025, 1, 10), "12500")  # the rate used wins over the day's rate
    session.add(Budget(org_id=w.org.id, subscription_id=w.azure.id, amount=Decimal("150000.00"), currency="UZS"))
    session.commit()
    d = iaas_detail(session, w.actor(w.finance), date(2025, 1, 1), date(2025, 2, 1))
    jan10 = (Decimal("12.345678") + Decimal("0.5")) * 12500
    rest = (Decimal("3.25") - 2 + Decimal("2.4") + Decimal("0.35")) * 12000
    assert d.total == (jan10 + rest).quantize(Decimal("0.01"))
    assert d.daily[9] == jan10.quantize(Decimal("0.01"))
    assert d.subscriptions == [(w.azure.id, "Azure Prod")]  # the other org's subscription is not here
    for series in (d.by_service, d.by_resource_group, d.by_resource):  # each series rounds its own total
        assert abs(sum(s.total for s in series) - d.total) <= Decimal("0.005") * len(series)
    # the legacy export's credit (-2 USD, its own resource group "") is one series of its own
    assert {s.key for s in d.by_resource_group} == {"rg-web", "RG-Data", "RG-WEB", "rg-data", iaas.CREDITS}
    assert d.credits == Decimal("-24000.00")
    for series in (d.by_service, d.by_resource_group, d.by_resource):
        credits = [s for s in series if s.key == iaas.CREDITS]
        assert len(credits) == 1 and credits[0].total == d.credits and series[-1] is credits[0]
    vm = next(s for s in d.by_resource if s.label == "vm-web-1" and s.extra["resource_group"] == "rg-web")
    assert vm.values[9] == (Decimal("12.345678") * 12500).quantize(Decimal("0.01"))
    assert d.cumulative[-1].cumulative == d.total and d.cumulative[-1].budget == Decimal("150000.00")
    assert d.budget == Decimal("150000.00")
    assert d.movers and d.movers[0].previous == 0 and d.movers[0].change == d.movers[0].current
    one = iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1), w.azure.id,
                                service="Storage")
    assert [s.key for s in one.by_service] == ["Storage"]
    # February compared with January: everything stopped (the credit's "change" is positive).
    feb = iaas_detail(session, w.actor(), date(2025, 2, 1), date(2025, 3, 1))
    assert feb.total == 0 and feb.previous_total == d.total
    assert feb.movers and all(m.current == 0 and m.change == -m.previous for m in feb.movers)
    assert [m.change for m in feb.movers if m.key == iaas.CREDITS] == [24000]  # once, as a service


def test_usage_without_a_rate_is_reported_not_guessed(session):
    w = world(session)
    usage_import.import_file(session, DATA / "azure_ea_legacy.csv")  # no USD rate stored at all
    d = iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1))
    assert d.total == 0 and d.unconverted == {"USD": Decimal("2.75")}
    rate(session, date(2025, 1, 1))
    rebuild_rollup(session, w.org.id)
    d = iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1))
    assert d.total == Decimal("33000.00") and d.unconverted == {}


def test_rollup_refresh_twice_writes_the_same_rows(session):
    w = world(session, markup="10")
    rate(session, date(2025, 1, 1))
    usage_import.import_file(session, DATA / "azure_mca.csv")
    rows = lambda: sorted((r.subscription_id, r.day, r.service, r.resource_id, r.cost, r.cost_org)  # noqa: E731
                          for r in session.exec(select(UsageDaily)).all())
    first = rows()
    refresh_daily_rollup(session, [w.azure.id, w.azure_other.id], [date(2025, 1, 10), date(2025, 1, 11)])
    session.commit()
    assert rows() == first
    # markup 10 %: the customer's price
    assert sum(r[4] for r in first if r[0] == w.azure.id) == Decimal("5.325") * Decimal("1.1")


def test_rollup_matches_the_ledger_after_rating(session):
    rating = pytest.importorskip("noventiq_panel.services.usage.rating")
    w = world(session, markup="7.5")
    rate(session, date(2025, 1, 1), "12000")
    rate(session, date(2025, 1, 11), "12100.55")
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    usage_import.import_file(session, DATA / "azure_mca.csv")
    rating.rate_usage(session, now=utc(2025, 2, 1))
    days = [date(2025, 1, 1) + timedelta(days=i) for i in range(31)]
    refresh_daily_rollup(session, [w.azure.id], days)
    session.commit()
    d = iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1))
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == w.azure.id,
                                                     LedgerEntry.kind == "usage")).all()
    charged = -sum((e.amount for e in entries), Decimal(0))
    # Each entry rounds once: the roll-up may differ by at most half a tiyin per entry.
    assert abs(d.total - charged) <= Decimal("0.005") * len(entries) + Decimal("0.005")
    s = structure(session, w.actor(), Filters(start=date(2025, 1, 1), end=date(2025, 2, 1)))
    assert s.total == charged == ledger_spend(session, w.org, date(2025, 1, 1), date(2025, 2, 1))


def test_filter_options_list_only_what_the_organisation_has(session):
    w = world(session)
    rate(session, date(2025, 1, 1))
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    o = filter_options(session, w.actor(w.finance))
    assert [name for _, name in o.subscriptions] == ["Azure Prod", "M365 Basic", "M365 Standard"]
    assert o.payg_subscriptions == [(w.azure.id, "Azure Prod")]
    assert "SQL Database" not in o.services and "Virtual Machines" in o.services
    assert set(o.payment_models) == {"month", "payg_day"}


def test_an_empty_or_reversed_period_is_refused(session):
    w = world(session)
    for start, end in ((date(2025, 2, 1), date(2025, 2, 1)), (date(2025, 2, 2), date(2025, 2, 1))):
        with pytest.raises(InvalidInput):
            structure(session, w.actor(), Filters(start=start, end=end))
        with pytest.raises(InvalidInput):
            iaas_detail(session, w.actor(), start, end)


@pytest.mark.parametrize("start,end,today,expected", [
    # the month runs: its days so far against the same days of the previous month (not all of it)
    (date(2026, 12, 1), date(2027, 1, 1), date(2026, 12, 3), (date(2026, 11, 1), date(2026, 11, 4), True)),
    # the last day of a month longer than the previous one: at most the whole previous month
    (date(2025, 3, 1), date(2025, 4, 1), date(2025, 3, 31), (date(2025, 2, 1), date(2025, 3, 1), False)),
    (date(2025, 3, 1), date(2025, 4, 1), date(2025, 3, 30), (date(2025, 2, 1), date(2025, 3, 1), True)),
    # a period that is over: the whole previous period of the same length
    (date(2026, 11, 1), date(2026, 12, 1), date(2026, 12, 3), (date(2026, 10, 1), date(2026, 11, 1), False)),
    # a running year: January 1 - March 10 against the same days of the year before
    (date(2026, 1, 1), date(2027, 1, 1), date(2026, 3, 10), (date(2025, 1, 1), date(2025, 3, 11), True)),
    # a period in the future has nothing elapsed: the previous period as it is
    (date(2027, 1, 1), date(2027, 2, 1), date(2026, 12, 3), (date(2026, 12, 1), date(2027, 1, 1), False)),
])
def test_a_running_period_is_compared_with_the_same_days_of_the_previous_one(start, end, today, expected):
    assert comparison_period(start, end, today) == expected


def test_month_to_date_compares_like_with_like_in_the_customers_time_zone(session):
    """On the 3rd, "this month" against the whole previous month showed -95 %; it compares with
    November 1-3. 'Today' is the customer's day: 2 Dec 20:30 UTC is already 3 Dec in Tashkent."""
    w = world(session)
    s = w.basic
    for day in (1, 2, 3, 4, 20):  # November: the first three days count, the 4th and 20th do not
        spend(session, w.org, "100.00", utc(2026, 11, day, 8), subscription=s)
    spend(session, w.org, "50.00", utc(2026, 12, 1, 8), subscription=s)
    spend(session, w.org, "70.00", utc(2026, 12, 2, 19, 30), subscription=s)  # 3 Dec 00:30 Tashkent
    session.commit()
    flt = Filters(start=date(2026, 12, 1), end=date(2027, 1, 1), preset="this_month")
    d = dynamics(session, w.actor(), flt, now=utc(2026, 12, 2, 20, 30))
    assert d.partial and (d.previous_start, d.previous_end) == (date(2026, 11, 1), date(2026, 11, 4))
    assert d.total == Decimal("120.00") and d.previous_total == Decimal("300.00")
    assert d.previous_total == ledger_spend(session, w.org, date(2026, 11, 1), date(2026, 11, 4))
    assert d.change_pct == Decimal("-60.00")
    # In UTC it would still be 2 December: two days against two
    w.org.timezone = "UTC"
    session.commit()
    d = dynamics(session, w.actor(), flt, now=utc(2026, 12, 2, 20, 30))
    assert (d.previous_start, d.previous_end) == (date(2026, 11, 1), date(2026, 11, 3))
    # The month once over: the whole of November
    d = dynamics(session, w.actor(), Filters(start=date(2026, 12, 1), end=date(2027, 1, 1)),
                 now=utc(2027, 1, 2))
    assert not d.partial and d.previous_total == Decimal("500.00")
