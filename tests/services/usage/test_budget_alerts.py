"""Budget checks: thresholds crossing two at once, forecast alerts, once per budget month (also
from two threads), the month boundary in Tashkent, recipients; a budget never stops a service."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlmodel import Session, select

from noventiq_panel.models import Budget, BudgetAlert, Notification, Subscription
from noventiq_panel.services.usage import budget_alerts
from noventiq_panel.services.core import ledger

from tests import factories as f
from tests.concurrency import at_once
from tests.services.usage_world import payg_sub, payg_world, tashkent


def _setup(session, thresholds, amount="1000000", extra=("cfo@romashka.uz",), users=True):
    org, plans, owner = payg_world(session)
    sub = payg_sub(session, org, plans["azure-d"], name="Azure prod")
    budget = Budget(org_id=org.id, subscription_id=sub.id, amount=Decimal(amount), currency="UZS",
                    thresholds=[{"percent": p, "type": t} for p, t in thresholds],
                    recipient_user_ids=[owner.id] if users else [], extra_emails=list(extra))
    session.add(budget)
    session.commit()
    return org, sub, budget, owner


def spend(session, org, sub, amount: str, at, key: str):
    ledger.post(session, org_id=org.id, kind="usage", amount=-Decimal(amount), idempotency_key=key,
                subscription_id=sub.id, occurred_at=at, period_start=at, period_end=at + timedelta(hours=1))
    session.commit()


def alerts(session):
    rows = session.exec(select(BudgetAlert).order_by(BudgetAlert.id)).all()
    session.commit()
    return [(a.month, a.percent, a.kind) for a in rows]


def mails(session):
    rows = session.exec(select(Notification).where(Notification.kind == "budget_threshold")
                        .order_by(Notification.id)).all()
    session.commit()
    return rows


def test_two_thresholds_crossed_at_once_alert_once_each(session):
    org, sub, budget, owner = _setup(session, [("50", "actual"), ("80", "actual"), ("100", "actual")])
    spend(session, org, sub, "850000", tashkent(2026, 11, 20, 10), "u1")
    now = tashkent(2026, 11, 20, 12)
    summary = budget_alerts.check_budgets(session, now=now)
    assert (summary.alerts, summary.mails) == (2, 4)
    assert alerts(session) == [(date(2026, 11, 1), "50", "actual"), (date(2026, 11, 1), "80", "actual")]
    sent = mails(session)
    assert sorted(m.to_email for m in sent) == sorted([owner.email, owner.email, "cfo@romashka.uz", "cfo@romashka.uz"])
    assert all("Azure" in m.body_text for m in sent)
    # a later run in the same month sends nothing again ...
    assert budget_alerts.check_budgets(session, now=now + timedelta(hours=1)).alerts == 0
    assert len(mails(session)) == 4
    # ... until the next threshold is reached
    spend(session, org, sub, "200000", tashkent(2026, 11, 21, 10), "u2")
    assert budget_alerts.check_budgets(session, now=tashkent(2026, 11, 21, 12)).alerts == 1
    assert alerts(session)[-1] == (date(2026, 11, 1), "100", "actual")
    assert session.get(Subscription, sub.id).status == "active"  # a budget never stops a service


def test_forecast_threshold_alerts_before_the_actual_spend_gets_there(session):
    org, sub, budget, _ = _setup(session, [("50", "actual"), ("100", "forecast")])
    # 400 000 in the first 9 days of a 30-day month: about 1 333 333 by its end
    spend(session, org, sub, "400000", tashkent(2026, 11, 5), "u1")
    budget_alerts.check_budgets(session, now=tashkent(2026, 11, 10))
    assert alerts(session) == [(date(2026, 11, 1), "100", "forecast")]
    [m, _] = mails(session)
    assert "1 333 333,33" in m.body_text.replace("\xa0", " ") or "1,333,333.33" in m.body_text


def test_forecast_does_not_project_the_first_hours_of_a_month(session):
    org, sub, budget, _ = _setup(session, [("100", "forecast")])
    spend(session, org, sub, "20000", tashkent(2026, 11, 1, 0), "u1")  # 2 % in the first hour
    budget_alerts.check_budgets(session, now=tashkent(2026, 11, 1, 1))
    # an hour's rate × 720 hours would be 1 440 % ; projected from at least one day it is 60 %
    assert alerts(session) == []
    budget_alerts.check_budgets(session, now=tashkent(2026, 11, 1, 23))
    assert alerts(session) == []


def test_two_threads_at_once_alert_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        org, sub, budget, _ = _setup(s, [("50", "actual"), ("80", "actual")])
        spend(s, org, sub, "900000", tashkent(2026, 11, 20), "u1")

    def check():
        with Session(engine, expire_on_commit=False) as s:
            budget_alerts.check_budgets(s, now=tashkent(2026, 11, 20, 12))

    at_once(check, check)  # raises what either raised
    with Session(engine) as s:
        assert len(alerts(s)) == 2 and len(mails(s)) == 4


def test_usage_of_the_last_hour_of_a_tashkent_month_alerts_in_that_month(session):
    org, sub, budget, _ = _setup(session, [("80", "actual"), ("100", "forecast")])
    spend(session, org, sub, "500000", tashkent(2026, 10, 15), "u1")
    spend(session, org, sub, "350000", tashkent(2026, 10, 31, 23), "u2")  # 31 Oct 23:00 local = 18:00 UTC
    spend(session, org, sub, "1000", tashkent(2026, 11, 1, 0), "u3")  # November's first hour
    budget_alerts.check_budgets(session, now=tashkent(2026, 11, 1, 0, 10))  # rated after midnight
    assert alerts(session) == [(date(2026, 10, 1), "80", "actual")]  # October's; November is far below
    # after the first days of November, October is closed and no longer checked
    budget_alerts.check_budgets(session, now=tashkent(2026, 11, 5))
    assert alerts(session) == [(date(2026, 10, 1), "80", "actual")]


def test_a_budget_without_recipients_mails_the_owners_and_administrators(session):
    org, sub, budget, owner = _setup(session, [("10", "actual")], extra=(), users=False)
    admin = f.user(session, org, role="admin")
    f.user(session, org, role="finance")
    spend(session, org, sub, "200000", tashkent(2026, 11, 2), "u1")
    budget_alerts.check_budgets(session, now=tashkent(2026, 11, 3))
    assert sorted(m.to_email for m in mails(session)) == sorted([owner.email, admin.email])
