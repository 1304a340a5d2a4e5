"""Budgets on pay-as-you-go subscriptions: amount and threshold rules, recipients of the organisation
only, defaults, replace/remove, and every refusal leaves the database as it was."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.models import Budget, BudgetAlert
from noventiq_panel.services.usage import budgets
from noventiq_panel.services.subscriptions import cancellation, ordering
from noventiq_panel.services.core.errors import Conflict, Forbidden, InvalidInput, NotFound

from tests import factories as f
from tests.services.subs_world import NOW, World, counts, world


@pytest.fixture
def azure(world) -> int:
    world.topup("100000")  # the pay-as-you-go deposit of a prepaid organisation
    return ordering.order(world.session, world.a_owner, world.plan("azure-d").id, 1, now=NOW).subscription_id


def test_budget_with_defaults_and_recipients(world, azure):
    w: World = world
    view = budgets.set_budget(w.session, w.a_admin, azure, amount="5 000 000,50",
                              recipient_user_ids=[w.owner.id, str(w.finance.id)], extra_emails="CFO@Romashka.uz; it@romashka.uz")
    assert view["amount"] == Decimal("5000000.50") and view["currency"] == "UZS"
    assert view["thresholds"] == [{"percent": "50", "type": "actual"}, {"percent": "80", "type": "actual"},
                                  {"percent": "100", "type": "actual"}, {"percent": "100", "type": "forecast"}]
    assert view["extra_emails"] == ["cfo@romashka.uz", "it@romashka.uz"]
    assert [r["email"] for r in view["recipients"]] == ["owner@romashka.uz", "finance@romashka.uz"]
    assert budgets.get_budget(w.session, w.a_finance, azure)["amount"] == Decimal("5000000.50")


def test_budget_is_replaced_not_duplicated_and_can_be_removed(world, azure):
    w = world
    budgets.set_budget(w.session, w.a_owner, azure, amount="1000", recipient_user_ids=[w.owner.id])
    view = budgets.set_budget(w.session, w.a_owner, azure, amount="2000", extra_emails=["a@b.uz"],
                              thresholds=[{"percent": "90.5", "type": "forecast"}])
    assert view["thresholds"] == [{"percent": "90.5", "type": "forecast"}] and view["recipient_user_ids"] == []
    assert len(w.session.exec(select(Budget)).all()) == 1
    from datetime import date

    w.session.add(BudgetAlert(budget_id=view["id"], month=date(2026, 3, 1), percent="90.5", kind="forecast",
                              spent=Decimal("1900")))
    w.session.commit()
    assert budgets.remove_budget(w.session, w.a_admin, azure) is True
    assert budgets.get_budget(w.session, w.a_owner, azure) is None
    assert budgets.remove_budget(w.session, w.a_admin, azure) is False


@pytest.mark.parametrize("thresholds,key", [
    ([], "error.budget_thresholds_empty"),
    ("80", "error.budget_thresholds_invalid"),
    ([{"percent": "0", "type": "actual"}], "error.budget_percent_range"),
    ([{"percent": "-5", "type": "actual"}], "error.budget_percent_range"),
    ([{"percent": "1000.01", "type": "actual"}], "error.budget_percent_range"),
    ([{"percent": "80.123", "type": "actual"}], "error.budget_percent_decimals"),
    ([{"percent": "abc", "type": "actual"}], "error.not_a_number"),
    ([{"percent": 80.5, "type": "actual"}], "error.float"),
    ([{"percent": None, "type": "actual"}], "error.not_a_number"),
    ([{"percent": "80", "type": "weekly"}], "error.budget_threshold_type"),
    ([{"percent": "80", "type": "actual"}, {"percent": "80.00", "type": "actual"}], "error.budget_thresholds_duplicate"),
    ([{"percent": str(p), "type": "actual"} for p in (10, 20, 30, 40, 50, 60)], "error.budget_thresholds_too_many"),
    (["80"], "error.budget_thresholds_invalid"),
])
def test_bad_thresholds_are_refused_and_change_nothing(world, azure, thresholds, key):
    w = world
    before = counts(w.session)
    with pytest.raises(InvalidInput) as err:
        budgets.set_budget(w.session, w.a_owner, azure, amount="1000", thresholds=thresholds,
                           recipient_user_ids=[w.owner.id])
    assert err.value.key == key
    assert counts(w.session) == before


def test_edge_thresholds_are_accepted():
    assert budgets.parse_thresholds([{"percent": "1000", "type": "actual"}, {"percent": "0.01", "type": "forecast"},
                                     {"percent": 100, "type": "forecast"}, {"percent": "100", "type": "actual"},
                                     {"percent": "99,99", "type": "actual"}]) == [
        {"percent": "1000", "type": "actual"}, {"percent": "0.01", "type": "forecast"},
        {"percent": "100", "type": "forecast"}, {"percent": "100", "type": "actual"},
        {"percent": "99.99", "type": "actual"}]


@pytest.mark.parametrize("amount", ["0", "-1", "abc", "1.001", 1.5, None, "1e30"])
def test_bad_amounts_are_refused_and_change_nothing(world, azure, amount):
    w = world
    before = counts(w.session)
    with pytest.raises(InvalidInput):
        budgets.set_budget(w.session, w.a_owner, azure, amount=amount, recipient_user_ids=[w.owner.id])
    assert counts(w.session) == before


def test_recipients_must_belong_to_the_organisation_and_addresses_must_be_valid(world, azure):
    w = world
    outsider = f.user(w.session, None, email="nobody@else.uz")
    before = counts(w.session)
    for kw, key in (({"recipient_user_ids": [w.stranger.id]}, "error.budget_recipient_not_member"),
                    ({"recipient_user_ids": [outsider.id]}, "error.budget_recipient_not_member"),
                    ({"recipient_user_ids": ["x"]}, "error.budget_recipient_invalid"),
                    ({"recipient_user_ids": 5}, "error.budget_recipient_invalid"),
                    ({"extra_emails": "not-an-email"}, "error.budget_email_invalid"),
                    ({"extra_emails": ["a@b.uz", "bad@@x"]}, "error.budget_email_invalid"),
                    ({"extra_emails": [f"u{i}@x.uz" for i in range(21)]}, "error.budget_too_many_emails"),
                    ({}, "error.budget_no_recipients")):
        with pytest.raises(InvalidInput) as err:
            budgets.set_budget(w.session, w.a_owner, azure, amount="1000", **kw)
        assert err.value.key == key, kw
    assert counts(w.session) == before


def test_budget_only_on_own_pay_as_you_go_subscriptions_and_only_by_owner_or_admin(world, azure):
    w = world
    w.topup("100000")
    licence = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 1, now=NOW).subscription_id
    w.topup("100000", w.other_org)  # the other organisation's pay-as-you-go deposit
    foreign = ordering.order(w.session, w.a_stranger, w.plan("azure-h").id, 1, now=NOW).subscription_id
    before = counts(w.session)
    with pytest.raises(Conflict):
        budgets.set_budget(w.session, w.a_owner, licence, amount="1000", recipient_user_ids=[w.owner.id])
    for bad in (foreign, 999999, "abc", None, 10**15):
        with pytest.raises(NotFound):
            budgets.set_budget(w.session, w.a_owner, bad, amount="1000", recipient_user_ids=[w.owner.id])
        with pytest.raises(NotFound):
            budgets.get_budget(w.session, w.a_owner, bad)
    with pytest.raises(Forbidden):
        budgets.set_budget(w.session, w.a_finance, azure, amount="1000", recipient_user_ids=[w.owner.id])
    with pytest.raises(Forbidden):
        budgets.remove_budget(w.session, w.a_finance, azure)
    assert counts(w.session) == before
    form = budgets.budget_form(w.session, w.a_finance, azure)
    assert form["budget"] is None and not form["can_write"] and len(form["members"]) == 3


def test_budget_on_an_ended_subscription_is_refused(world, azure):
    w = world
    cancellation.cancel(w.session, w.a_owner, azure, now=NOW)
    with pytest.raises(Conflict):
        budgets.set_budget(w.session, w.a_owner, azure, amount="1000", recipient_user_ids=[w.owner.id])
