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


# -- one day delivered as FOCUS 1.0 and again as a later version (review of issue 17) -----------

# What each later FOCUS version adds to a 1.0 export's columns (usage_formats' docstring, the spec's
# column pages), filled as an exporter of that version fills them: the same line, more columns.
_LATER_COLUMNS = {
    "1.1": {"BillingAccountType": "Billing Profile", "SubAccountType": "Subscription",
            "CapacityReservationId": "/providers/microsoft.compute/capacityreservationgroups/crg-1/capacityreservations/cr-1",
            "CapacityReservationStatus": "Used", "CommitmentDiscountQuantity": "1", "CommitmentDiscountUnit": "Hours",
            "ServiceSubcategory": "Virtual Machines", "SkuMeter": "D2s v3", "SkuPriceDetails": '{"CoreCount": 2}'},
    "1.2": {"PricingCurrency": "USD", "PricingCurrencyContractedUnitPrice": "0.5",
            "PricingCurrencyEffectiveCost": "0.5", "PricingCurrencyListUnitPrice": "0.5"},
    "1.3": {"ServiceProviderName": "Microsoft", "HostProviderName": "Microsoft", "AllocatedMethodId": "even",
            "AllocatedResourceId": "/r/1", "AllocatedTags": "{}", "ContractApplied": "{}"},
}


def _focus_day(version: str, revise: dict[str, str] | None = None) -> str:
    """The rows of ``focus_1_0_all_categories.csv`` as an export of FOCUS ``version`` writes them;
    ``revise``: ChargeDescription -> a new BilledCost."""
    from tests.services.analytics_helpers import DATA

    with open(DATA / "focus_1_0_all_categories.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    added: dict[str, str] = {}
    for v in ("1.1", "1.2", "1.3"):
        if v <= version:
            added.update(_LATER_COLUMNS[v])
    out_rows = []
    for row in rows:
        row = dict(row)
        if version >= "1.1":
            row.pop("x_SkuMeterName")  # became SkuMeter
        if version >= "1.2":
            row["InvoiceId"] = row.pop("x_InvoiceId")  # became InvoiceId
        row.update(added)
        for description, cost in (revise or {}).items():
            if row["ChargeDescription"] == description:
                row["BilledCost"] = cost
        out_rows.append(row)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(out_rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(out_rows)
    return out.getvalue()


def _ledger(session) -> list[tuple]:
    session.expire_all()
    return [(e.idempotency_key, e.amount) for e in session.exec(select(LedgerEntry).order_by(LedgerEntry.id)).all()]


def _records(session) -> list[tuple]:
    return [(r.id, r.subscription_id, r.cost) for r in session.exec(select(UsageRecord).order_by(UsageRecord.id)).all()]


@pytest.mark.parametrize("first,second", [("1.0", v) for v in ("1.1", "1.2", "1.3")]
                         + [(v, "1.0") for v in ("1.1", "1.2", "1.3")])
def test_a_day_delivered_in_one_focus_version_and_again_in_another_is_charged_once(session, first, second):
    """The line's identity holds only columns every supported FOCUS version has: ServiceSubcategory,
    CapacityReservationId, SkuMeter (1.1+) filled in one delivery and absent from the other do not
    make the same line a new one. A revised figure in the other version is the difference, once."""
    from tests.services.analytics_helpers import REF_B

    org, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 5)
    sub_a = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    sub_b = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_B)
    one = usage_import.import_stream(session, io.StringIO(_focus_day(first)), source=f"focus-{first}")
    assert one.imported == 8
    rating.rate_usage(session, now=tashkent(2025, 1, 12))
    ledger, records = _ledger(session), _records(session)
    assert ledger and len(records) == 8

    again = usage_import.import_stream(session, io.StringIO(_focus_day(second)), source=f"focus-{second}")
    assert (again.imported, again.corrections, again.duplicates) == (0, 0, 8)
    assert rating.rate_usage(session, now=tashkent(2025, 1, 13)).entries == 0
    assert _records(session) == records and _ledger(session) == ledger  # no new charge

    vm = "D2s v3 VM hours 1_0"
    revised = usage_import.import_stream(session, io.StringIO(_focus_day(second, {vm: "13.000000"})))
    assert (revised.imported, revised.corrections) == (1, 1)
    [delta] = [r for r in session.exec(select(UsageRecord)).all() if r.id > records[-1][0]]
    assert (delta.cost, delta.subscription_id) == (Decimal("0.654322"), sub_a.id)
    assert sub_b.id not in {r.subscription_id for r in session.exec(select(UsageRecord)).all() if r.id > records[-1][0]}


def test_records_keyed_with_the_1_1_columns_are_recognised_on_reimport(session, monkeypatch):
    """Records of a FOCUS 1.1+ file imported while ServiceSubcategory, CapacityReservationId and
    SkuMeter were part of a line's identity carry the keys of then: the same file again adds
    nothing, and a revised figure is the difference."""
    from noventiq_panel.services.usage import usage_formats

    org, plans, _ = payg_world(session, markup="10")
    payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    with monkeypatch.context() as m:  # an import as the code before the change keyed it
        m.setattr(usage_formats, "_RowKey", usage_formats._EarlierRowKey)
        assert usage_import.import_stream(session, io.StringIO(_focus_day("1.2")), source="old").imported == 6
    records = _records(session)
    vm = session.exec(select(UsageRecord).where(UsageRecord.cost == Decimal("12.345678"))).one()
    again = usage_import.import_stream(session, io.StringIO(_focus_day("1.2")), source="again")
    assert (again.imported, again.duplicates) == (0, 6) and _records(session) == records
    revised = usage_import.import_stream(session, io.StringIO(_focus_day("1.2", {"D2s v3 VM hours 1_0": "13"})))
    assert (revised.imported, revised.corrections) == (1, 1)
    delta = session.exec(select(UsageRecord).order_by(UsageRecord.id.desc())).first()
    assert delta.cost == Decimal("0.654322") and delta.subscription_id == vm.subscription_id
