"""Issue 17 review: the same vendor credit line delivered twice in spellings the importer reads
alike (NULL vs empty, letter case, timestamp with/without zone, another FOCUS version's columns)
is recorded and credited twice."""
from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import select

from noventiq_panel.models import LedgerEntry, UsageRecord
from noventiq_panel.services.usage import rating, usage_import
from tests.services.analytics_helpers import REF_A
from tests.services.usage_world import payg_sub, payg_world, set_rates, tashkent

BASE = {"ChargePeriodStart": "2025-01-10T00:00:00Z", "ChargePeriodEnd": "2025-01-10T01:00:00Z",
        "BilledCost": "-100", "BillingCurrency": "USD", "SubAccountId": REF_A, "ChargeCategory": "Credit",
        "ChargeDescription": "Promotional credit", "ConsumedQuantity": "NULL", "ChargeClass": "NULL"}


def focus(row: dict, extra: dict | None = None) -> str:
    row = {**row, **(extra or {})}
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
    w.writeheader()
    w.writerow(row)
    return out.getvalue()


VARIANTS = {
    "null_vs_empty_identity_column": {"ChargeClass": ""},
    "category_case": {"ChargeCategory": "CREDIT"},
    "timestamp_without_zone": {"ChargePeriodStart": "2025-01-10T00:00:00", "ChargePeriodEnd": "2025-01-10T01:00:00"},
    "timestamp_other_zone": {"ChargePeriodStart": "2025-01-10T05:00:00+05:00",
                             "ChargePeriodEnd": "2025-01-10T06:00:00+05:00"},
    "timestamp_space_no_seconds": {"ChargePeriodStart": "2025-01-10 00:00", "ChargePeriodEnd": "2025-01-10 01:00"},
    "focus_1_3_extra_columns": {"ServiceProviderName": "Microsoft", "HostProviderName": "Microsoft"},
    "focus_1_1_renamed_sku_meter": {"SkuMeter": "Promo"},
    "currency_case": {"BillingCurrency": "usd"},
    "account_case": {"SubAccountId": REF_A.upper()},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_credit_line_delivered_twice_is_credited_once(session, variant):
    org, plans, _ = payg_world(session, markup="10")
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    set_rates(session, date(2025, 1, 8), 5)
    first = dict(BASE)
    if variant == "focus_1_1_renamed_sku_meter":
        first["x_SkuMeterName"] = "Promo"  # the 1.0 export's name of the same column
    usage_import.import_stream(session, io.StringIO(focus(first)), source="export-1")
    rating.rate_usage(session, now=tashkent(2025, 1, 12))
    second = dict(BASE, **VARIANTS[variant])
    usage_import.import_stream(session, io.StringIO(focus(second)), source="export-2")
    rating.rate_usage(session, now=tashkent(2025, 1, 12))
    recorded = session.exec(select(func.sum(UsageRecord.cost)).where(UsageRecord.subscription_id == sub.id)).one()
    credited = session.exec(select(func.sum(LedgerEntry.amount)).where(LedgerEntry.subscription_id == sub.id)).one()
    assert recorded == Decimal("-100"), f"credit recorded as {recorded}; ledger credited {credited} UZS"


def test_a_revised_figure_in_another_spelling_is_recorded_as_the_difference(session):
    org, plans, _ = payg_world(session, markup="10")
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    usage_import.import_stream(session, io.StringIO(focus(BASE)), source="export-1")
    revised = dict(BASE, **VARIANTS["timestamp_other_zone"], ChargeCategory="credit", BilledCost="-100.5",
                   BillingCurrency="usd", ServiceProviderName="Microsoft")
    report = usage_import.import_stream(session, io.StringIO(focus(revised)), source="export-2")
    assert (report.imported, report.corrections) == (1, 1)
    costs = sorted(session.exec(select(UsageRecord.cost).where(UsageRecord.subscription_id == sub.id)).all())
    assert costs == [Decimal("-100"), Decimal("-0.5")]


def test_records_keyed_the_old_way_are_recognised_on_reimport(session, monkeypatch):
    """Records imported before the keys were normalised carry the legacy keys: re-importing the
    same file adds nothing, and a revised figure is recorded as the difference."""
    from noventiq_panel.services.usage import usage_formats

    org, plans, _ = payg_world(session, markup="10")
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    rows = dict(BASE, ChargeCategory="CREDIT", ChargePeriodStart="2025-01-10T05:00:00+05:00")
    with monkeypatch.context() as m:  # an import as the code before the change keyed it
        m.setattr(usage_formats, "_RowKey", lambda fmt, header, cols, dates: usage_formats.LegacyRowKey(fmt, header))
        usage_import.import_stream(session, io.StringIO(focus(rows)), source="old")
    old = session.exec(select(UsageRecord)).one()
    assert (old.source_key, old.line_key) != usage_formats.UsageCsv(io.StringIO(focus(rows))).key(
        next(csv.reader(io.StringIO(focus(rows).split("\n", 1)[1]))))
    again = usage_import.import_stream(session, io.StringIO(focus(rows)), source="old-again")
    assert (again.imported, again.duplicates) == (0, 1)
    revised = usage_import.import_stream(session, io.StringIO(focus(dict(rows, BilledCost="-90"))), source="rev")
    assert (revised.imported, revised.corrections) == (1, 1)
    assert session.exec(select(func.sum(UsageRecord.cost)).where(UsageRecord.subscription_id == sub.id)).one() \
        == Decimal("-90")
