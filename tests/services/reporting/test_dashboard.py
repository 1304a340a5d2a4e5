"""The home page figures (services/reporting/dashboard.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from noventiq_panel.models import Budget, BudgetAlert, Payment, Role, Subscription
from noventiq_panel.services.reporting import dashboard
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import Forbidden
from tests import factories

UTC = timezone.utc
# 16 November 2026, 00:00 in Tashkent (UTC+5): exactly half of November has passed.
NOW = datetime(2026, 11, 15, 19, 0, tzinfo=UTC)


@pytest.fixture
def world(session):
    org = factories.org(session, "ООО «Дашборд»", tax_id="300000066", low_balance_threshold=Decimal("100000.00"))
    other = factories.org(session, "ООО «Сосед»", tax_id="300000077")
    owner = factories.user(session, org, Role.OWNER)
    finance = factories.user(session, org, Role.FINANCE)
    stranger = factories.user(session, other, Role.OWNER)
    plans = factories.catalog(session)
    return dict(org=org, other=other, owner=owner, finance=finance, stranger=stranger, plans=plans)


def post(session, org, kind, amount, at, key):
    ledger.post(session, org_id=org.id, kind=kind, amount=Decimal(amount), idempotency_key=key, occurred_at=at)
    session.commit()


def sub(session, org, plan, *, term_end, auto_renew=True, quantity=1, status="active", name=""):
    s = Subscription(org_id=org.id, plan_id=plan.id, name=name, status=status, quantity=quantity,
                     term_start=term_end - timedelta(days=30), term_end=term_end, auto_renew=auto_renew)
    session.add(s)
    session.commit()
    return s


def test_consumption_counts_charges_and_usage_less_refunds_in_the_org_month(session, world):
    org = world["org"]
    post(session, org, "topup", "1000000", NOW - timedelta(days=3), "t1")
    post(session, org, "charge", "-300000", NOW - timedelta(days=2), "c1")
    post(session, org, "refund", "50000", NOW - timedelta(days=1), "r1")
    post(session, org, "usage", "-100000", NOW - timedelta(hours=5), "u1")
    post(session, org, "adjustment", "-7000", NOW - timedelta(hours=4), "a1")
    # 31 October 20:00 UTC is 1 November 01:00 in Tashkent: November.
    post(session, org, "usage", "-20000", datetime(2026, 10, 31, 20, 0, tzinfo=UTC), "u-edge-in")
    # 31 October 18:00 UTC is 23:00 in Tashkent: October, not counted.
    post(session, org, "usage", "-999", datetime(2026, 10, 31, 18, 0, tzinfo=UTC), "u-edge-out")
    post(session, world["other"], "charge", "-123456", NOW - timedelta(days=1), "other-c1")
    d = dashboard.get_dashboard(session, factories.actor(world["owner"], org), now=NOW)
    assert d.month == date(2026, 11, 1)
    assert d.month_to_date == Decimal("370000.00")  # 300000 - 50000 + 100000 + 20000
    # Usage 120000 over half the month projects to 240000; licences stay 250000.
    assert d.forecast == Decimal("490000.00")
    assert d.balance == ledger.balance(session, org.id)


def test_forecast_adds_renewals_due_before_the_month_ends(session, world):
    org, plans = world["org"], world["plans"]
    sub(session, org, plans["basic-m"], term_end=NOW + timedelta(days=5), quantity=3)  # 3 × 30000
    sub(session, org, plans["std-m"], term_end=NOW + timedelta(days=5), auto_renew=False)  # expires: no charge
    sub(session, org, plans["std-m"], term_end=NOW + timedelta(days=25))  # next month: not this one
    d = dashboard.get_dashboard(session, factories.actor(world["owner"], org), now=NOW)
    assert d.month_to_date == Decimal("0.00")
    assert d.forecast == Decimal("90000.00")


def test_soon_lists_renewals_and_expiries_of_the_next_30_days_only(session, world):
    org, plans = world["org"], world["plans"]
    sub(session, org, plans["basic-m"], term_end=NOW + timedelta(days=10), name="Продлится")
    sub(session, org, plans["basic-m"], term_end=NOW + timedelta(days=3), auto_renew=False, name="Закончится")
    sub(session, org, plans["basic-m"], term_end=NOW + timedelta(days=40), name="Не скоро")
    sub(session, org, plans["basic-m"], term_end=NOW + timedelta(days=2), status="expired", name="Уже всё")
    sub(session, world["other"], plans["basic-m"], term_end=NOW + timedelta(days=2), name="Чужая")
    d = dashboard.get_dashboard(session, factories.actor(world["finance"], org), now=NOW)
    assert [(i.name, i.event) for i in d.soon] == [("Закончится", "expires"), ("Продлится", "renews")]


def test_alerts_low_balance_overdue_payment_and_this_months_budget(session, world):
    org, plans = world["org"], world["plans"]
    post(session, org, "topup", "50000", NOW - timedelta(days=1), "t-low")
    session.add(Payment(org_id=org.id, number="P-1", amount=Decimal("500000.00"), currency="UZS", status="pending",
                        due_date=date(2026, 11, 10)))
    session.add(Payment(org_id=org.id, number="P-2", amount=Decimal("10.00"), currency="UZS", status="pending",
                        due_date=date(2026, 11, 30)))  # not due yet
    session.add(Payment(org_id=world["other"].id, number="P-3", amount=Decimal("10.00"), currency="UZS",
                        status="overdue", due_date=date(2026, 11, 1)))
    azure = sub(session, org, plans["azure-d"], term_end=NOW + timedelta(days=300), name="Azure")
    budget = Budget(org_id=org.id, subscription_id=azure.id, amount=Decimal("1000000.00"))
    session.add(budget)
    session.commit()
    session.add(BudgetAlert(budget_id=budget.id, month=date(2026, 11, 1), percent="80", kind="actual",
                            spent=Decimal("800000.00")))
    session.add(BudgetAlert(budget_id=budget.id, month=date(2026, 10, 1), percent="100", kind="actual",
                            spent=Decimal("1000000.00")))
    session.commit()
    d = dashboard.get_dashboard(session, factories.actor(world["owner"], org), now=NOW)
    kinds = [(a.kind, a.params.get("number") or a.params.get("percent")) for a in d.alerts]
    assert ("low_balance", None) in kinds
    assert ("payment_overdue", "P-1") in kinds
    assert ("budget", "80") in kinds
    assert len(kinds) == 3


def test_a_user_of_another_organisation_cannot_read_it(session, world):
    with pytest.raises(Forbidden):
        dashboard.get_dashboard(session, factories.actor(world["stranger"], world["org"]), now=NOW)
