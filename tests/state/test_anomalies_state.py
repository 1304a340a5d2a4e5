"""Cost anomalies on the pages: the home page's alert and the subscription's Usage tab with the
same explanation, the alert switch (Owner/Administrator only; a forged value changes nothing), and
nothing of another organisation's anomalies."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.models import AuditEvent, CostAnomaly, Organisation, Subscription
from noventiq_panel.services.core import clock
from noventiq_panel.state.formatting import fmt_money, text_date
from noventiq_panel.state.home import HomeState
from noventiq_panel.state.subscription_detail import SubscriptionDetailState

from tests.state.conftest import is_error_toast, new_state, signed_in
from tests.state.test_subscriptions_state import PW, at, db, world  # noqa: F401 - fixtures

D = Decimal


def anomaly(db, org_id: int, sub_id: int, days_ago: int, direction: str = "spike") -> CostAnomaly:
    tz = db.get(Organisation, org_id).timezone
    day = clock.local_date(clock.utcnow(), tz) - timedelta(days=days_ago)
    row = CostAnomaly(
        org_id=org_id, subscription_id=sub_id, day=day, actual=D("1177969.19"), expected=D("261677.49"),
        low=D("161677.49"), high=D("361677.49"), currency="UZS", direction=direction,
        contributors={"services": [{"name": "Virtual Machines", "actual": "1018753.23", "expected": "103652.71",
                                    "change": "915100.52", "new": False}],
                      "resource_groups": [{"name": "rg-ml-test", "actual": "914546.71", "expected": "0",
                                           "change": "914546.71", "new": True}]})
    db.add(row)
    db.commit()
    return row


async def _detail(db, email, sub_id):  # noqa: F811
    state = at(new_state(SubscriptionDetailState), f"/subscriptions/{sub_id}?tab=usage")
    signed_in(state, db, email, PW)
    await SubscriptionDetailState.load.fn(state)
    return state


async def test_usage_tab_explains_the_anomaly_in_the_mails_words(db, world):  # noqa: F811
    a = anomaly(db, world["a"], world["azure"], 2)
    state = await _detail(db, "finance@a.example", world["azure"])
    assert state.tab == "usage" and len(state.anomalies) == 1
    view = state.anomalies[0]
    money = lambda v: fmt_money(v, "UZS", "ru")  # noqa: E731
    assert view["text"] == (f"{text_date(a.day, 'ru')} расходы подписки {state.d['name']} составили "
                            f"{money(a.actual)} — намного больше ожидаемых {money(a.expected)} "
                            f"(обычный диапазон {money(a.low)} – {money(a.high)}).")
    assert "Virtual Machines" in view["services"] and "rg-ml-test" in view["groups"] and "новая" in view["groups"]
    assert view["color"] == "red" and all(isinstance(v, str) for v in view.values())
    assert state.anomaly_alerts is True


async def test_licence_subscription_has_no_anomalies_and_no_error(db, world):  # noqa: F811
    state = await _detail(db, "owner@a.example", world["mine"])
    assert not state.not_found and state.anomalies == [] and state.anomaly_alerts is False


async def test_owner_turns_alerts_off_and_on_audited(db, world):  # noqa: F811
    state = await _detail(db, "owner@a.example", world["azure"])
    await SubscriptionDetailState.toggle_anomaly_alerts.fn(state, False)
    db.expire_all()
    assert db.get(Subscription, world["azure"]).anomaly_alerts is False and state.anomaly_alerts is False
    db.commit()  # SQLite: end the read transaction before the next handler writes
    await SubscriptionDetailState.toggle_anomaly_alerts.fn(state, True)
    db.expire_all()
    assert db.get(Subscription, world["azure"]).anomaly_alerts is True and state.anomaly_alerts is True
    events = db.exec(select(AuditEvent).where(AuditEvent.action == "subscription.anomaly_alerts")).all()
    db.commit()
    assert [e.details["enabled"] for e in events] == [False, True]


@pytest.mark.parametrize("value", ["false", 0, None, {"x": 1}])
async def test_forged_switch_values_change_nothing(db, world, value):  # noqa: F811
    state = await _detail(db, "owner@a.example", world["azure"])
    assert is_error_toast(await SubscriptionDetailState.toggle_anomaly_alerts.fn(state, value))
    db.expire_all()
    assert db.get(Subscription, world["azure"]).anomaly_alerts is True


async def test_read_only_role_cannot_turn_alerts_off(db, world):  # noqa: F811
    state = await _detail(db, "finance@a.example", world["azure"])
    assert is_error_toast(await SubscriptionDetailState.toggle_anomaly_alerts.fn(state, False))
    db.expire_all()
    assert db.get(Subscription, world["azure"]).anomaly_alerts is True


async def test_home_alerts_recent_anomalies_of_this_organisation_only(db, world):  # noqa: F811
    anomaly(db, world["a"], world["azure"], 1)
    anomaly(db, world["a"], world["azure"], 9, direction="drop")  # older than a week: not an alert
    state = new_state(HomeState)
    signed_in(state, db, "owner@a.example", PW)
    await HomeState.load.fn(state)
    found = [a for a in state.alerts if a["kind"] == "cost_anomaly"]
    assert len(found) == 1
    assert found[0]["href"] == f"/subscriptions/{world['azure']}?tab=usage"
    assert "намного больше ожидаемых" in found[0]["text"] and fmt_money(D("1177969.19"), "UZS", "ru") in found[0]["text"]
    other = new_state(HomeState)
    signed_in(other, db, "owner@b.example", PW)
    await HomeState.load.fn(other)
    assert not [a for a in other.alerts if a["kind"] == "cost_anomaly"]
