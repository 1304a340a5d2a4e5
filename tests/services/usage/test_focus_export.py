"""FOCUS export: FOCUS 1.2 columns, the customer's prices in the billing currency as charged, only
the organisation's rated usage, and it reads back as FOCUS."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from noventiq_panel.models import Subscription
from noventiq_panel.services.core.errors import Forbidden
from noventiq_panel.services.usage import focus_export, rating, usage_formats, usage_import

from tests.services.analytics_helpers import DATA, REF_A, rate, world

RATED_AT = datetime(2025, 2, 1, 12, tzinfo=timezone.utc)


def _rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_export_focus_round_trips_the_customers_charged_costs(session):
    w = world(session, markup="10")
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "azure_mca.csv")
    rating.rate_usage(session, now=RATED_AT)
    data = focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1))
    rows = _rows(data)
    assert len(rows) == 3  # only this organisation's
    assert tuple(rows[0].keys()) == focus_export.FOCUS_EXPORT_COLUMNS
    assert {r["SubAccountId"] for r in rows} == {REF_A}
    assert {r["BillingCurrency"] for r in rows} == {"UZS"}
    # 5.325 USD of usage, +10 % markup, at 12 000: the customer's price, not the vendor's cost.
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("5.325") * Decimal("1.1") * 12000
    assert all(r["BilledCost"] == r["EffectiveCost"] == r["ListCost"] == r["ContractedCost"] for r in rows)
    assert sum(Decimal(r["x_PricingCost"]) for r in rows) == Decimal("5.8575")
    # FOCUS 1.2: the account id is a string, the period is the organisation's month, usage is usage-based
    assert {r["BillingAccountId"] for r in rows} == {f"org-{w.org.id}"}
    assert {(r["BillingPeriodStart"], r["BillingPeriodEnd"]) for r in rows} == {
        ("2024-12-31T19:00:00Z", "2025-01-31T19:00:00Z")}
    assert {(r["ChargeCategory"], r["ChargeClass"], r["ChargeFrequency"]) for r in rows} == {("Usage", "", "Usage-Based")}
    assert all(r["ServiceCategory"] and r["ServiceSubcategory"] and r["PricingUnit"] for r in rows)
    assert [r["PricingQuantity"] for r in rows] == [r["ConsumedQuantity"] for r in rows]
    # Round trip: the export reads back as FOCUS.
    assert usage_formats.detect_format(rows[0].keys()) == "focus"


def test_each_records_charge_category_is_exported_as_focus_allows_it(session):
    w = world(session)
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "focus_1_2_all_categories.csv")
    usage_import.import_file(session, DATA / "azure_amortized_nulls.csv")  # Azure's Refund and others
    rating.rate_usage(session, now=RATED_AT)
    rows = _rows(focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1)))
    by = {(r["ChargeDescription"], r["BilledCost"]): r for r in rows}
    credit = next(r for (d, _), r in by.items() if d == "Promotional credit 1_2")
    assert (credit["ChargeCategory"], credit["ChargeFrequency"], credit["ConsumedQuantity"],
            credit["ConsumedUnit"]) == ("Credit", "One-Time", "", "")
    assert Decimal(credit["BilledCost"]) < 0
    purchase = next(r for (d, _), r in by.items() if d == "Reserved instance 1_2")
    assert (purchase["ChargeCategory"], purchase["ChargeFrequency"]) == ("Purchase", "One-Time")
    assert {r["ChargeCategory"] for r in rows} <= {"Usage", "Purchase", "Credit", "Adjustment"}
    assert {"Usage", "Purchase", "Credit", "Adjustment"} <= {r["ChargeCategory"] for r in rows}
    for r in rows:  # FOCUS: only usage is consumed, and only usage is usage-based
        usage = r["ChargeCategory"] == "Usage"
        assert (r["ChargeFrequency"] == "Usage-Based") == usage
        assert usage or r["ConsumedQuantity"] == r["ConsumedUnit"] == ""
    assert focus_export.focus_charge("Refund") == "Credit" and focus_export.focus_charge("Marketplace") == "Adjustment"


def test_usage_not_rated_yet_is_left_out_and_counted_never_exported_without_billed_cost(session):
    w = world(session)
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "azure_mca.csv")
    assert focus_export.unrated_count(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1)) == 3
    assert _rows(focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1))) == []
    rating.rate_usage(session, now=RATED_AT)
    rows = _rows(focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1)))
    assert len(rows) == 3 and all(r["BilledCost"] for r in rows)
    assert focus_export.unrated_count(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1)) == 0


def test_usage_that_rating_did_not_bill_is_exported_at_zero_billed_cost(session):
    w = world(session)
    trial = session.get(Subscription, w.azure.id)
    trial.is_trial, trial.trial_ends_at = True, datetime(2025, 3, 1, tzinfo=timezone.utc)
    session.add(trial)
    session.commit()
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "azure_mca.csv")
    rating.rate_usage(session, now=RATED_AT)
    rows = _rows(focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1)))
    assert len(rows) == 3
    assert {r["BilledCost"] for r in rows} == {"0"} and {r["EffectiveCost"] for r in rows} == {"0"}
    assert sum(Decimal(r["ListCost"]) for r in rows) == Decimal("5.325") * 12000  # the plan's price, waived


@pytest.mark.parametrize("unit, expected", [
    ("1 Hour", "Hours"), ("1 GB", "GB"), ("1 GB/Month", "GB/Month"), ("10K", "10000 Units"),
    ("100 Hours", "100 Hours"), ("1 Database Units (DU)", "Database Units DU"), ("", "Units"), ("1/Month", "Units"),
])
def test_pricing_unit_follows_the_focus_unit_format(unit, expected):
    assert focus_export.pricing_unit(unit) == expected
    assert focus_export.UNIT_FORMAT.match(expected)


def test_an_unknown_meter_category_is_other():
    assert focus_export.service_category("Quantum Teleport") == ("Other", "Other (Other)")
    assert focus_export.service_category("virtual machines") == ("Compute", "Virtual Machines")


def test_metadata_names_the_focus_version(session):
    w = world(session)
    meta = focus_export.focus_metadata(session, w.actor())
    assert meta["Schema"]["FocusVersion"] == "1.2"
    assert [c["ColumnName"] for c in meta["Schema"]["ColumnDefinition"]] == list(focus_export.FOCUS_EXPORT_COLUMNS)


def test_export_checks_access(session):
    w = world(session)
    with pytest.raises(Forbidden):
        focus_export.export_focus(session, w.actor(w.stranger), date(2025, 1, 1), date(2025, 2, 1))
    with pytest.raises(Forbidden):
        focus_export.focus_metadata(session, w.actor(w.stranger))
