"""The catalog: grouping, search (Cyrillic too), prices converted at today's rate, trials marked,
withdrawn plans hidden, plan look-ups that reveal nothing for bad ids."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from noventiq_panel.models import Product, Vendor
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import rates
from noventiq_panel.services.core.errors import InvalidInput, NotAuthenticated, NotFound

from tests.services.subs_world import NOW, world


def plans_of(view: dict) -> dict[str, dict]:
    return {p["code"]: p for c in view["categories"] for v in c["vendors"] for pr in v["products"] for p in pr["plans"]}


def test_catalog_groups_by_category_and_vendor_and_marks_trials(world):
    view = catalog.list_catalog(world.session, world.a_finance, now=NOW)
    assert [c["name"] for c in view["categories"]] == ["IaaS", "Office"]
    office = view["categories"][1]
    assert [v["code"] for v in office["vendors"]] == ["ms"]
    products = {p["code"]: p for p in office["vendors"][0]["products"]}
    assert products["m365-basic"]["has_trial"] and not products["m365-std"]["has_trial"]
    plans = plans_of(view)
    assert plans["basic-trial"]["is_trial"] and plans["basic-trial"]["max_quantity"] == 25
    assert plans["basic-ym"]["period_price"] == Decimal("30000") and plans["basic-ym"]["price_org"] == Decimal("360000.00")
    assert plans["azure-d"]["billing_type"] == "payg" and plans["azure-d"]["price_org"] is None
    assert view["product_count"] == 3


def test_prices_in_usd_are_shown_in_the_org_currency_at_todays_rate(world):
    rates.store_rate(world.session, "USD", date(2026, 3, 10), Decimal("12750.50"), source="manual")
    rates.store_rate(world.session, "USD", date(2026, 3, 11), Decimal("99999.00"), source="manual")  # tomorrow
    world.session.commit()
    usd = plans_of(catalog.list_catalog(world.session, world.a_owner, now=NOW))["std-usd"]
    assert (usd["price"], usd["currency"]) == (Decimal("12.500000"), "USD")
    assert usd["price_org"] == Decimal("159381.25")  # 12.50 x 12 750.50


def test_missing_rate_shows_no_converted_price_instead_of_failing(session):
    from tests import factories as f

    o = f.org(session)
    u = f.user(session, o)
    f.catalog(session)
    usd = plans_of(catalog.list_catalog(session, f.actor(u, o), now=NOW))["std-usd"]
    assert usd["price_org"] is None


@pytest.mark.parametrize("needle,codes", [
    ("standard", {"std-m", "std-usd"}),
    ("STANDARD", {"std-m", "std-usd"}),
    ("trial", {"basic-trial"}),
    ("офис", {"basic-m", "basic-y", "basic-ym", "basic-trial"}),
    ("nothing-like-this", set()),
    ("%", set()),
])
def test_search_matches_products_and_plans_case_insensitively(world, needle, codes):
    product = world.session.get(Product, world.plan("basic-m").product_id)
    product.description = "Офисный пакет для малого бизнеса"
    world.session.add(product)
    world.session.commit()
    assert set(plans_of(catalog.list_catalog(world.session, world.a_owner, search=needle, now=NOW))) == codes


def test_withdrawn_plans_and_products_are_hidden_and_cannot_be_looked_up(world):
    plan = world.plan("basic-y")
    plan.is_active = False
    product = world.session.get(Product, world.plan("std-m").product_id)
    product.is_active = False
    world.session.add_all([plan, product])
    world.session.commit()
    codes = set(plans_of(catalog.list_catalog(world.session, world.a_owner, now=NOW)))
    assert "basic-y" not in codes and "std-m" not in codes and "basic-m" in codes
    with pytest.raises(NotFound):
        catalog.get_plan(world.session, plan.id)
    assert catalog.get_plan(world.session, plan.id, active_only=False).plan.code == "basic-y"


@pytest.mark.parametrize("bad", [None, "", "abc", -1, 10**12, "1 or 1=1", True])
def test_bad_plan_ids_and_codes_are_not_found(world, bad):
    with pytest.raises(NotFound):
        catalog.get_plan(world.session, bad)
    with pytest.raises(NotFound):
        catalog.get_plan_by_code(world.session, bad)


def test_catalog_needs_a_member_and_text_search(world):
    with pytest.raises(NotAuthenticated):
        catalog.list_catalog(world.session, None, now=NOW)
    with pytest.raises(InvalidInput):
        catalog.list_catalog(world.session, world.a_owner, search=["x"], now=NOW)


def test_category_filter_and_helpers(world):
    view = catalog.list_catalog(world.session, world.a_owner, category="IaaS", now=NOW)
    assert set(plans_of(view)) == {"azure-h", "azure-d"}
    assert catalog.list_categories(world.session) == ["IaaS", "Office"]
    world.session.add(Vendor(code="acronis", name="Acronis"))
    world.session.commit()
    assert [v["code"] for v in catalog.list_vendors(world.session)] == ["acronis", "ms"]
