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
    w = csv.DictWriter(out, fieldnames=list(base), lineterminator="\n")
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
