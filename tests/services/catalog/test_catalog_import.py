"""Catalog import: validation that points at the line and field, exact numbers, upsert by code.

Hazards: a typo imported as a broken plan (a pay-as-you-go plan without granularity, a trial that
converts to nothing); a price read through float; an error reported without a line; a re-import
that duplicates or silently keeps stale values.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.models import Plan, Product, Vendor
from noventiq_panel.services.catalog import catalog_import as ci
from noventiq_panel.services.demo.demo import DEMO_CATALOG

GOOD = """\
vendors:
  - code: ms
    name: Microsoft
    portal_url: https://admin.microsoft.com
products:
  - code: m365
    vendor: ms
    name: Microsoft 365
    plans:
      - code: m365-1m
        name: Month
        price: 7.20
        allowed_changes: [m365-1y]
      - code: m365-1y
        name: Year
        term: year
        price: "72.00"
      - code: m365-trial
        name: Trial
        trial_days: 30
        trial_converts_to: m365-1m
"""


def issues_of(text: str, **kw) -> list[ci.Issue]:
    with pytest.raises(ci.CatalogError) as err:
        ci.validate_catalog(text, **kw)
    return err.value.issues


def test_the_demo_catalog_is_valid_and_large_enough():
    catalog = ci.validate_catalog(DEMO_CATALOG.read_text(encoding="utf-8"), filename="catalog.yaml")
    assert len(catalog.products) >= 15 and len({p.vendor for p in catalog.products}) >= 6
    plans = [p for product in catalog.products for p in product.plans]
    assert any(p.trial_days == 30 and p.trial_converts_to for p in plans)
    assert {p.granularity for p in plans if p.billing_type == "payg"} == {"hour", "day"}
    assert {(p.term, p.billing_frequency) for p in plans if p.billing_type == "license"} >= {
        ("month", "upfront"), ("year", "upfront"), ("year", "monthly")}


def test_numbers_are_read_exactly_never_through_float():
    catalog = ci.validate_catalog(GOOD.replace("price: 7.20", "price: 7.123456"), filename="c.yaml")
    assert catalog.products[0].plans[0].price == Decimal("7.123456")
    data = json.loads(json.dumps({"vendors": [{"code": "ms", "name": "MS"}],
                                  "products": [{"code": "p", "vendor": "ms", "name": "P",
                                                "plans": [{"code": "p-1m", "name": "M", "price": 0}]}]}))
    text = json.dumps(data).replace('"price": 0', '"price": 0.1')
    assert ci.validate_catalog(text, filename="c.json").products[0].plans[0].price == Decimal("0.1")


def test_a_non_finite_number_is_refused_with_its_line():
    [issue] = issues_of(GOOD.replace("price: 7.20", "price: .nan"), filename="c.yaml")
    assert (issue.line, issue.field) == (12, "price")


def test_missing_and_unknown_fields_name_their_lines():
    text = GOOD.replace("    name: Microsoft 365\n", "    title: Microsoft 365\n")
    found = {(i.line, i.where, i.message) for i in issues_of(text, filename="c.yaml")}
    assert (6, "products[0].name", "field required") in found  # the product's first line
    assert (8, "products[0].title", "unknown field") in found


@pytest.mark.parametrize("change, line, field, words", [
    (("vendor: ms", "vendor: google"), 7, "vendor", "unknown vendor"),
    (("trial_converts_to: m365-1m", "trial_converts_to: m365-9m"), 21, "trial_converts_to", "unknown plan"),
    (("allowed_changes: [m365-1y]", "allowed_changes: [m365-1y, nope]"), 13, "allowed_changes", "unknown plan"),
    (("        name: Year\n", "        name: Year\n        billing_type: payg\n"), 14, "granularity", "granularity"),
    (("        trial_days: 30\n", "        trial_days: 30\n        price: 5\n"), 21, "price", "free"),
    (("term: year", "term: year\n        billing_frequency: monthly\n        min_quantity: 5\n"
                    "        max_quantity: 2"), 18, "min_quantity", "max_quantity"),
    (("code: m365-1y", "code: m365-1m"), 14, "code", "duplicate plan"),
])
def test_cross_field_mistakes_name_the_line_and_the_field(change, line, field, words):
    issues = issues_of(GOOD.replace(*change), filename="c.yaml")
    assert any(i.line == line and i.field == field and words in i.message for i in issues), issues


def test_json_errors_name_the_path_and_the_line():
    data = {"vendors": [{"code": "ms", "name": "Microsoft"}],
            "products": [{"code": "p", "vendor": "ms", "name": "P",
                          "plans": [{"code": "p-1m", "name": "M"}, {"code": "p-1y", "name": "Y", "term": "week"}]}]}
    text = json.dumps(data, indent=2)
    [issue] = issues_of(text, filename="c.json")
    assert issue.where == "products[0].plans[1].term"
    assert text.splitlines()[issue.line - 1].strip().startswith('"term"')
    [syntax] = issues_of('{"vendors": [\n  {"code": "ms",}\n]}', filename="c.json")
    assert syntax.line == 2 and "JSON" in syntax.message


def test_import_upserts_by_code_and_a_second_import_changes_nothing(session):
    first = ci.import_catalog(session, GOOD, filename="c.yaml")
    assert first.created == {"vendor": 1, "product": 1, "plan": 3}
    plan_id = session.exec(select(Plan.id).where(Plan.code == "m365-1m")).one()
    again = ci.import_catalog(session, GOOD, filename="c.yaml")
    assert again.created == {"vendor": 0, "product": 0, "plan": 0} and again.updated["plan"] == 0
    changed = ci.import_catalog(session, GOOD.replace("price: 7.20", "price: 7.50"), filename="c.yaml")
    assert changed.updated["plan"] == 1
    session.expire_all()
    plan = session.exec(select(Plan).where(Plan.code == "m365-1m")).one()
    assert plan.id == plan_id and plan.price == Decimal("7.50") and plan.allowed_changes == ["m365-1y"]
    assert len(session.exec(select(Vendor)).all()) == 1 and len(session.exec(select(Product)).all()) == 1


def test_a_later_file_may_refer_to_plans_and_vendors_already_in_the_database(session):
    ci.import_catalog(session, GOOD, filename="c.yaml")
    addon = """\
products:
  - code: m365-premium
    vendor: ms
    name: Premium
    plans:
      - code: m365p-1m
        name: Month
        price: "22"
        allowed_changes: [m365-1m]
"""
    assert ci.import_catalog(session, addon, filename="addon.yaml").created["plan"] == 1


def test_an_invalid_file_writes_nothing(session):
    with pytest.raises(ci.CatalogError):
        ci.import_catalog(session, GOOD.replace("vendor: ms", "vendor: other"), filename="c.yaml")
    assert session.exec(select(Vendor)).all() == []


def test_a_plans_catalogue_item_is_imported_checked_and_given_to_the_connector(session, vendor_double):
    """The vendor's catalogue item of a plan (Partner Center: product:SKU:availability) is read from
    the file, a malformed one is refused with its line, and an order hands it to the connector."""
    from noventiq_panel.services.subscriptions import ordering
    from tests import factories as f

    with_item = GOOD.replace("        price: 7.20\n", "        price: 7.20\n        catalog_item_id: CFQ7TTC0LH18:0001:CFQ7TTC0K5DM\n")
    bad = GOOD.replace("        price: 7.20\n", "        price: 7.20\n        catalog_item_id: \"CFQ7 TTC0; DROP\"\n")
    assert any(i.line == 13 and i.field == "catalog_item_id" and "up to three parts" in i.message
               for i in issues_of(bad, filename="c.yaml"))
    ci.import_catalog(session, with_item)
    plan = session.exec(select(Plan).where(Plan.code == "m365-1m")).one()
    assert plan.catalog_item_id == "CFQ7TTC0LH18:0001:CFQ7TTC0K5DM"
    assert session.exec(select(Plan).where(Plan.code == "m365-1y")).one().catalog_item_id == ""
    org = f.org(session)
    owner = f.user(session, org)
    f.topup(session, org, "10000000")
    f.usd_rate(session, date(2026, 1, 10))
    ordering.order(session, f.actor(owner, org), plan.id, 1, now=datetime(2026, 1, 10, 9, tzinfo=timezone.utc))
    [request] = vendor_double.requests
    assert request.catalog_item_id == "CFQ7TTC0LH18:0001:CFQ7TTC0K5DM" and request.plan_code == "m365-1m"
