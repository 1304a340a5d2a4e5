"""Import fidelity (issue 17): FOCUS 1.0-1.3 and Azure exports written by others — NULL cells in every
nullable column, every charge category, letter case — are imported to the sixth decimal per account,
tax skipped but reported, a re-import adds nothing; and a credit line is rated as a credit, once,
with the markup and the day's rate of the usage it offsets."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, UsageRecord
from noventiq_panel.services.reporting import iaas, reports
from noventiq_panel.services.usage import rating, usage_import
from noventiq_panel.services.usage.usage_formats import normalise_ref

from tests.services.analytics_helpers import DATA, REF_A, REF_B, rate, world
from tests.services.usage_world import (
    assert_entries_match_records,
    charge_of,
    payg_sub,
    payg_world,
    set_rates,
    tashkent,
    unrated,
)

MICRO = Decimal("0.000001")
VERSIONS = ("1_0", "1_1", "1_2", "1_3")
CATEGORIES = ("usage", "purchase", "credit", "adjustment", "tax")


def _null(value: str) -> bool:
    return value.strip().lower() in ("", "null")


def file_by_account(path, cost="BilledCost", account="SubAccountId", category="ChargeCategory",
                    ) -> dict[str, dict[str, Decimal]]:
    """The file's own totals per account and category (tax included), read with csv.DictReader and
    Decimal, independently of the importer."""
    out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            ref = "" if _null(row[account]) else normalise_ref(row[account])
            out[ref][row[category].strip().lower()] += Decimal(row[cost]).quantize(MICRO)
    return out


def billed(totals: dict[str, Decimal]) -> Decimal:
    return sum((v for k, v in totals.items() if k != "tax"), Decimal(0))


def recorded(session: Session, subscription_id: int) -> Decimal:
    return session.exec(select(func.coalesce(func.sum(UsageRecord.cost), 0))
                        .where(UsageRecord.subscription_id == subscription_id)).one()


def count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(UsageRecord)).one()


@pytest.mark.parametrize("version", VERSIONS)
def test_each_focus_version_with_null_cells_records_every_accounts_total_to_the_micro(session, version):
    w = world(session)
    path = DATA / f"focus_{version}_all_categories.csv"
    expected = file_by_account(path)
    report = usage_import.import_file(session, path)
    assert report.format == "focus" and report.bad == [] and report.bad_count == 0
    # 11 rows: 8 billed of the two known accounts, 2 tax rows (skipped), 1 of an unknown account
    assert (report.rows_read, report.imported, report.skipped, report.unmatched) == (11, 8, 2, 1)
    assert recorded(session, w.azure.id) == billed(expected[REF_A]) == Decimal("37.833951")
    assert recorded(session, w.azure_other.id) == billed(expected[REF_B]) == Decimal("5.600000")
    # a credit whose ConsumedQuantity is NULL is a credit, not a bad row (the case of the issue)
    credit = session.exec(select(UsageRecord).where(UsageRecord.cost == Decimal("-4.938271"))).one()
    assert credit.quantity == 0 and credit.subscription_id == w.azure.id and credit.resource_id == ""
    # the report: the file's totals per account and category next to what was recorded
    acc = {(a, c): v for (a, c, cur), v in report.accounts.items()}
    for ref in (REF_A, REF_B):
        for category, total in expected[ref].items():
            in_file, rec, new = acc[(ref, category.capitalize() if category != "adjustment" else "Adjustment")]
            assert in_file == total
            assert rec == new == (0 if category == "tax" else total)
    assert acc[("99999999-aaaa-4bbb-8ccc-000000000009", "Usage")] == [Decimal(1), 0, 0]
    assert acc[("", "Tax")][0] == Decimal("0.84")
    assert "Credit USD: file -4.938271, recorded -4.938271" in report.summary()

    before = count(session)
    again = usage_import.import_file(session, path)
    assert count(session) == before and again.imported == 0 and again.duplicates == 8
    assert recorded(session, w.azure.id) == billed(expected[REF_A])
    # what the panel holds for the file's rows is still the file's total; nothing new
    assert all(v[1] == (0 if c == "Tax" or a.startswith("9999") else v[0]) and v[2] == 0
               for (a, c, _), v in again.accounts.items())


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_charge_category_is_imported_and_tax_is_counted_not_imported(session, category):
    w = world(session)
    path = DATA / f"focus_category_{category}.csv"
    expected = file_by_account(path)
    report = usage_import.import_file(session, path)
    assert report.bad_count == 0 and report.unmatched == (1 if category == "usage" else 0)
    if category == "tax":
        assert report.imported == 0 and report.skipped == 2 and count(session) == 0
        assert sum(v[0] for v in report.accounts.values()) == Decimal("6.39")
        return
    assert report.skipped == 0
    assert recorded(session, w.azure.id) == billed(expected[REF_A])
    assert recorded(session, w.azure_other.id) == billed(expected.get(REF_B, {}))
    again = usage_import.import_file(session, path)
    assert again.imported == 0 and recorded(session, w.azure.id) == billed(expected[REF_A])


def test_credits_are_kept_as_credits_and_shown_apart_in_the_iaas_detail_and_its_report(session):
    w = world(session)
    rate(session, date(2025, 1, 1), "12000")  # no markup in this world
    path = DATA / "focus_1_2_all_categories.csv"
    usage_import.import_file(session, path)
    kept = {(r.cost, r.charge_category) for r in session.exec(
        select(UsageRecord).where(UsageRecord.subscription_id == w.azure.id)).all()}
    assert (Decimal("-4.938271"), "Credit") in kept and (Decimal("30.000001"), "Purchase") in kept
    assert (Decimal("-0.123457"), "Adjustment") in kept and (Decimal("0.050000"), "Adjustment") in kept
    d = iaas.iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1), w.azure.id)
    # the credit gives money back, and so do the day's adjustments of the same (unnamed) resource,
    # a rounding adjustment of -0.123457 and a late fee of 0.05, which the roll-up nets: credits
    assert d.credits == ((Decimal("-4.938271") - Decimal("0.073457")) * 12000).quantize(Decimal("0.01"))
    assert d.total == (billed(file_by_account(path)[REF_A]) * 12000).quantize(Decimal("0.01"))
    [credits] = [s for s in d.by_service if s.key == iaas.CREDITS]
    assert credits.total == d.credits and all(s.total > 0 for s in d.by_service if s is not credits)
    assert abs(sum(s.total for s in d.by_service) - d.total) <= Decimal("0.01")
    rows = list(csv.DictReader(io.StringIO(
        reports.iaas_report_csv(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1), w.azure.id)
        .decode("utf-8-sig"))))
    by_category = defaultdict(Decimal)
    for row in rows:
        by_category[row["charge_category"]] += Decimal(row["cost"])
    assert by_category == {"Usage": Decimal("12.845678"), "Purchase": Decimal("30.000001"),
                           "Credit": Decimal("-4.938271"), "Adjustment": Decimal("-0.073457")}


def test_azure_amortized_export_with_nulls_and_every_charge_type(session):
    w = world(session)
    path = DATA / "azure_amortized_nulls.csv"
    expected = file_by_account(path, cost="costInBillingCurrency", account="subscriptionId", category="chargeType")
    report = usage_import.import_file(session, path)
    assert report.format == "azure" and report.bad_count == 0 and report.imported == 7
    assert recorded(session, w.azure.id) == billed(expected[REF_A]) == Decimal("3.161111")
    assert recorded(session, w.azure_other.id) == billed(expected[REF_B]) == Decimal("2.999877")
    categories = {c for _, c, _ in report.accounts}
    assert categories == {"Usage", "UnusedReservation", "Refund", "Purchase", "RoundingAdjustment"}
    assert usage_import.import_file(session, path).imported == 0


def _focus(rows: list[dict], header=("ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "BillingCurrency",
                                     "SubAccountId", "ChargeCategory", "ChargeDescription", "ConsumedQuantity")) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({"ChargePeriodStart": "2025-01-10T00:00:00Z", "ChargePeriodEnd": "2025-01-10T01:00:00Z",
                    "BillingCurrency": "USD", "SubAccountId": REF_A, "ChargeCategory": "Usage",
                    "ConsumedQuantity": "NULL", **r})
    return out.getvalue()


def test_only_the_period_cost_currency_and_account_make_a_row_bad(session):
    w = world(session)
    text = _focus([
        {"BilledCost": "1.5", "ChargeDescription": "fine", "ChargeCategory": "NULL"},
        {"BilledCost": "NULL", "ChargeDescription": "no cost"},
        {"BilledCost": "1", "ChargeDescription": "no start", "ChargePeriodStart": "null"},
        {"BilledCost": "1", "ChargeDescription": "no currency", "BillingCurrency": "Null"},
        {"BilledCost": "1", "ChargeDescription": "no account", "SubAccountId": "NULL"},
        {"BilledCost": "-0.5", "ChargeDescription": "upper-case credit", "ChargeCategory": "CREDIT"},
        {"BilledCost": "2", "ChargeDescription": "tax, lower case", "ChargeCategory": "tax"},
    ])
    report = usage_import.import_stream(session, io.StringIO(text))
    assert [line for line, _ in report.bad] == [3, 4, 5, 6]
    assert [reason.split(":")[0] for _, reason in report.bad] == [
        "BilledCost", "ChargePeriodStart", "BillingCurrency", "no subscription id"]
    assert report.imported == 2 and report.skipped == 1
    assert recorded(session, w.azure.id) == Decimal("1")


def test_a_credit_is_rated_as_a_credit_with_the_usage_markup_and_the_days_rate(session):
    org, plans, _ = payg_world(session, markup="10")
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    set_rates(session, date(2025, 1, 8), 5)
    usage_import.import_file(session, DATA / "focus_category_usage.csv")  # 10 Jan 00:00 and 01:00 UTC
    usage_import.import_file(session, DATA / "focus_category_credit.csv")  # -4.938271 at 00:00
    summary = rating.rate_usage(session, now=tashkent(2025, 1, 12))
    [entry] = session.exec(select(LedgerEntry).where(
        LedgerEntry.subscription_id == sub.id, LedgerEntry.kind == "usage")).all()
    rate = rates_of(session, date(2025, 1, 10))
    # 10 Jan in Tashkent: 12.345678 + 0.5 of usage less the 4.938271 credit, netted in one entry of
    # the local day at the day's rate with markup
    assert entry.period_start == tashkent(2025, 1, 10)
    assert entry.amount == charge_of(Decimal("12.845678") - Decimal("4.938271"), Decimal(10), rate) < 0
    assert entry.fx_rate == rate and entry.meta["records"] == 3
    assert_entries_match_records(session, subs=[sub.id])
    assert summary.credited == {}
    # a credit alone in its period is a positive usage entry: it reduces what the customer owes
    text = _focus([{"BilledCost": "-3.000001", "ChargeCategory": "Credit", "ChargeDescription": "goodwill",
                    "ChargePeriodStart": "2025-01-11T03:00:00Z", "ChargePeriodEnd": "2025-01-11T04:00:00Z"}])
    usage_import.import_stream(session, io.StringIO(text))
    second = rating.rate_usage(session, now=tashkent(2025, 1, 12))
    credit = session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub.id)
                          .order_by(LedgerEntry.id.desc())).first()
    assert credit.amount == charge_of(Decimal("-3.000001"), Decimal(10), rates_of(session, date(2025, 1, 11))) > 0
    assert second.credited == {"UZS": credit.amount} and second.entries == 1
    assert rating.rate_usage(session, now=tashkent(2025, 1, 13)).entries == 0  # never credited twice
    assert_entries_match_records(session, subs=[sub.id])
    # the daily ledger check knows a usage entry above 0 is the vendor's credit, not a wrong sign
    from noventiq_panel.services.reporting import ledger_check
    assert [d.check for d in ledger_check.check(session, org.id, now=tashkent(2025, 1, 13)).differences
            if d.check == "sign"] == []


def rates_of(session: Session, day: date) -> Decimal:
    from noventiq_panel.services.core import rates
    return rates.usage_rate(session, "USD", "UZS", day)


# -- the invariant, with Hypothesis ---------------------------------------------------------------

_line = st.tuples(
    st.integers(min_value=0, max_value=5),  # hour of the day
    st.sampled_from(["Usage", "usage", "Credit", "CREDIT", "Adjustment", "Purchase"]),
    st.integers(min_value=1, max_value=50000),  # cents
)


_BASE_HEADER = ("ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "BillingCurrency", "SubAccountId",
                "ChargeCategory", "ChargeClass", "ChargeDescription", "ConsumedQuantity")
_VERSION_COLUMNS = {  # what a FOCUS version's export adds to the columns above (see usage_formats)
    "1.0": ("x_SkuMeterName", "x_InvoiceId"),
    "1.1": ("SkuMeter", "x_InvoiceId", "SubAccountType"),
    "1.2": ("SkuMeter", "InvoiceId", "PricingCurrency"),
    "1.3": ("SkuMeter", "InvoiceId", "PricingCurrency", "ServiceProviderName", "HostProviderName"),
}


def _instant(hour: int, rnd: random.Random) -> str:
    """2025-01-10 ``hour``:00 UTC in one of the spellings exports use."""
    return rnd.choice([f"2025-01-10T{hour:02d}:00:00Z", f"2025-01-10T{hour:02d}:00:00",
                       f"2025-01-10T{hour + 5:02d}:00:00+05:00", f"2025-01-10 {hour:02d}:00",
                       f"2025-01-10T{hour:02d}:00Z", f"2025-01-10T{hour:02d}:00:00+0000"])


def _spelled(lines: list[tuple], rnd: random.Random) -> str:
    """A FOCUS file of ``lines`` (hour, category, cost, ref, i) in a random version and spelling:
    NULL or empty cells, letter case of enumerations, currency and account, timestamp formats."""
    version = rnd.choice(sorted(_VERSION_COLUMNS))
    header = list(_BASE_HEADER + _VERSION_COLUMNS[version])
    rnd.shuffle(header)
    null = lambda: rnd.choice(["", "NULL", "null", "Null"])  # noqa: E731
    case = lambda text: rnd.choice([text, text.lower(), text.upper()])  # noqa: E731
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for hour, category, cost, ref, i in lines:
        row = {"ChargePeriodStart": _instant(hour, rnd), "ChargePeriodEnd": _instant(hour + 1, rnd),
               "BilledCost": rnd.choice([str(cost), f"{cost:.6f}"]), "BillingCurrency": case("USD"),
               "SubAccountId": case(ref), "ChargeCategory": case(category), "ChargeClass": null(),
               "ChargeDescription": f"line {i}", "ConsumedQuantity": null() if cost < 0 else "1",
               "x_SkuMeterName": f"meter {i % 3}", "SkuMeter": f"meter {i % 3}",
               "x_InvoiceId": rnd.choice(["", "INV-1"]), "InvoiceId": rnd.choice(["", "INV-1"]),
               "SubAccountType": null(), "PricingCurrency": case("USD"), "ServiceProviderName": "Microsoft",
               "HostProviderName": "Microsoft"}
        w.writerow({k: row[k] for k in header})
    return out.getvalue()


def test_mixes_of_usage_and_credits_delivered_again_in_any_spelling_are_charged_once(session):
    """Random mixes of usage and credit lines, split in files imported in random order, some
    delivered again — every delivery in a random FOCUS version and spelling (NULL or empty, letter
    case, timestamp formats, the version's columns) — rated between the imports or not: each line
    is recorded once, every record is charged once, the ledger never credits more than was charged
    (the cap: the subscription's usage entries never sum above 0), and the ledger plus what the cap
    kept back is minus the file's converted total (markup 10 %, 12 000 UZS a dollar: costs in cents
    convert exactly)."""
    org, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 5, base="12000.00", step="0")
    bystander = payg_sub(session, org, plans["azure-h"], vendor_ref=str(uuid.uuid4()))

    @settings(max_examples=15, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(lines=st.lists(_line, min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1))
    def check(lines, seed):
        rnd = random.Random(seed)
        ref = str(uuid.uuid4())
        sub = payg_sub(session, org, plans["azure-h"], vendor_ref=ref)
        rows = []
        for i, (hour, category, cents) in enumerate(lines):
            cost = Decimal(cents).scaleb(-2) * (-1 if category.lower() == "credit" else 1)
            rows.append((hour, category, cost, ref, i))
        rnd.shuffle(rows)
        cuts = sorted(rnd.sample(range(1, len(rows)), min(len(rows) - 1, rnd.randint(0, 2))))
        parts = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)])]
        order = list(range(len(parts))) + rnd.sample(range(len(parts)), rnd.randint(0, len(parts)))
        rnd.shuffle(order)
        uncredited = Decimal(0)
        for k in order:
            usage_import.import_stream(session, io.StringIO(_spelled(parts[k], rnd)))
            if rnd.random() < 0.5:
                uncredited += rating.rate_usage(session, now=tashkent(2025, 1, 12)).uncredited.get("UZS", 0)
            ledger_now = session.exec(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                                      .where(LedgerEntry.subscription_id == sub.id)).one()
            assert ledger_now <= 0  # the cap: never credited beyond what was charged
        for _ in range(2):  # a second run changes nothing
            uncredited += rating.rate_usage(session, now=tashkent(2025, 1, 12)).uncredited.get("UZS", 0)
        session.expire_all()
        file_total = sum(r[2] for r in rows)
        assert recorded(session, sub.id) == file_total
        assert session.exec(select(func.count()).select_from(UsageRecord)
                            .where(UsageRecord.subscription_id == sub.id)).one() == len(rows)  # each line once
        assert unrated(session, sub.id) == 0
        ledger_total = session.exec(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                                    .where(LedgerEntry.subscription_id == sub.id)).one()
        assert ledger_total <= 0
        assert ledger_total + uncredited == -(file_total * Decimal("1.1") * Decimal(12000))
        assert_entries_match_records(session, subs=[sub.id])
        # nothing reached another subscription
        assert session.exec(select(func.count()).select_from(LedgerEntry)
                            .where(LedgerEntry.subscription_id == bystander.id)).one() == 0

    check()
