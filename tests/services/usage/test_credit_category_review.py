"""Review of issue 17's charge categories (87d1692, 98d6015): sequences where the analytics, the
anomaly job or the FOCUS export no longer agree with the ledger or with what they say of credits."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import select

from noventiq_panel.models import LedgerEntry, UsageDaily
from noventiq_panel.services.reporting import iaas
from noventiq_panel.services.reporting.filters import OTHER
from noventiq_panel.services.usage import anomalies as an
from noventiq_panel.services.usage import focus_export, rating, usage_import
from tests import factories as f
from tests.services.analytics_helpers import REF_A, world
from tests.services.usage.test_credit_review import focus as credit_focus
from tests.services.usage_world import payg_sub, payg_world, set_rates, tashkent

D = Decimal


# -- helpers ------------------------------------------------------------------------------------

def focus(*rows: dict) -> io.StringIO:
    """test_credit_review's FOCUS file, with a service and a consumed quantity on every row."""
    return credit_focus(*({"ServiceName": "Virtual Machines", "ConsumedQuantity": "1", **r} for r in rows))


def daily(session, sub, day: date, cost: Decimal, *, service="Virtual Machines", group="rg-web",
          resource: str | None = None, category="Usage", fx: Decimal = D(1)) -> None:
    session.add(UsageDaily(org_id=sub.org_id, subscription_id=sub.id, day=day, service=service,
                           resource_group=group, resource_id=f"/r/{group}/{service}" if resource is None else resource,
                           cost=cost, currency="USD", cost_org=cost * fx, org_currency="USD", records=1,
                           charge_category=category))


# the anomaly job's world (as tests/services/usage/test_anomalies.py has it)
DAY = date(2026, 11, 18)  # a Wednesday
WEEK = [D(100), D(104), D(98), D(102), D(96), D(30), D(28)]


def _anomaly_world(session):
    org, plans, owner = payg_world(session, currency="USD", tz="Asia/Tashkent")
    return org, payg_sub(session, org, plans["azure-d"], name="Azure prod")


def _history(session, sub, day: date, days: int = 60) -> None:
    for i in range(1, days + 1):
        d = day - timedelta(days=i)
        cost = WEEK[d.weekday()] * (1 + D((i * 37) % 9 - 4) / 100)
        daily(session, sub, d, (cost * D("0.8")).quantize(D("0.000001")))
        daily(session, sub, d, (cost * D("0.2")).quantize(D("0.000001")), service="Storage", group="rg-data")
    session.commit()


def _after(day: date) -> datetime:
    nxt = day + timedelta(days=1)
    return tashkent(nxt.year, nxt.month, nxt.day, 7, 20)


# -- 1. the IaaS detail's resource breakdown --------------------------------------------------------

def test_the_credits_stay_a_series_of_their_own_when_the_subscription_has_many_resources(session):
    """by_resource keeps the 15 largest resources and folds the rest into "Other resources (n)".
    The credits' series has a negative total, so it always sorts last and is folded into "Other"
    as soon as a subscription has more than 15 resources (any real one): the credits vanish from
    the breakdown (they are netted into "Other resources") and are counted as one more resource."""
    w = world(session)
    day = date(2025, 1, 10)
    for i in range(20):
        daily(session, w.azure, day, D(10 + i), resource=f"/subscriptions/x/resourcegroups/rg-web/vm-{i}")
    daily(session, w.azure, day, D(-50), service="Virtual Machines", group="", resource="", category="Credit")
    session.commit()
    d = iaas.iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1), w.azure.id,
                         now=datetime(2025, 2, 5, tzinfo=timezone.utc))
    assert d.credits == D("-50.00")
    [other] = [s for s in d.by_resource if s.key == OTHER]
    credits = [s for s in d.by_resource if s.key == iaas.CREDITS]
    assert credits and credits[0].total == d.credits, (
        f"the credits are not apart in the resource breakdown: 'Other resources ({other.extra['count']})' "
        f"= {other.total} holds them")
    assert other.extra["count"] == 5  # 20 resources, 15 shown


# -- 2. cost anomalies: a credit still moves the job's day bounds -------------------------------------

def test_a_credit_dated_after_a_day_does_not_settle_that_days_drop(session):
    """A drop waits until the usage feed has moved past the day (usage of a later day) or 48 hours.
    The job takes "the feed has moved on" from any roll-up row, credits included: a vendor credit
    dated today makes yesterday, whose usage is still on its way, a reported drop."""
    org, sub = _anomaly_world(session)
    _history(session, sub, DAY)
    daily(session, sub, DAY, D(4))  # the first hours of the day have arrived, the rest is on its way
    daily(session, sub, DAY + timedelta(days=1), D(-40), group="", resource="", category="Credit")
    session.commit()
    found = an.detect(session, now=_after(DAY)).anomalies
    assert found == 0, "a credit dated the next day settled a day whose usage had not arrived: a drop invented"


def test_a_credit_dated_before_the_first_usage_does_not_lengthen_the_history(session):
    """The first month of a subscription never alerts (fewer than 28 days of history from its first
    day with usage). The job takes the first day from any roll-up row: a credit dated before the
    first usage (a sign-up credit) makes days without usage count as history of 0, and the first
    weeks' usage becomes a spike."""
    org, sub = _anomaly_world(session)
    _history(session, sub, DAY, days=20)
    daily(session, sub, DAY - timedelta(days=45), D(-200), group="", resource="", category="Credit")
    daily(session, sub, DAY, D(250))
    session.commit()
    found = an.detect(session, now=_after(DAY)).anomalies
    assert found == 0, "a credit before the first usage gave a 20-day-old subscription a verdict: a spike invented"


# -- 3. a capped credit: the analytics and the FOCUS export give back more than the ledger did -------

def test_a_capped_credit_is_shown_and_exported_as_what_the_ledger_credited(session):
    """Rating credits at most what the subscription was charged (the cap): usage of 100 USD, then a
    credit of 150 USD gives back the 110 charged (10 % markup), not 165. The IaaS detail says its
    total is net "as charged" and that it includes credits of ...; the FOCUS export's BilledCost is
    "what the ledger charged". Both show the whole credit, so the period's cost is negative while
    the ledger's net for the subscription is 0."""
    org, plans, owner = payg_world(session, markup="10")
    set_rates(session, date(2025, 1, 8), 10)
    sub = payg_sub(session, org, plans["azure-h"], vendor_ref=REF_A)
    usage_import.import_stream(session, focus({"BilledCost": "100"}))
    rating.rate_usage(session, now=tashkent(2025, 1, 11))
    usage_import.import_stream(session, focus({"BilledCost": "-150", "ChargeCategory": "Credit",
                                               "ChargeDescription": "SLA credit", "ConsumedQuantity": "NULL",
                                               "ChargePeriodStart": "2025-01-11T00:00:00Z",
                                               "ChargePeriodEnd": "2025-01-11T01:00:00Z"}))
    rating.rate_usage(session, now=tashkent(2025, 1, 12))
    ledger_net = session.exec(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                              .where(LedgerEntry.subscription_id == sub.id)).one()
    assert ledger_net == 0  # charged, then credited back in full: the cap kept the rest
    actor = f.actor(owner, org)
    d = iaas.iaas_detail(session, actor, date(2025, 1, 1), date(2025, 2, 1), sub.id,
                         now=tashkent(2025, 2, 5))
    rows = list(csv.DictReader(io.StringIO(
        focus_export.export_focus_bytes(session, actor, date(2025, 1, 1), date(2025, 2, 1)).decode("utf-8"))))
    billed = sum((D(r["BilledCost"]) for r in rows), D(0))
    problems = []
    if abs(d.total - (-ledger_net)) > D("0.01"):
        problems.append(f"IaaS detail total {d.total} (credits {d.credits}) against the ledger's net {-ledger_net}")
    if abs(billed - (-ledger_net)) > D("0.01"):
        problems.append(f"FOCUS export BilledCost sums to {billed} against the ledger's net {-ledger_net}")
    assert problems == [], "; ".join(problems)


# -- 4. the IaaS report's summary ----------------------------------------------------------------------

def test_the_iaas_reports_summary_shows_the_credits_apart_like_the_detail(session):
    """The IaaS detail shows Virtual Machines' consumption and the vendor's credit apart; the XLSX
    report's summary sheet (by subscription and service) nets the credit into Virtual Machines, so
    the report and the page give two figures for the same service and period."""
    from openpyxl import load_workbook

    from noventiq_panel.services.reporting import reports

    w = world(session)
    day = date(2025, 1, 10)
    daily(session, w.azure, day, D(100))
    daily(session, w.azure, day, D(-30), group="", resource="", category="Credit")
    session.commit()
    d = iaas.iaas_detail(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1), w.azure.id,
                         now=datetime(2025, 2, 5, tzinfo=timezone.utc))
    page = {s.key: s.total for s in d.by_service}
    assert page == {"Virtual Machines": D("100.00"), iaas.CREDITS: D("-30.00")}
    wb = load_workbook(io.BytesIO(reports.iaas_report_xlsx(session, w.actor(), date(2025, 1, 1), date(2025, 2, 1),
                                                           w.azure.id, locale="en")))
    summary = {}
    for row in wb.worksheets[0].iter_rows(min_row=6, values_only=True):
        if row[0] == "Azure Prod":
            summary[row[1]] = row[4]
    assert summary.get("Virtual Machines") == page["Virtual Machines"], (
        f"report summary {summary} against the page's {page}")


# -- 5. migration 0016 ---------------------------------------------------------------------------------

def test_migration_0016_downgrade_keeps_usage_record_ids_growing_on_sqlite(sqlite_url):
    """0016's downgrade drops usagerecord.charge_category in a batch, which SQLite does by rebuilding
    the table, without ``sqlite_autoincrement`` (0004's downgrade passes it): the rebuilt table
    has no AUTOINCREMENT, so SQLite may hand out the id of a deleted newest record again — an id
    at or below a rating watermark, a record rating never charges. Upgrading again only adds the
    column back and keeps the table without it."""
    from sqlalchemy import create_engine, text

    from noventiq_panel.services.core import schema

    schema.upgrade(sqlite_url)
    schema.downgrade(sqlite_url, "0015")
    schema.upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'usagerecord'")).scalar()
    finally:
        engine.dispose()
    assert "AUTOINCREMENT" in ddl, "usagerecord lost AUTOINCREMENT in 0016's downgrade"
