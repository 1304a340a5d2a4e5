"""Issue 17 review: more credit sequences."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import select

from tests import factories as f
from noventiq_panel.models import LedgerEntry, UsageRecord
from noventiq_panel.services.core import ledger
from noventiq_panel.services.reporting import ledger_check
from noventiq_panel.services.usage import rating, usage_import
from tests.services.analytics_helpers import REF_A
from tests.services.usage_world import payg_sub, payg_world, set_rates, tashkent


def focus(*rows: dict) -> io.StringIO:
    base = {"ChargePeriodStart": "2025-01-10T00:00:00Z", "ChargePeriodEnd": "2025-01-10T01:00:00Z",
            "BilledCost": "0", "BillingCurrency": "USD", "SubAccountId": REF_A, "ChargeCategory": "Usage",
            "ChargeDescription": "x", "ConsumedQuantity": "NULL"}
    out = io.StringIO()
    names = list(dict.fromkeys([*base, *(k for r in rows for k in r)]))  # a row may add a column
    w = csv.DictWriter(out, fieldnames=names, restval="", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**base, **r})
    out.seek(0)
    return out


def sub_total(session, sub_id):
    return session.exec(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                        .where(LedgerEntry.subscription_id == sub_id)).one()


def test_a_revised_credit_after_the_account_moved_stays_the_difference_on_the_first_subscription(session):
    """Org A's subscription with Azure account X is cancelled; X is now org B's subscription (a
    transfer, or A re-subscribing). The vendor's month-to-date export revises a credit of a day that
    A was charged for: the revision lands on B's subscription in full, not as the difference."""
    org_a, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 10)
    sub_a = payg_sub(session, org_a, plans["azure-h"], vendor_ref=REF_A)
    credit = {"BilledCost": "-100", "ChargeCategory": "Credit", "ChargeDescription": "SLA credit"}
    usage_import.import_stream(session, focus({"BilledCost": "300"}, credit), now=datetime(2025, 1, 11, tzinfo=timezone.utc))
    rating.rate_usage(session, now=tashkent(2025, 1, 11))
    sub_a.status, sub_a.cancelled_at = "cancelled", tashkent(2025, 1, 12)
    session.add(sub_a)
    org_b, _, _ = payg_world(session, markup="10")
    sub_b = payg_sub(session, org_b, plans["azure-h"], vendor_ref=REF_A)
    # the next month-to-date export: the same lines, the credit revised from -100 to -101
    usage_import.import_stream(session, focus({"BilledCost": "300"}, {**credit, "BilledCost": "-101"}),
                               now=datetime(2025, 1, 13, tzinfo=timezone.utc))
    rating.rate_usage(session, now=tashkent(2025, 1, 13))
    recorded = session.exec(select(func.sum(UsageRecord.cost)).where(UsageRecord.cost < 0)).one()
    on_b = session.exec(select(func.count()).select_from(UsageRecord).where(UsageRecord.subscription_id == sub_b.id)).one()
    assert on_b == 0, "a revision of org A's line was recorded on org B's subscription"
    assert recorded == Decimal("-101"), (
        f"credits recorded {recorded} USD; org B's balance {ledger.balance(session, org_b.id)} UZS "
        f"from a credit of usage org A paid")


def test_a_standalone_credit_is_not_paid_out_beyond_what_the_subscription_was_charged(session):
    """A subscription never charged anything (new, or all its usage in a trial) receives a vendor
    credit line: the customer's balance goes up by the credit with the plan's markup on top — money
    the reseller never received from the customer nor (the markup) from the vendor."""
    org, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 10)
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    usage_import.import_stream(session, focus({"BilledCost": "-1000", "ChargeCategory": "Credit"}))
    rating.rate_usage(session, now=tashkent(2025, 1, 12))
    assert ledger.balance(session, org.id) <= 0, f"balance {ledger.balance(session, org.id)} UZS out of nothing"


def test_a_credit_of_trial_usage_dated_after_the_trial_pays_the_customer(session):
    org, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 10)
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A, is_trial=True,
                   trial_ends_at=tashkent(2025, 1, 11))
    usage_import.import_stream(session, focus({"BilledCost": "500"}))  # 10 Jan: trial, not billed
    usage_import.import_stream(session, focus({"BilledCost": "-500", "ChargeCategory": "Credit",
                                               "ChargePeriodStart": "2025-01-12T00:00:00Z",
                                               "ChargePeriodEnd": "2025-01-12T01:00:00Z"}))
    rating.rate_usage(session, now=tashkent(2025, 1, 13))
    assert sub_total(session, sub.id) <= 0, f"customer paid 0 for the trial and received {sub_total(session, sub.id)} UZS"


def test_the_ledger_check_accepts_a_credit_entry_amount(session):
    """ledger_check's fx rule compares |amount| with round_money(source × rate): a credit entry's
    source_amount is negative, so every credit entry is reported as an fx difference. The credit is
    dated on the next local day: a credit of the usage's own day would be netted into its entry."""
    org, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 10)
    payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    usage_import.import_stream(session, focus({"BilledCost": "10"}, {
        "BilledCost": "-3.000001", "ChargeCategory": "Credit", "ChargePeriodStart": "2025-01-11T03:00:00Z",
        "ChargePeriodEnd": "2025-01-11T04:00:00Z"}))
    rating.rate_usage(session, now=tashkent(2025, 1, 12))
    credit = session.exec(select(LedgerEntry).where(LedgerEntry.amount > 0)).one()
    assert credit.source_amount < 0 and "capped" not in credit.meta  # a credit entry, not capped
    diffs = ledger_check.check(session, org.id, now=tashkent(2025, 1, 13)).differences
    assert [(d.check, d.message) for d in diffs] == []


def test_a_credit_above_what_was_charged_is_capped_and_the_rest_reported(session):
    """Usage of 100 USD is charged (with 10 % markup); a credit of 150 USD in another period gives
    back what was charged, not more: the entry is capped, its meta and the summary say by how much,
    and the ledger check accepts it."""
    org, plans, _ = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 10)
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    usage_import.import_stream(session, focus({"BilledCost": "100"}))
    first = rating.rate_usage(session, now=tashkent(2025, 1, 11))
    charged = first.charged["UZS"]
    assert charged > 0 and sub_total(session, sub.id) == -charged
    usage_import.import_stream(session, focus({"BilledCost": "-150", "ChargeCategory": "Credit",
                                               "ChargePeriodStart": "2025-01-11T00:00:00Z",
                                               "ChargePeriodEnd": "2025-01-11T01:00:00Z"}))
    second = rating.rate_usage(session, now=tashkent(2025, 1, 12))
    credit = session.exec(select(LedgerEntry).where(LedgerEntry.amount > 0)).one()
    assert credit.amount == charged and credit.meta["capped"] is True
    assert second.uncredited == {"UZS": Decimal(credit.meta["uncredited"])} and Decimal(credit.meta["uncredited"]) > 0
    assert second.credited == {"UZS": charged} and "not credited" in str(second)
    assert sub_total(session, sub.id) == 0
    # a later usage charge does not release what the cap kept back
    usage_import.import_stream(session, focus({"BilledCost": "1", "ChargePeriodStart": "2025-01-11T05:00:00Z",
                                               "ChargePeriodEnd": "2025-01-11T06:00:00Z"}))
    third = rating.rate_usage(session, now=tashkent(2025, 1, 12))
    assert sub_total(session, sub.id) == -third.charged["UZS"] < 0
    assert ledger_check.check(session, org.id, now=tashkent(2025, 1, 13)).differences == []

