"""Usage import (FOCUS and Azure cost exports): every column variant, BOM, bad rows with their line
numbers, unmatched rows, re-import adds nothing, totals in the database equal the file's."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from noventiq_panel.models import UsageDaily, UsageRecord
from noventiq_panel.services.usage import usage_import
from noventiq_panel.services.core.errors import InvalidInput

from tests.services.analytics_helpers import DATA, REF_A, REF_B, rate, utc, world


def db_totals(session, subscription_id=None) -> dict[str, Decimal]:
    q = select(UsageRecord.currency, func.sum(UsageRecord.cost)).group_by(UsageRecord.currency)
    if subscription_id is not None:
        q = q.where(UsageRecord.subscription_id == subscription_id)
    return {c: v for c, v in session.exec(q).all()}


def count(session) -> int:
    return session.exec(select(func.count()).select_from(UsageRecord)).one()


def file_sum(path, cost_col, cur_col, keep=lambda row: True) -> dict[str, Decimal]:
    """The file's own totals, read independently of the importer (csv.DictReader)."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            if keep(row):
                out[row[cur_col].upper()] += Decimal(row[cost_col]).quantize(Decimal("0.000001"))
    return dict(out)


def test_focus_file_imports_matched_rows_skips_tax_and_reports_unmatched(session):
    w = world(session)
    report = usage_import.import_file(session, DATA / "focus_1_0.csv")
    assert report.format == "focus"
    assert (report.rows_read, report.imported, report.skipped, report.unmatched, report.bad_count) == (7, 5, 1, 1, 0)
    assert report.unmatched_refs == {"99999999-aaaa-4bbb-8ccc-000000000009": 1}
    expected = file_sum(DATA / "focus_1_0.csv", "BilledCost", "BillingCurrency",
                        keep=lambda r: r["ChargeCategory"] != "Tax" and "99999999" not in r["SubAccountId"])
    assert report.totals == expected == db_totals(session) == {"USD": Decimal("21.095678")}
    # SubAccountId as "/subscriptions/<guid>", in upper case, and as a bare GUID all reach the same subscription.
    assert db_totals(session, w.azure.id) == {"USD": Decimal("14.095678")}
    assert db_totals(session, w.azure_other.id) == {"USD": Decimal("7.000000")}
    vm = session.exec(select(UsageRecord).where(UsageRecord.cost == Decimal("12.345678"))).one()
    assert (vm.org_id, vm.service, vm.resource_group, vm.resource_name, vm.quantity, vm.unit, vm.meter) == (
        w.org.id, "Virtual Machines", "rg-web", "vm-web-1", Decimal("24.000000"), "Hours", "D2s v3 VM hours")
    assert vm.period_start == utc(2025, 1, 10) and vm.period_end == utc(2025, 1, 11)
    storage = session.exec(select(UsageRecord).where(UsageRecord.cost == Decimal("0.5"))).one()
    assert storage.resource_group == "RG-Data" and storage.resource_name == "stdata1"  # from the resource id


def test_reimporting_the_same_file_adds_nothing(session):
    world(session)
    first = usage_import.import_file(session, DATA / "focus_1_0.csv")
    before = count(session)
    again = usage_import.import_file(session, DATA / "focus_1_0.csv")
    assert count(session) == before == first.imported
    assert again.imported == 0 and again.duplicates == first.imported
    assert again.totals == {}


def test_reimport_with_columns_in_another_order_and_small_batches_adds_nothing(session, tmp_path):
    world(session)
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    before = count(session)
    with open(DATA / "focus_1_0.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    order = list(reversed(range(len(rows[0]))))
    shuffled = tmp_path / "reordered.csv"
    with open(shuffled, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([rows[0][i] for i in order])
        for row in reversed(rows[1:]):  # other line numbers too
            writer.writerow([row[i] for i in order])
    report = usage_import.import_file(session, shuffled, batch_size=2)
    assert report.imported == 0 and report.duplicates == 5
    assert count(session) == before


def test_focus_with_bom_reordered_columns_naive_timestamps_and_more_than_six_decimals(session):
    w = world(session)
    report = usage_import.import_file(session, DATA / "focus_bom_reordered.csv")
    assert report.format == "focus" and report.imported == 2 and report.bad == []
    assert db_totals(session) == report.totals == {"USD": Decimal("10.123457")}  # 0.1234564 -> 0.123456
    rows = session.exec(select(UsageRecord).order_by(UsageRecord.cost)).all()
    assert rows[0].currency == "USD" and rows[0].period_start == utc(2025, 1, 20)
    assert rows[1].resource_group == "rg-web" and rows[1].subscription_id == w.azure.id


@pytest.mark.parametrize("name, total, n", [
    ("azure_mca.csv", {"USD": Decimal("5.475")}, 4),  # camelCase headers, costInBillingCurrency, 7-digit ISO
    ("azure_ea_legacy.csv", {"USD": Decimal("2.75")}, 2),  # MM/DD/YYYY, PreTaxCost, Currency, InstanceId
    ("azure_ea_new.csv", {"USD": Decimal("2.4")}, 2),  # Cost, BillingCurrencyCode, ResourceGroup
])
def test_azure_column_variants(session, name, total, n):
    world(session)
    report = usage_import.import_file(session, DATA / name)
    assert report.format == "azure"
    assert report.bad == [] and report.unmatched == 0
    assert report.imported == n
    assert db_totals(session) == report.totals == total


def test_azure_mca_rows_map_every_column(session):
    w = world(session)
    usage_import.import_file(session, DATA / "azure_mca.csv")
    st = session.exec(select(UsageRecord).where(UsageRecord.service == "Storage")).one()
    assert (st.subscription_id, st.resource_group, st.resource_name, st.meter, st.quantity, st.unit) == (
        w.azure.id, "rg-data", "stdata1", "Standard Page Blob / LRS Data Stored", Decimal("10.5"), "1 GB/Month")
    assert st.period_start == utc(2025, 1, 11) and st.period_end == utc(2025, 1, 12)
    bw = session.exec(select(UsageRecord).where(UsageRecord.service == "Bandwidth")).one()
    assert bw.subscription_id == w.azure_other.id and bw.cost == Decimal("0.15")


def test_azure_legacy_tries_subscription_guid_after_numeric_subscription_id(session):
    w = world(session)
    usage_import.import_file(session, DATA / "azure_ea_legacy.csv")
    rows = session.exec(select(UsageRecord).order_by(UsageRecord.period_start)).all()
    assert [r.subscription_id for r in rows] == [w.azure.id, w.azure.id]
    assert [r.period_start for r in rows] == [utc(2025, 1, 15), utc(2025, 1, 16)]
    assert rows[0].resource_group == "RG-WEB" and rows[0].quantity == Decimal("24")


def test_bad_rows_are_listed_with_line_numbers_and_good_rows_imported(session):
    world(session)
    report = usage_import.import_file(session, DATA / "azure_bad_rows.csv")
    assert report.rows_read == 8
    assert [line for line, _ in report.bad] == [3, 4, 8, 9, 10]
    reasons = dict(report.bad)
    assert "Date" in reasons[3] and "not a date" in reasons[3]
    assert "not a number" in reasons[4]
    assert "subscription" in reasons[8]
    assert "columns" in reasons[9]
    assert "currency" in reasons[10]
    assert report.bad_count == 5 and report.imported == 3
    assert db_totals(session) == report.totals == {"USD": Decimal("2.80")}
    multi = session.exec(select(UsageRecord).where(UsageRecord.service == "Storage",
                                                  UsageRecord.cost == Decimal("0.10"))).one()
    assert multi.meter == "LRS\nmulti-line name"


def test_semicolon_separated_and_unknown_formats(session):
    world(session)
    text = ("Date;MeterCategory;CostInBillingCurrency;BillingCurrency;SubscriptionId\n"
            f"2025-01-10;Storage;1,25;USD;{REF_A}\n")
    report = usage_import.import_stream(session, io.StringIO(text))
    assert report.imported == 1 and db_totals(session) == {"USD": Decimal("1.25")}
    with pytest.raises(InvalidInput) as err:
        usage_import.import_stream(session, io.StringIO("a,b,c\n1,2,3\n"))
    assert err.value.key == "error.usage_format_unknown"
    with pytest.raises(InvalidInput) as err:
        usage_import.import_stream(session, io.StringIO("ChargePeriodStart,BilledCost\n2025-01-01,1\n"), "focus")
    assert err.value.key == "error.usage_missing_columns"
    assert count(session) == 1


def test_forced_format_and_a_bom_in_a_text_stream(session):
    world(session)
    text = "\ufeffDate,MeterCategory,Cost,Currency,SubscriptionId\n01/31/2025,Storage,0.5,USD,%s\n" % REF_B
    report = usage_import.import_stream(session, io.StringIO(text), "azure")
    assert report.imported == 1 and report.totals == {"USD": Decimal("0.5")}


def test_import_refreshes_the_daily_rollup(session):
    w = world(session)
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    rows = session.exec(select(UsageDaily).where(UsageDaily.subscription_id == w.azure.id)).all()
    assert sum((r.cost for r in rows), Decimal(0)) == Decimal("14.095678")
    assert sum((r.cost_org for r in rows), Decimal(0)) == Decimal("14.095678") * 12000
    # Records of 10 Jan 00:00 UTC are 10 Jan 05:00 in Tashkent: the local day is the 10th.
    assert {r.day for r in rows} == {date(2025, 1, 10), date(2025, 1, 11)}
    again = usage_import.import_file(session, DATA / "focus_1_0.csv")
    assert again.imported == 0
    assert len(session.exec(select(UsageDaily).where(UsageDaily.subscription_id == w.azure.id)).all()) == len(rows)


def test_cli_import_twice_and_export(sqlite_engine, tmp_path):
    from click.testing import CliRunner
    from sqlmodel import Session

    from noventiq_panel.cli import main

    with Session(sqlite_engine) as s:
        w = world(s)
        rate(s, date(2025, 1, 1))
        org_id = w.org.id
    runner = CliRunner()
    first = runner.invoke(main, ["usage", "import", str(DATA / "azure_bad_rows.csv"), "--format", "azure"])
    assert first.exit_code == 0, first.output
    assert "imported 3" in first.output and "line 3: Date: not a date" in first.output
    again = runner.invoke(main, ["usage", "import", str(DATA / "azure_bad_rows.csv")])
    assert "imported 0" in again.output and "duplicates 3" in again.output
    out = tmp_path / "export.csv"
    rated = runner.invoke(main, ["jobs", "run", "rating", "--now", "2025-02-01T08:00+05:00"])  # only rated usage
    assert rated.exit_code == 0, rated.output  # is exported (FOCUS BilledCost = what was charged)
    done = runner.invoke(main, ["usage", "export", "--org", str(org_id), "--from", "2025-01-01", "--to",
                                "2025-01-31", "-o", str(out)])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("2.80") * 12000
    bad = runner.invoke(main, ["usage", "import", str(DATA / "azure_bad_rows.csv"), "--format", "focus"])
    assert bad.exit_code != 0 and "missing columns" in bad.output
    rebuilt = runner.invoke(main, ["usage", "rollup", "--org", str(org_id)])
    assert rebuilt.exit_code == 0 and "roll-up rows written" in rebuilt.output


def test_imported_times_compare_exactly_with_period_bounds(session):
    # The bulk insert must store datetimes exactly as the ORM does (on SQLite: fixed-width text),
    # or a bound equal to a record's start would miss it.
    world(session)
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    q = select(func.count()).select_from(UsageRecord).where(UsageRecord.period_start >= utc(2025, 1, 10),
                                                            UsageRecord.period_start < utc(2025, 1, 11))
    assert session.exec(q).one() == 3
    q = select(func.count()).select_from(UsageRecord).where(UsageRecord.period_end <= utc(2025, 1, 11))
    assert session.exec(q).one() == 3
    assert session.exec(select(UsageRecord).where(UsageRecord.period_start == utc(2025, 1, 11))).all()


def test_over_long_values_are_cut_to_the_column_and_gzip_files_read(session, tmp_path):
    import gzip

    w = world(session)
    long_id = f"/subscriptions/{REF_A}/resourceGroups/rg-long/providers/x/" + "r" * 600
    text = ("Date,MeterCategory,MeterName,ResourceId,Cost,Currency,SubscriptionId\n"
            f"2025-01-10,{'S' * 200},{'M' * 300},{long_id},1.5,USD,{REF_A}\n")
    path = tmp_path / "export.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    report = usage_import.import_file(session, path)
    assert report.imported == 1
    rec = session.exec(select(UsageRecord)).one()
    assert (len(rec.service), len(rec.meter), len(rec.resource_id)) == (128, 255, 500)
    assert rec.resource_group == "rg-long" and rec.subscription_id == w.azure.id


# --- corrections: the vendor sends a line again with revised figures ---------------------------

def _rewrite(tmp_path, name: str, change) -> "Path":
    """A copy of focus_1_0.csv with ``change(header, rows)`` applied in place (rows are dicts)."""
    with open(DATA / "focus_1_0.csv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames), list(reader)
    change(header, rows)
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _vm_day(row) -> bool:
    return row["BilledCost"] == "12.345678"


def test_a_corrected_line_is_recorded_as_the_difference_once(session, tmp_path):
    w = world(session)
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    before = db_totals(session, w.azure.id)["USD"]

    def revise(_header, rows):
        for row in rows:
            if _vm_day(row):  # a late meter reading: one more hour, a higher cost
                row.update(BilledCost="13.000000", EffectiveCost="13.000000", ListCost="13.50",
                           ConsumedQuantity="25", PricingQuantity="25")

    revised = _rewrite(tmp_path, "revised.csv", revise)
    report = usage_import.import_file(session, revised)
    assert (report.imported, report.corrections, report.duplicates) == (1, 1, 4)
    assert db_totals(session, w.azure.id)["USD"] == before + Decimal("0.654322")
    delta = session.exec(select(UsageRecord).order_by(UsageRecord.id.desc())).first()
    assert (delta.cost, delta.quantity, delta.period_start) == (Decimal("0.654322"), Decimal("1"), utc(2025, 1, 10))
    # the records of the line add up to its latest figures, in the roll-up too
    vm = session.exec(select(func.sum(UsageRecord.cost)).where(UsageRecord.line_key == delta.line_key)).one()
    assert vm == Decimal("13.000000")
    rolled = session.exec(select(func.sum(UsageDaily.cost)).where(UsageDaily.subscription_id == w.azure.id)).one()
    assert rolled == db_totals(session, w.azure.id)["USD"]
    # the same revised file again adds nothing; the first version again is a duplicate too
    for path in (revised, DATA / "focus_1_0.csv"):
        again = usage_import.import_file(session, path)
        assert (again.imported, again.corrections) == (0, 0)
    # revised back down: the difference is negative
    down = _rewrite(tmp_path, "down.csv", lambda _h, rows: [r.update(BilledCost="12.000000", ConsumedQuantity="24")
                                                             for r in rows if _vm_day(r)])
    report = usage_import.import_file(session, down)
    assert (report.imported, report.corrections) == (1, 1)
    assert session.exec(select(func.sum(UsageRecord.cost)).where(UsageRecord.line_key == delta.line_key)).one() \
        == Decimal("12.000000")


def test_an_invoice_id_filled_in_later_changes_no_figure(session, tmp_path):
    w = world(session)
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    before = db_totals(session)

    def invoiced(header, rows):
        for row in rows:
            row["InvoiceId"] = "G012345678"
        header.append("InvoiceId")

    report = usage_import.import_file(session, _rewrite(tmp_path, "invoiced.csv", invoiced))
    # new content, but the same lines with the same figures: nothing to record
    assert (report.imported, report.corrections, report.duplicates) == (0, 0, 5)
    assert db_totals(session) == before and count(session) == 5
    assert db_totals(session, w.azure.id) == {"USD": Decimal("14.095678")}


def test_a_line_in_parts_adds_up_and_is_corrected_as_a_whole(session, tmp_path):
    w = world(session)

    def tiers(costs):
        def change(_header, rows):
            vm = next(r for r in rows if _vm_day(r))
            rows[:] = [dict(vm, BilledCost=c, EffectiveCost=c, ListCost=c, ConsumedQuantity="12") for c in costs]
        return change

    first = usage_import.import_file(session, _rewrite(tmp_path, "tiers.csv", tiers(["10.000000", "2.000000"])),
                                     batch_size=1)
    assert (first.imported, first.corrections) == (2, 0)
    assert db_totals(session, w.azure.id) == {"USD": Decimal("12.000000")}
    last_id = session.exec(select(func.max(UsageRecord.id))).one()
    revised = usage_import.import_file(session, _rewrite(tmp_path, "tiers2.csv", tiers(["10.500000", "2.250000"])),
                                       batch_size=1)  # its two parts in two transactions
    # the line is compared as a whole: one record of its difference, not one per part
    assert (revised.imported, revised.corrections, revised.duplicates) == (1, 1, 1)
    assert db_totals(session, w.azure.id) == {"USD": Decimal("12.750000")}
    assert session.exec(select(UsageRecord.cost).where(UsageRecord.id > last_id)).all() == [Decimal("0.75")]


def _tiered(tmp_path, name: str, costs: list[str]) -> "Path":
    """focus_1_0.csv with the VM line delivered as tier rows of ``costs`` (12 hours each, the line's
    identity alike): the first tier where the line was, the others at the end of the file, so that
    with batch_size=1 the tiers are in different transactions with other lines between them."""
    def change(_header, rows):
        i = next(k for k, r in enumerate(rows) if _vm_day(r))
        tiers = [dict(rows[i], BilledCost=c, EffectiveCost=c, ListCost=c, ConsumedQuantity="12",
                      PricingQuantity="12") for c in costs]
        rows[i:i + 1] = tiers[:1]
        rows.extend(tiers[1:])
    return _rewrite(tmp_path, name, change)


@pytest.mark.parametrize("batch_size", [5000, 1])
def test_a_tiered_line_revised_in_one_tier_is_corrected_by_that_tiers_difference_alone(session, tmp_path, monkeypatch,
                                                                                   batch_size):
    """A line split in two tier rows: re-delivered unchanged it adds nothing; re-delivered with one
    tier changed it is corrected by exactly that tier's difference, once — not by one row against
    the whole line's earlier total (a spurious credit of the other tier, charged again later) —
    and the line's records never stand at a figure no delivery stated, even between two batches
    (a rating run may come between them)."""
    from noventiq_panel.models import LedgerEntry
    from noventiq_panel.services.usage import rating

    w = world(session)
    for day in range(8, 14):
        rate(session, date(2025, 1, day), "12000")
    first = usage_import.import_file(session, _tiered(tmp_path, "t0.csv", ["10.000000", "2.000000"]),
                                     batch_size=batch_size)
    assert (first.imported, first.corrections) == (6, 0)
    rating.rate_usage(session, now=utc(2025, 1, 20))
    line = session.exec(select(UsageRecord.line_key).where(UsageRecord.cost == Decimal("10"))).one()

    def line_total():
        session.expire_all()
        return session.exec(select(func.sum(UsageRecord.cost)).where(UsageRecord.line_key == line)).one()

    seen = []
    write_batch = usage_import._write_batch

    def watched(*args, **kwargs):
        write_batch(*args, **kwargs)
        seen.append(line_total())

    monkeypatch.setattr(usage_import, "_write_batch", watched)
    records = count(session)
    same = usage_import.import_file(session, _tiered(tmp_path, "t1.csv", ["10.000000", "2.000000"]),
                                    batch_size=batch_size)
    assert (same.imported, same.corrections, same.duplicates) == (0, 0, 6) and count(session) == records

    # the second tier revised (the unchanged tier comes first), then the first (it comes last)
    for name, costs, total, diff in (("t2.csv", ["10.000000", "2.250000"], "12.25", "0.25"),
                                     ("t3.csv", ["10.500000", "2.250000"], "12.75", "0.5")):
        last_id = session.exec(select(func.max(UsageRecord.id))).one()
        revised = usage_import.import_file(session, _tiered(tmp_path, name, costs), batch_size=batch_size)
        assert (revised.imported, revised.corrections) == (1, 1)
        [delta] = session.exec(select(UsageRecord).where(UsageRecord.id > last_id)).all()
        assert (delta.cost, delta.quantity, delta.line_key, delta.subscription_id) == (
            Decimal(diff), Decimal(0), line, w.azure.id)
        assert line_total() == Decimal(total)
        entries = rating.rate_usage(session, now=utc(2025, 1, 21))
        assert entries.charged == {"UZS": Decimal(diff) * 12000} and entries.credited == {}
    assert set(seen) <= {Decimal(12), Decimal("12.25"), Decimal("12.75")}, seen
    again = usage_import.import_file(session, _tiered(tmp_path, "t4.csv", ["10.500000", "2.250000"]),
                                     batch_size=batch_size)
    assert (again.imported, again.corrections) == (0, 0)
    assert session.exec(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.amount > 0)).one() == 0


def test_a_revised_tier_repeated_in_the_delivery_counts_once(session, tmp_path):
    """The revised tier row twice in the file, in different batches: the line's total counts it once."""
    w = world(session)
    usage_import.import_file(session, _tiered(tmp_path, "t0.csv", ["10.000000", "2.000000"]))
    revised = usage_import.import_file(session, _tiered(tmp_path, "t1.csv", ["10.000000", "2.250000", "2.250000"]),
                                       batch_size=1)
    assert (revised.imported, revised.corrections) == (1, 1)
    assert db_totals(session, w.azure.id) == {"USD": Decimal("14.095678") - Decimal("12.345678") + Decimal("12.25")}
    assert revised.rows_read == revised.imported + revised.duplicates + revised.unmatched + revised.skipped


def test_rating_charges_a_correction_once(session, tmp_path):
    from noventiq_panel.models import LedgerEntry
    from noventiq_panel.services.usage import rating

    w = world(session)
    for day in range(8, 14):
        rate(session, date(2025, 1, day), "12000")
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    rating.rate_usage(session, now=utc(2025, 1, 20))
    revised = _rewrite(tmp_path, "revised.csv", lambda _h, rows: [r.update(BilledCost="13.000000")
                                                                   for r in rows if _vm_day(r)])
    usage_import.import_file(session, revised)
    rating.rate_usage(session, now=utc(2025, 1, 21))
    rating.rate_usage(session, now=utc(2025, 1, 21))  # nothing left the second time
    charged = session.exec(select(func.sum(LedgerEntry.source_amount))
                           .where(LedgerEntry.kind == "usage", LedgerEntry.subscription_id == w.azure.id)).one()
    assert charged == db_totals(session, w.azure.id)["USD"] == Decimal("14.750000")  # markup 0


def test_two_revisions_imported_at_once_leave_the_line_at_one_of_them(engine, tmp_path, monkeypatch):
    import time

    from sqlmodel import Session

    from tests.concurrency import at_once

    compare = usage_import._as_corrections

    def slow_compare(*args):  # widen the window between reading the line's figures and writing
        rows = compare(*args)
        time.sleep(0.3)
        return rows

    monkeypatch.setattr(usage_import, "_as_corrections", slow_compare)
    with Session(engine, expire_on_commit=False) as s:
        w = world(s)
        usage_import.import_file(s, DATA / "focus_1_0.csv")
        base = db_totals(s, w.azure.id)["USD"] - Decimal("12.345678")
    files = [_rewrite(tmp_path, f"rev{c}.csv", lambda _h, rows, c=c: [r.update(BilledCost=c)
                                                                      for r in rows if _vm_day(r)])
             for c in ("13.000000", "12.500000")]

    def importer(path, n):
        def run():
            with Session(engine, expire_on_commit=False) as s:
                return usage_import.import_file(s, path, now=utc(2025, 2, 1, 0, 0, n))
        return run

    reports = at_once(*(importer(p, n) for n, p in enumerate(files)))
    assert sorted(r.corrections for r in reports) == [1, 1]
    with Session(engine) as s:
        total = db_totals(s, w.azure.id)["USD"]
        assert total in (base + Decimal("13.000000"), base + Decimal("12.500000"))
        line = s.exec(select(UsageRecord).where(UsageRecord.cost == Decimal("12.345678"))).one().line_key
        assert s.exec(select(func.count()).select_from(UsageRecord).where(UsageRecord.line_key == line)).one() == 3
