"""Cost anomalies: the method on made-up series (a spike, a drop, a new resource group, a weekday
pattern that must not alert, a first month without history, tiny costs), properties of the method,
and the daily job: once per anomaly and recipient, five a month, the setting, the organisation's
day boundary, a drop not yet settled, who may read and change what."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from noventiq_panel.models import AuditEvent, Budget, CostAnomaly, Notification, Role, Subscription, UsageDaily
from noventiq_panel.services.core.errors import Forbidden, NotFound
from noventiq_panel.services.usage import anomalies as an

from tests import factories as f
from tests.services.usage_world import payg_sub, payg_world, tashkent

D = Decimal
DAY = date(2026, 11, 18)  # a Wednesday
WEEK = [D(100), D(104), D(98), D(102), D(96), D(30), D(28)]  # Monday..Sunday: quiet weekends


def wobble(i: int) -> Decimal:
    """A deterministic ±4 % day-to-day variation."""
    return D((i * 37) % 9 - 4) / 100


def weekly(day: date, days: int = 60, week=WEEK, noise: bool = True) -> dict[date, Decimal]:
    out = {}
    for i in range(1, days + 1):
        d = day - timedelta(days=i)
        out[d] = (week[d.weekday()] * (1 + (wobble(i) if noise else 0))).quantize(D("0.000001"))
    return out


# -- the method -------------------------------------------------------------------------------

def test_a_spike_is_found_with_its_expected_band():
    series = weekly(DAY)
    series[DAY] = D(300)
    a = an.assess(series, DAY, floor=D(10))
    assert a.direction == "spike" and a.is_anomaly
    assert D(90) <= a.expected <= D(106)  # about a Wednesday
    assert a.low < a.expected < a.high < D(300)
    assert a.history_days == 60


def test_a_drop_is_found():
    series = weekly(DAY)
    series[DAY] = D(5)
    assert an.assess(series, DAY, floor=D(10)).direction == "drop"


def test_a_day_inside_its_weekday_pattern_does_not_alert():
    # every day of three weeks, quiet weekends included, follows the pattern: none alerts, while a
    # weekday-blind method (the median of all days) would call every weekend a drop
    first = DAY - timedelta(days=21)
    series = weekly(DAY + timedelta(days=1), days=81)
    for i in range(21):
        d = first + timedelta(days=i)
        a = an.assess(series, d, floor=D(10))
        assert a is not None and a.direction is None, (d, a)


def test_a_weekday_cost_on_a_weekend_is_a_spike():
    saturday = DAY + timedelta(days=3)
    series = weekly(saturday)
    series[saturday] = D(100)
    assert an.assess(series, saturday, floor=D(10)).direction == "spike"


def test_a_first_month_without_history_gives_no_verdict():
    series = weekly(DAY, days=20)
    series[DAY] = D(1000)
    assert an.assess(series, DAY, floor=D(10)) is None
    # the subscription's first usage day bounds the history even when the series is longer
    assert an.assess(weekly(DAY), DAY, since=DAY - timedelta(days=27)) is None
    assert an.assess(weekly(DAY), DAY, since=DAY - timedelta(days=28)) is not None


def test_tiny_costs_do_not_alert():
    series = weekly(DAY, week=[D("0.5")] * 7)
    series[DAY] = D(5)  # ten times the usual, but only 4.50 more
    assert an.assess(series, DAY, floor=an.abs_floor("USD")).direction is None
    assert an.assess(series, DAY, floor=D(0)).direction == "spike"


def test_a_grown_subscription_is_expected_to_stay_grown():
    # two weeks at twice the cost: the trend raises what is expected, so day 15 is not a spike
    series = weekly(DAY)
    for i in range(1, 15):
        series[DAY - timedelta(days=i)] *= 2
    series[DAY] = D(200)
    a = an.assess(series, DAY, floor=D(10))
    assert a.direction is None and a.trend > D("1.5")


def test_one_earlier_spike_does_not_widen_the_band():
    series = weekly(DAY)
    series[DAY - timedelta(days=7)] = D(5000)
    series[DAY] = D(300)
    assert an.assess(series, DAY, floor=D(10)).direction == "spike"


def test_the_services_and_resource_groups_that_changed_most_are_named():
    groups = {"rg-web": {**weekly(DAY), DAY: D(110)}, "rg-gpu": {DAY: D(400)}}
    top = an.contributors(groups, DAY, "spike")
    assert [(c.name, c.new) for c in top] == [("rg-gpu", True)]  # rg-web moved a little, in the band's noise
    assert top[0].expected == 0 and top[0].change == D(400)
    assert [c.name for c in an.contributors(groups, DAY, "drop")] == []  # none fell


periodic_weeks = st.lists(st.decimals(min_value=0, max_value=10**6, places=2), min_size=7, max_size=7)


@settings(max_examples=60, deadline=None)
@given(week=periodic_weeks, history=st.integers(min_value=28, max_value=90), offset=st.integers(0, 6))
def test_an_exactly_weekly_periodic_series_never_alerts(week, history, offset):
    day = DAY + timedelta(days=offset)
    series = weekly(day, days=history, week=week, noise=False)
    series[day] = week[day.weekday()]
    a = an.assess(series, day, floor=D(0))
    assert a is not None and a.direction is None and a.expected == week[day.weekday()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.decimals(min_value=0, max_value=10**5, places=2), min_size=61, max_size=61),
       factor=st.decimals(min_value=D("0.01"), max_value=1000, places=2))
def test_scaling_a_series_scales_expected_and_band_and_keeps_the_verdict(values, factor):
    series = {DAY - timedelta(days=i): v for i, v in enumerate(values)}
    a = an.assess(series, DAY)
    b = an.assess({d: v * factor for d, v in series.items()}, DAY)
    tolerance = D("0.000002") * (factor + 1)
    for name in ("expected", "low", "high", "spread"):
        assert abs(getattr(b, name) - getattr(a, name) * factor) <= tolerance, name
    assert a.trend == b.trend
    if a.direction != b.direction:  # only a value on the band's edge may tip over by rounding
        assert min(abs(a.actual - a.low), abs(a.actual - a.high)) <= tolerance


# -- the job ----------------------------------------------------------------------------------

def _world(session, tz="Asia/Tashkent"):
    org, plans, owner = payg_world(session, currency="USD", tz=tz)
    sub = payg_sub(session, org, plans["azure-d"], name="Azure prod")
    return org, sub, owner


def put(session, sub, day: date, rows: dict[tuple[str, str], Decimal]) -> None:
    for (service, group), cost in rows.items():
        session.add(UsageDaily(org_id=sub.org_id, subscription_id=sub.id, day=day, service=service,
                               resource_group=group, resource_id=f"/r/{group}/{service}", cost=cost, currency="USD",
                               cost_org=cost, org_currency="USD", records=1))
    session.commit()


def history(session, sub, day: date, days: int = 60) -> None:
    """The usual pattern before ``day``: VMs in rg-web, storage in rg-data."""
    for i in range(1, days + 1):
        d = day - timedelta(days=i)
        cost = WEEK[d.weekday()] * (1 + wobble(i))
        put(session, sub, d, {("Virtual Machines", "rg-web"): (cost * D("0.8")).quantize(D("0.000001")),
                              ("Storage", "rg-data"): (cost * D("0.2")).quantize(D("0.000001"))})


def anomalies(session):
    rows = session.exec(select(CostAnomaly).order_by(CostAnomaly.day)).all()
    session.commit()
    return rows


def mails(session):
    rows = session.exec(select(Notification).where(Notification.kind == "cost_anomaly")
                        .order_by(Notification.id)).all()
    session.commit()
    return rows


def after(day: date):
    """07:20 in Tashkent on the day after ``day``: the job's run."""
    nxt = day + timedelta(days=1)
    return tashkent(nxt.year, nxt.month, nxt.day, 7, 20)


def test_a_spike_alerts_once_to_owners_admins_and_the_budgets_recipients_even_when_run_twice(session):
    org, sub, owner = _world(session)
    admin = f.user(session, org, role=Role.ADMIN, email="admin@romashka.uz", locale="en")
    finance = f.user(session, org, role=Role.FINANCE, email="cfo@romashka.uz", locale="uz")
    f.user(session, org, role=Role.FINANCE, email="accountant@romashka.uz")  # not a recipient
    session.add(Budget(org_id=org.id, subscription_id=sub.id, amount=D("5000"), currency="USD",
                       thresholds=[{"percent": "100", "type": "actual"}], recipient_user_ids=[finance.id, owner.id],
                       extra_emails=["ops@romashka.uz", "ADMIN@romashka.uz"]))
    session.commit()
    history(session, sub, DAY)
    put(session, sub, DAY, {("Virtual Machines", "rg-web"): D(80), ("Storage", "rg-data"): D(20),
                            ("GPU", "rg-gpu"): D(400)})
    first = an.detect(session, now=after(DAY))
    assert (first.anomalies, first.mails) == (1, 4), str(first)
    second = an.detect(session, now=after(DAY) + timedelta(minutes=5))
    assert (second.anomalies, second.mails) == (0, 0)
    [row] = anomalies(session)
    assert (row.day, row.direction, row.actual, row.currency) == (DAY, "spike", D("500.00"), "USD")
    assert row.low < row.expected < row.high < row.actual
    assert [(c["name"], c["new"]) for c in row.contributors["resource_groups"]][:1] == [("rg-gpu", True)]
    assert row.contributors["services"][0]["name"] == "GPU"
    sent = {m.to_email: m for m in mails(session)}
    assert set(sent) == {owner.email, "admin@romashka.uz", "cfo@romashka.uz", "ops@romashka.uz"}
    assert sent["admin@romashka.uz"].locale == "en" and sent["cfo@romashka.uz"].locale == "uz"
    assert "rg-gpu" in sent[owner.email].body_text and "500,00" in sent[owner.email].body_text.replace("\xa0", " ")
    assert "18 November 2026" in sent["admin@romashka.uz"].body_text or "November 18, 2026" in sent[
        "admin@romashka.uz"].body_text
    assert session.get(Subscription, sub.id).status == "active"  # an alert never stops a service


def test_a_new_resource_group_is_named_as_the_cause(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY)
    put(session, sub, DAY, {("Virtual Machines", "rg-web"): D(80), ("Storage", "rg-data"): D(20),
                            ("Virtual Machines", "rg-new"): D(150)})
    an.detect(session, now=after(DAY))
    [row] = anomalies(session)
    [group] = row.contributors["resource_groups"]
    assert (group["name"], group["new"], D(group["expected"]), D(group["change"])) == ("rg-new", True, 0, D(150))
    [service] = row.contributors["services"]
    assert service["name"] == "Virtual Machines" and not service["new"]


def test_a_drop_waits_until_the_day_has_settled(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY)
    put(session, sub, DAY, {("Virtual Machines", "rg-web"): D(4)})
    # the morning after: the day's usage may still be on its way, so no drop yet
    assert an.detect(session, now=after(DAY)).anomalies == 0
    # usage of the next day arrived: the feed has moved past the day, the drop stands
    put(session, sub, DAY + timedelta(days=1), {("Virtual Machines", "rg-web"): D(80)})
    assert an.detect(session, now=after(DAY) + timedelta(hours=1)).anomalies == 1
    [row] = anomalies(session)
    assert (row.day, row.direction) == (DAY, "drop")
    assert row.contributors["resource_groups"][0]["name"] in ("rg-web", "rg-data")


def test_a_drop_to_no_usage_at_all_is_reported_once_two_days_have_passed(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY)  # nothing on DAY nor after: all resources deleted
    assert an.detect(session, now=after(DAY)).anomalies == 0
    assert an.detect(session, now=after(DAY) + timedelta(days=1)).anomalies == 0
    assert an.detect(session, now=after(DAY) + timedelta(days=2)).anomalies == 1  # 48 hours after its end
    assert [(a.day, a.direction, a.actual) for a in anomalies(session)] == [(DAY, "drop", D("0.00"))]


def test_a_first_month_without_history_does_not_alert(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY, days=20)
    put(session, sub, DAY, {("GPU", "rg-gpu"): D(5000)})
    assert an.detect(session, now=after(DAY)).anomalies == 0
    assert anomalies(session) == [] and mails(session) == []


def test_a_usual_weekend_does_not_alert(session):
    org, sub, owner = _world(session)
    saturday = DAY + timedelta(days=3)
    history(session, sub, saturday)
    put(session, sub, saturday, {("Virtual Machines", "rg-web"): D(24), ("Storage", "rg-data"): D(6)})
    put(session, sub, saturday + timedelta(days=1), {("Virtual Machines", "rg-web"): D(22), ("Storage", "rg-data"): D(6)})
    put(session, sub, saturday + timedelta(days=2), {("Virtual Machines", "rg-web"): D(80), ("Storage", "rg-data"): D(20)})
    summary = an.detect(session, now=after(saturday + timedelta(days=2)))
    assert summary.subscriptions == 1 and summary.anomalies == 0


def test_a_vendor_credit_is_not_a_drop_in_consumption(session):
    # a usual Wednesday's consumption, and the vendor's credit of 90 on the same day: the day's net
    # cost is 10, but nothing was consumed less; a credit is not consumption (rollup.is_credit)
    org, sub, owner = _world(session)
    history(session, sub, DAY)
    put(session, sub, DAY, {("Virtual Machines", "rg-web"): D(80), ("Storage", "rg-data"): D(20)})
    session.add(UsageDaily(org_id=sub.org_id, subscription_id=sub.id, day=DAY, service="Virtual Machines",
                           resource_group="", resource_id="", cost=D(-90), currency="USD", cost_org=D(-90),
                           org_currency="USD", records=1, charge_category="Credit"))
    put(session, sub, DAY + timedelta(days=1), {("Virtual Machines", "rg-web"): D(80), ("Storage", "rg-data"): D(20)})
    # (a net 10 against the usual 100 would be a drop: see test_a_drop_waits_until_the_day_has_settled)
    assert an.detect(session, now=after(DAY) + timedelta(hours=1)).anomalies == 0


def test_at_most_five_anomalies_a_month_per_subscription(session):
    org, sub, owner = _world(session)
    first = date(2026, 12, 1)
    history(session, sub, first)
    for i in range(7):  # a spike every day of the month's first week
        put(session, sub, first + timedelta(days=i), {("GPU", "rg-gpu"): D(600)})
    for i in range(7):
        last = an.detect(session, now=after(first + timedelta(days=i)))
    assert [a.day for a in anomalies(session)] == [first + timedelta(days=i) for i in range(5)]
    assert last.capped == 2  # the 6th and 7th
    assert len({m.dedupe_key.rsplit(":", 1)[0] for m in mails(session)}) == 5


def test_with_the_setting_off_nothing_is_detected_and_the_change_is_audited(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY)
    put(session, sub, DAY, {("GPU", "rg-gpu"): D(600)})
    actor = f.actor(owner, org)
    assert an.anomaly_alerts_enabled(session, actor, sub.id) == {"enabled": True, "can_write": True}
    assert an.set_anomaly_alerts(session, actor, str(sub.id), False) is False
    assert an.detect(session, now=after(DAY)).subscriptions == 0
    assert anomalies(session) == [] and mails(session) == []
    events = session.exec(select(AuditEvent).where(AuditEvent.action == "subscription.anomaly_alerts")).all()
    assert [(e.subscription_id, e.details["enabled"], e.user_id) for e in events] == [(sub.id, False, owner.id)]
    session.commit()
    an.set_anomaly_alerts(session, actor, sub.id, True)
    assert an.detect(session, now=after(DAY)).anomalies == 1


def test_the_financial_manager_reads_but_cannot_change_the_setting(session):
    org, sub, owner = _world(session)
    finance = f.user(session, org, role=Role.FINANCE)
    actor = f.actor(finance, org)
    assert an.anomaly_alerts_enabled(session, actor, sub.id) == {"enabled": True, "can_write": False}
    with pytest.raises(Forbidden):
        an.set_anomaly_alerts(session, actor, sub.id, False)
    session.expire_all()
    assert session.get(Subscription, sub.id).anomaly_alerts is True
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "subscription.anomaly_alerts")).all() == []
    assert an.anomalies_for(session, actor) == []


def test_another_organisations_subscription_is_not_found(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY)
    put(session, sub, DAY, {("GPU", "rg-gpu"): D(600)})
    an.detect(session, now=after(DAY))
    other_org, other_sub, other_owner = _world(session)
    them = f.actor(other_owner, other_org)
    for raw in (sub.id, str(sub.id), "x", -1, 10**12):
        with pytest.raises(NotFound):
            an.anomalies_for(session, them, raw)
        with pytest.raises(NotFound):
            an.set_anomaly_alerts(session, them, raw, False)
    assert an.anomalies_for(session, them) == []  # nor in the organisation's list
    session.expire_all()
    assert session.get(Subscription, sub.id).anomaly_alerts is True


def test_the_ui_reads_the_anomalies_as_plain_values(session):
    org, sub, owner = _world(session)
    other = payg_sub(session, org, _plan(session, sub), name="Azure dev")
    history(session, sub, DAY)
    put(session, sub, DAY, {("GPU", "rg-gpu"): D(600), ("Virtual Machines", "rg-web"): D(80)})
    an.detect(session, now=after(DAY))
    actor = f.actor(owner, org)
    [item] = an.anomalies_for(session, actor)
    assert item["subscription_id"] == sub.id and item["subscription_name"] == "Azure prod"
    assert item["product"] == "Microsoft Azure" and item["day"] == DAY and item["direction"] == "spike"
    assert item["actual"] == D("680.00") and item["change"] == item["actual"] - item["expected"]
    assert item["change_pct"] > 100 and item["currency"] == "USD"
    assert item["resource_groups"][0] == {"name": "rg-gpu", "actual": D("600.000000"), "expected": D("0.000000"),
                                          "change": D("600.000000"), "new": True}
    assert item["explanation_key"] == "anomaly.explanation.spike"
    assert item["explanation_params"]["expected"] == item["expected"]
    assert an.anomalies_for(session, actor, sub.id) == [item]
    assert an.anomalies_for(session, actor, other.id) == []


def _plan(session, sub):
    from noventiq_panel.models import Plan

    return session.get(Plan, sub.plan_id)


def test_the_last_complete_day_is_the_organisations_local_day(session):
    org, sub, owner = _world(session, tz="Asia/Tashkent")
    history(session, sub, DAY)
    put(session, sub, DAY, {("GPU", "rg-gpu"): D(600)})
    # 23:30 in Tashkent: the local day is not over yet (in UTC it is 18:30 of the same day)
    assert an.detect(session, now=tashkent(2026, 11, 18, 23, 30)).anomalies == 0
    # 00:30 in Tashkent: the day is complete — though in UTC it is still 19:30 of that day
    assert an.detect(session, now=tashkent(2026, 11, 19, 0, 30)).anomalies == 1
    assert [a.day for a in anomalies(session)] == [DAY]


def test_a_day_not_yet_converted_waits_for_its_rate(session):
    org, sub, owner = _world(session)
    history(session, sub, DAY)
    put(session, sub, DAY, {("GPU", "rg-gpu"): D(600)})
    row = session.exec(select(UsageDaily).where(UsageDaily.day == DAY)).first()
    row.cost_org = None
    session.add(row)
    session.commit()
    assert an.detect(session, now=after(DAY)).anomalies == 0
    row = session.exec(select(UsageDaily).where(UsageDaily.day == DAY)).first()
    row.cost_org = D(600)
    session.add(row)
    session.commit()
    assert an.detect(session, now=after(DAY) + timedelta(days=1)).anomalies == 1
