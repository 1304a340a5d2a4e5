"""Forged and normal events against /subscriptions, /subscriptions/[id] and /catalog: the handlers
show only the caller's organisation, refuse what the role may not do, never move money without a
preview and a confirmation, and never twice for one confirmation."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from reflex.istate.data import ReflexURL, RouterData
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel import i18n
from noventiq_panel.models import Budget, LedgerEntry, Organisation, Payment, Plan, Role, Subscription
from noventiq_panel.services.identity import auth
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.clock import local_date
from noventiq_panel.services.subscriptions import ordering
from noventiq_panel.state.base import BaseState
from noventiq_panel.state.catalog import CatalogState
from noventiq_panel.state.subscription_detail import SubscriptionDetailState
from noventiq_panel.state.formatting import fmt_money, text_date
from noventiq_panel.state.subscriptions import SubscriptionsState
from tests import factories

from tests.state.conftest import is_error_toast, new_state, signed_in

PW = "correct-horse-1"


@pytest.fixture
def db(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def world(db):
    a = factories.org(db, "ООО «Альфа»", tax_id="300000011")
    b = factories.org(db, "ООО «Бета»", tax_id="300000022")
    h = auth.hash_password(PW)
    owner = factories.user(db, a, Role.OWNER, email="owner@a.example", password_hash=h, name="Олег")
    finance = factories.user(db, a, Role.FINANCE, email="finance@a.example", password_hash=h)
    other = factories.user(db, b, Role.OWNER, email="owner@b.example", password_hash=h)
    plans = factories.catalog(db)
    factories.usd_rate(db, date(2020, 1, 1))
    factories.topup(db, a, "200000")  # covers the pay-as-you-go deposit after the licences
    factories.topup(db, b, "100000")
    mine = ordering.order(db, factories.actor(owner, a), plans["basic-m"].id, 2).subscription_id
    azure = ordering.order(db, factories.actor(owner, a), plans["azure-d"].id, 1).subscription_id
    theirs = ordering.order(db, factories.actor(other, b), plans["std-m"].id, 1).subscription_id
    ids = dict(a=a.id, b=b.id, mine=mine, azure=azure, theirs=theirs, owner=owner.id,
               basic_m=plans["basic-m"].id, std_m=plans["std-m"].id, trial=plans["basic-trial"].id)
    db.commit()
    return ids


def count(db, model, *where) -> int:
    n = db.exec(select(func.count()).select_from(model).where(*where)).one()
    db.commit()  # SQLite: end the read transaction (BEGIN IMMEDIATE holds the write lock)
    return n


def balance(db, org_id) -> Decimal:
    value = ledger.balance(db, org_id)
    db.commit()
    return value


def at(state, path: str):
    state.router = RouterData(url=ReflexURL(f"http://localhost:3000{path}"))
    return state


async def run(gen_or_result):
    """Drive a handler that may be an async generator (handlers that ``yield``)."""
    out = []
    if hasattr(gen_or_result, "__aiter__"):
        async for item in gen_or_result:
            out.append(item)
        return out
    return gen_or_result


async def _list(db, email):
    state = at(new_state(SubscriptionsState), "/subscriptions")
    signed_in(state, db, email, PW)
    await SubscriptionsState.load.fn(state)
    return state


# --- the list ----------------------------------------------------------------------------------

async def test_list_shows_only_the_own_organisation_as_strings(db, world):
    state = await _list(db, "owner@a.example")
    assert state.loaded and state.total == 2
    assert {r["id"] for r in state.rows} == {str(world["mine"]), str(world["azure"])}
    assert all(isinstance(v, str) for r in state.rows for v in r.values())
    basic = next(r for r in state.rows if r["id"] == str(world["mine"]))
    assert basic["status"] == "Активна" and basic["quantity"] == "2" and basic["auto_renew"] == "1"
    assert basic["portal_url"] == "https://admin.microsoft.com"


async def test_forged_list_parameters_are_ignored(db, world):
    state = await _list(db, "owner@a.example")
    await SubscriptionsState.sort_by.fn(state, "password_hash")
    await SubscriptionsState.set_status_filter.fn(state, "'; drop table subscription; --")
    await SubscriptionsState.go_page.fn(state, "abc")
    assert (state.sort_key, state.status_filter, state.page) == ("term_end", "current", 1)
    await SubscriptionsState.apply_search.fn(state, {"search": "azure"})
    assert [r["id"] for r in state.rows] == [str(world["azure"])]
    await SubscriptionsState.apply_search.fn(state, {"search": ["not", "text"]})
    assert state.total == 2


async def test_auto_renew_switch_of_a_foreign_or_read_only_caller_changes_nothing(db, world):
    owner = await _list(db, "owner@a.example")
    result = await SubscriptionsState.toggle_auto_renew.fn(owner, str(world["theirs"]), False)
    assert is_error_toast(result)
    finance = await _list(db, "finance@a.example")
    assert not finance.can_write
    result = await SubscriptionsState.toggle_auto_renew.fn(finance, str(world["mine"]), False)
    assert is_error_toast(result)
    assert db.get(Subscription, world["theirs"], populate_existing=True).auto_renew is True
    assert db.get(Subscription, world["mine"], populate_existing=True).auto_renew is True
    db.commit()
    await SubscriptionsState.toggle_auto_renew.fn(owner, str(world["mine"]), False)
    assert db.get(Subscription, world["mine"], populate_existing=True).auto_renew is False
    db.commit()
    assert next(r for r in owner.rows if r["id"] == str(world["mine"]))["auto_renew"] == ""


async def test_quantity_dialog_previews_then_charges_once_per_confirmation(db, world):
    state = await _list(db, "owner@a.example")
    SubscriptionsState.open_qty.fn(state, str(world["mine"]))
    assert state.qty_open and state.qty_current == "2"
    await SubscriptionsState.preview_qty.fn(state, {"quantity": "abc"})
    assert state.qty_error and state.qty_step == "form"
    before = balance(db, world["a"])
    await SubscriptionsState.preview_qty.fn(state, {"quantity": "3"})
    assert state.qty_step == "confirm" and state.qty_preview["charge"]
    assert balance(db, world["a"]) == before  # a preview moves nothing
    await run(SubscriptionsState.confirm_qty.fn(state))
    charged = before - balance(db, world["a"])
    assert charged > 0 and not state.qty_open
    state.qty_step = "confirm"  # a forged second confirmation with the same token
    await run(SubscriptionsState.confirm_qty.fn(state))
    assert before - balance(db, world["a"]) == charged
    assert db.get(Subscription, world["mine"], populate_existing=True).quantity == 3
    db.commit()


async def test_short_balance_shows_the_shortfall_and_issues_an_invoice_for_it(db, world):
    state = await _list(db, "owner@a.example")
    SubscriptionsState.open_qty.fn(state, str(world["mine"]))
    await SubscriptionsState.preview_qty.fn(state, {"quantity": "300"})
    assert state.qty_preview["shortfall"] and state.qty_preview["topup_href"].startswith("/billing?topup=")
    missing = Decimal(state.qty_preview["shortfall_raw"])
    await SubscriptionsState.request_qty_invoice.fn(state)
    invoice = db.exec(select(Payment).where(Payment.kind == "shortfall")).one()
    db.commit()
    assert invoice.amount == missing and invoice.pending_action["type"] == "quantity"
    assert invoice.pending_action["quantity"] == 300 and state.qty_invoice == invoice.number
    assert invoice.pending_action["operation_id"] == state._qty_quote_id != ""  # bound to the preview


# --- the detail page ---------------------------------------------------------------------------

async def _detail(db, email, path):
    state = at(new_state(SubscriptionDetailState), path)
    signed_in(state, db, email, PW)
    await SubscriptionDetailState.load.fn(state)
    return state


@pytest.mark.parametrize("path", ["/subscriptions/{theirs}", "/subscriptions/999999", "/subscriptions/abc",
                                  "/subscriptions/-1", "/subscriptions/99999999999999999999"])
async def test_foreign_or_missing_subscription_is_not_found(db, world, path):
    state = await _detail(db, "owner@a.example", path.format(**world))
    assert state.loaded and state.not_found and state.d == {}


async def test_detail_shows_tabs_data_and_history(db, world):
    state = await _detail(db, "finance@a.example", f"/subscriptions/{world['mine']}")
    assert not state.not_found and state.d["quantity"] == "2" and state.d["is_licence"] == "1"
    assert state.batches and state.batches[0]["in_window"] == "1"
    assert state.events and state.events[0]["user"] == "Олег"
    assert all(isinstance(v, str) for v in state.d.values())


async def test_resources_tab_refund_inside_the_window_after_confirmation(db, world):
    state = await _detail(db, "owner@a.example", f"/subscriptions/{world['mine']}")
    await SubscriptionDetailState.preview_qty.fn(state, {"quantity": "1"})
    assert state.qty_step == "confirm" and state.qty_preview["refund"]
    before = balance(db, world["a"])
    await run(SubscriptionDetailState.confirm_qty.fn(state))
    assert balance(db, world["a"]) > before
    assert state.d["quantity"] == "1"


async def test_read_only_and_forged_option_events_change_nothing(db, world):
    finance = await _detail(db, "finance@a.example", f"/subscriptions/{world['mine']}")
    for handler, args in ((SubscriptionDetailState.suspend, ()), (SubscriptionDetailState.toggle_auto_renew, (False,)),
                          (SubscriptionDetailState.preview_cancel, ())):
        await handler.fn(finance, *args)
    finance.cancel_preview = {"text": "forged"}
    assert is_error_toast(await run(SubscriptionDetailState.confirm_cancel.fn(finance)))
    sub = db.get(Subscription, world["mine"], populate_existing=True)
    assert (sub.status, sub.auto_renew) == ("active", True)
    db.commit()
    owner = await _detail(db, "owner@a.example", f"/subscriptions/{world['mine']}")
    assert is_error_toast(await SubscriptionDetailState.cancel_change.fn(owner, "abc"))
    assert is_error_toast(await SubscriptionDetailState.toggle_auto_renew.fn(owner, "false"))
    SubscriptionDetailState.set_plan_choice.fn(owner, "not-offered")
    assert owner.plan_choice == ""


async def test_plan_upgrade_and_cancel_go_through_preview_and_confirmation(db, world):
    factories.topup(db, db.get(Organisation, world["a"]), "1000000")
    owner = await _detail(db, "owner@a.example", f"/subscriptions/{world['mine']}")
    SubscriptionDetailState.set_plan_choice.fn(owner, "std-m")
    await SubscriptionDetailState.preview_plan.fn(owner)
    p = owner.plan_preview
    assert owner.plan_open and p["waits"] == "" and p["later"] == ""  # an upgrade: at once
    assert p["summary"].startswith("Новый план: ") and p["summary"].endswith("Standard, month")
    assert owner._plan_quote_id and Decimal(owner._plan_amount) > 0
    shown = p["amount"]
    assert shown == fmt_money(Decimal(owner._plan_amount), "UZS", "ru") and shown in p["now"]
    before = balance(db, world["a"])
    await run(SubscriptionDetailState.confirm_plan.fn(owner))
    charged = _amount(shown)
    assert before - balance(db, world["a"]) == charged
    assert db.get(Subscription, world["mine"], populate_existing=True).plan_id == world["std_m"]
    db.commit()
    assert not owner.plan_open and owner._plan_quote_id == ""
    await run(SubscriptionDetailState.confirm_plan.fn(owner))  # a forged second confirmation: nothing to confirm
    assert before - balance(db, world["a"]) == charged
    await SubscriptionDetailState.preview_cancel.fn(owner)
    assert owner.cancel_preview["text"] and owner.cancel_preview["amount"]
    await run(SubscriptionDetailState.confirm_cancel.fn(owner))
    assert db.get(Subscription, world["mine"], populate_existing=True).status == "cancelled"
    db.commit()


def _amount(text: str) -> Decimal:
    """'45 000,00 сум' → Decimal('45000.00')."""
    digits = "".join(ch for ch in text if ch.isdigit() or ch == ",")
    return Decimal(digits.replace(",", "."))


async def test_plan_change_that_waits_says_when_and_why_and_moves_no_money(db, world):
    standard = ordering.order(db, Actor(world["owner"], world["a"]), world["std_m"], 1).subscription_id
    db.commit()
    owner = await _detail(db, "owner@a.example", f"/subscriptions/{standard}")
    assert [o["code"] for o in owner.plan_options] == ["basic-m"] and "понижение" in owner.plan_options[0]["label"]
    SubscriptionDetailState.set_plan_choice.fn(owner, "basic-m")
    await SubscriptionDetailState.preview_plan.fn(owner)
    p = owner.plan_preview
    sub = db.get(Subscription, standard, populate_existing=True)
    org = db.get(Organisation, world["a"])
    renewal = text_date(local_date(sub.term_end, org.timezone), "ru")
    db.commit()
    assert p["now"] == f"Вступит в силу при продлении {renewal}" and p["waits"] == "1"
    assert p["later"] == "Новый план дешевле: он начнёт действовать со следующего срока."
    assert p["amount"] == fmt_money(Decimal(0), "UZS", "ru") and owner._plan_amount == "0.00"
    before, entries = balance(db, world["a"]), count(db, LedgerEntry)
    result = await run(SubscriptionDetailState.confirm_plan.fn(owner))
    assert any(renewal in repr(e) for e in result)  # "scheduled for <date>"
    assert (balance(db, world["a"]), count(db, LedgerEntry)) == (before, entries)
    assert db.get(Subscription, standard, populate_existing=True).plan_id == world["std_m"]
    db.commit()
    assert [c["text"] for c in owner.changes] == [f"С {renewal}: переход на план «Basic, month»"]


async def test_confirm_after_the_price_changed_shows_the_message_and_the_new_preview_and_charges_nothing(db, world):
    state = await _list(db, "owner@a.example")
    SubscriptionsState.open_qty.fn(state, str(world["mine"]))
    await SubscriptionsState.preview_qty.fn(state, {"quantity": "3"})
    old_charge, old_quote = state.qty_preview["charge"], state._qty_quote_id
    plan = db.get(Plan, world["basic_m"])
    plan.price = Decimal(45000)  # the price changes while the dialog is open
    db.add(plan)
    db.commit()
    before, entries = balance(db, world["a"]), count(db, LedgerEntry)

    await run(SubscriptionsState.confirm_qty.fn(state))
    assert state.qty_error == i18n.t("error.price_changed", "ru")
    assert state.qty_step == "confirm" and state.qty_open  # the same dialog, with the new amount
    assert state.qty_preview["charge"] != old_charge and state._qty_quote_id != old_quote
    assert (balance(db, world["a"]), count(db, LedgerEntry)) == (before, entries)
    assert db.get(Subscription, world["mine"], populate_existing=True).quantity == 2
    db.commit()

    new_charge = _amount(state.qty_preview["charge"])
    await run(SubscriptionsState.confirm_qty.fn(state))  # confirmed again, at the new price
    assert before - balance(db, world["a"]) == new_charge
    state.qty_step = "confirm"  # a second confirmation of the same preview
    await run(SubscriptionsState.confirm_qty.fn(state))
    assert before - balance(db, world["a"]) == new_charge and count(db, LedgerEntry) == entries + 1
    assert db.get(Subscription, world["mine"], populate_existing=True).quantity == 3
    db.commit()


async def test_order_confirmed_after_the_price_changed_is_previewed_again_not_charged(db, world):
    state = await _catalog(db, "owner@a.example")
    CatalogState.open_order.fn(state, str(world["basic_m"]))
    await CatalogState.preview_order.fn(state)
    old_now = state.order_preview["now"]
    plan = db.get(Plan, world["basic_m"])
    plan.price = Decimal(31000)
    db.add(plan)
    db.commit()
    subs, before = count(db, Subscription), balance(db, world["a"])
    await run(CatalogState.confirm_order.fn(state))
    assert state.order_error == i18n.t("error.price_changed", "ru") and state.order_step == "confirm"
    assert state.order_preview["now"] != old_now
    assert fmt_money(Decimal(31000), "UZS", "ru") in state.order_preview["now"]  # the new price, to confirm again
    assert (count(db, Subscription), balance(db, world["a"])) == (subs, before)
    await run(CatalogState.confirm_order.fn(state))
    assert state.order_step == "done" and count(db, Subscription) == subs + 1
    assert before - balance(db, world["a"]) == Decimal("31000.00")


async def test_budget_dialog_validates_and_saves(db, world):
    state = await _detail(db, "owner@a.example", f"/subscriptions/{world['azure']}")
    assert state.d["is_payg"] == "1"
    await SubscriptionDetailState.open_budget.fn(state)
    assert [t["percent"] for t in state.budget_thresholds] == ["50", "80", "100", "100"]
    assert state.budget_recipients == [str(world["owner"])]
    SubscriptionDetailState.set_budget_amount.fn(state, "1000000")
    SubscriptionDetailState.set_threshold_percent.fn(state, "0", "2000")
    await SubscriptionDetailState.save_budget.fn(state)
    assert state.budget_error and count(db, Budget) == 0
    SubscriptionDetailState.set_threshold_percent.fn(state, "0", "75.5")
    SubscriptionDetailState.set_threshold_percent.fn(state, "99", "1")  # forged index: ignored
    SubscriptionDetailState.toggle_recipient.fn(state, "424242", True)  # not a member: ignored
    SubscriptionDetailState.set_budget_emails.fn(state, "cfo@a.example")
    await SubscriptionDetailState.save_budget.fn(state)
    assert count(db, Budget) == 1 and not state.budget_open and state.budget["amount"]
    await SubscriptionDetailState.remove_budget.fn(state)
    assert count(db, Budget) == 0


# --- the catalog -------------------------------------------------------------------------------

async def _catalog(db, email):
    state = at(new_state(CatalogState), "/catalog")
    signed_in(state, db, email, PW)
    await CatalogState.load.fn(state)
    return state


async def test_catalog_groups_and_orders_once_per_confirmation(db, world):
    state = await _catalog(db, "owner@a.example")
    assert [c.name for c in state.categories] == ["IaaS", "Office"]
    CatalogState.open_order.fn(state, "999999")  # not in the catalog: nothing opens
    assert not state.order_open
    CatalogState.open_order.fn(state, str(world["basic_m"]))
    assert state.order_open and len(state.order_variants) == 4
    CatalogState.set_order_qty.fn(state, "1.5")
    await CatalogState.preview_order.fn(state)
    assert state.order_error and state.order_step == "form"
    CatalogState.set_order_qty.fn(state, "1")
    await CatalogState.preview_order.fn(state)
    assert state.order_step == "confirm" and state.order_preview["now"]
    before = count(db, Subscription)
    await run(CatalogState.confirm_order.fn(state))
    state.order_step = "confirm"  # forged replay of the same confirmation
    await run(CatalogState.confirm_order.fn(state))
    assert count(db, Subscription) == before + 1
    assert state.order_sub_href.startswith("/subscriptions/")


async def test_catalog_order_without_funds_offers_the_shortfall_invoice(db, world):
    state = await _catalog(db, "owner@a.example")
    CatalogState.open_order.fn(state, str(world["basic_m"]))
    CatalogState.set_order_qty.fn(state, "100")
    await CatalogState.preview_order.fn(state)
    assert state.order_preview["shortfall"]
    await CatalogState.request_order_invoice.fn(state)
    invoice = db.exec(select(Payment).where(Payment.kind == "shortfall")).one()
    db.commit()
    assert invoice.pending_action["type"] == "order" and invoice.pending_action["quantity"] == 100
    assert invoice.pending_action["operation_id"] == state._order_quote_id != ""


async def test_read_only_role_cannot_order_even_with_forged_events(db, world):
    state = await _catalog(db, "finance@a.example")
    CatalogState.open_order.fn(state, str(world["basic_m"]))
    await CatalogState.preview_order.fn(state)
    state.order_step = "confirm"
    before = count(db, Subscription), count(db, LedgerEntry)
    result = await run(CatalogState.confirm_order.fn(state))
    assert is_error_toast(result)
    assert (count(db, Subscription), count(db, LedgerEntry)) == before


async def test_another_user_signed_in_in_the_same_browser_resets_the_tab_even_when_a_load_fails(db, world):
    """Pages run no separate guard: a load that ends in not-found must still forget the previous
    user's frame and page data (review of issue 16)."""
    detail = at(new_state(SubscriptionDetailState), f"/subscriptions/{world['mine']}")
    signed_in(detail, db, "owner@a.example", PW)
    listing = at(await detail.get_state(SubscriptionsState), "/subscriptions")
    await SubscriptionsState.load.fn(listing)
    at(detail, f"/subscriptions/{world['mine']}")
    await SubscriptionDetailState.load.fn(detail)
    assert detail.user_email == "owner@a.example" and listing.rows and not detail.not_found
    signed_in(detail, db, "owner@b.example", PW)  # the cookie is the browser's, shared by its tabs
    await SubscriptionDetailState.load.fn(detail)  # the same address: not owner@b's subscription
    assert detail.not_found
    assert detail.user_email == "owner@b.example" and not listing.rows


# --- the organisation or user switched in another tab ------------------------------------------

def _also_admin_of_b(db, world) -> None:
    from noventiq_panel.models import Membership

    db.add(Membership(user_id=world["owner"], org_id=world["b"], role=Role.ADMIN))
    db.commit()


async def test_an_order_confirmed_in_a_tab_of_one_organisation_is_not_placed_in_the_one_switched_to_elsewhere(
        db, world):
    """The owner of A (also an administrator of B) previews an order in one tab and switches to B in
    another: the confirmation in the first tab orders nothing, in neither organisation, and says why."""
    _also_admin_of_b(db, world)
    tab = await _catalog(db, "owner@a.example")
    CatalogState.open_order.fn(tab, str(world["basic_m"]))
    await CatalogState.preview_order.fn(tab)
    assert tab.order_step == "confirm"
    other_tab = new_state(BaseState)
    other_tab.session_secret = tab.session_secret  # the same browser: the cookie is shared
    await BaseState.switch_org.fn(other_tab, str(world["b"]))
    assert other_tab.org_name == "ООО «Бета»"
    subs, in_a, in_b = count(db, Subscription), balance(db, world["a"]), balance(db, world["b"])
    result = await run(CatalogState.confirm_order.fn(tab))
    assert (count(db, Subscription), balance(db, world["a"]), balance(db, world["b"])) == (subs, in_a, in_b)
    assert i18n.t("error.switched_elsewhere", "ru") in repr(result) and "reload" in repr(result)
    assert tab.order_step != "confirm" and not tab.order_open  # the tab forgot A's dialog
    await CatalogState.load.fn(at(tab, "/catalog"))  # the reload's page load shows B
    assert tab.org_name == "ООО «Бета»" and tab.current_org_id == str(world["b"])


async def test_a_tab_of_a_user_who_signed_out_elsewhere_acts_for_nobody_else(db, world):
    """Signed out in one tab and signed in as another user: a click in the first user's tab runs
    nothing as the second user."""
    tab = await _list(db, "owner@a.example")
    signed_in(tab, db, "owner@b.example", PW)  # the shared cookie now holds the other user's session
    result = await SubscriptionsState.toggle_auto_renew.fn(tab, str(world["mine"]), False)
    assert i18n.t("error.switched_elsewhere", "ru") in repr(result)
    assert db.get(Subscription, world["mine"], populate_existing=True).auto_renew is True
    assert db.get(Subscription, world["theirs"], populate_existing=True).auto_renew is True
    db.commit()
    await SubscriptionsState.load.fn(tab)  # the reload's page load shows the browser's user now
    assert tab.user_email == "owner@b.example"
    assert [r["id"] for r in tab.rows] == [str(world["theirs"])]
