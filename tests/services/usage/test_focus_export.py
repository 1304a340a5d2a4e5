"""FOCUS export: the customer's prices in the billing currency, only the organisation's usage, and
it reads back as FOCUS."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from noventiq_panel.services.core.errors import Forbidden
from noventiq_panel.services.usage import focus_export, usage_formats, usage_import

from tests.services.analytics_helpers import DATA, REF_A, rate, world


def test_export_focus_round_trips_the_customers_costs(session):
    w = world(session, markup="10")
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "azure_mca.csv")
    data = focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1))
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert len(rows) == 3  # only this organisation's
    assert {r["SubAccountId"] for r in rows} == {REF_A}
    assert {r["BillingCurrency"] for r in rows} == {"UZS"}
    # 5.325 USD of usage, +10 % markup, at 12 000: the customer's price, not the vendor's cost.
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("5.325") * Decimal("1.1") * 12000
    assert sum(Decimal(r["x_PricingCost"]) for r in rows) == Decimal("5.8575")
    # Round trip: the export reads back as FOCUS.
    assert usage_formats.detect_format(rows[0].keys()) == "focus"


def test_export_checks_access(session):
    w = world(session)
    with pytest.raises(Forbidden):
        focus_export.export_focus(session, w.actor(w.stranger), date(2025, 1, 1), date(2025, 2, 1))
