"""The demo's Azure usage: meters of the resources two organisations run, and the usage records
they produce (hourly or daily, day and week rhythms, deterministic noise seeded per resource).

The records are inserted as they are (as the importer would store them); ``rate_usage_daily``
only plans one charge per local day so that the top-ups can be sized for it: the rating
(``services.usage.rating``) charges the real entries after the history is committed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Optional
from zoneinfo import ZoneInfo

from sqlmodel import Session

from noventiq_panel.db import BulkInsert
from noventiq_panel.models import Organisation, Plan, Subscription, UsageRecord
from noventiq_panel.services.core import clock
from noventiq_panel.services.demo.builder import OrgBuilder, hour_floor, q6

USAGE_DAYS = 120


@dataclass(frozen=True)
class Meter:
    resource_group: str
    resource: str
    provider: str
    service: str
    meter: str
    unit: str
    price: Decimal  # USD per unit
    pattern: str  # always | traffic | storage | business_hours | daytime
    since_days: int = USAGE_DAYS  # how many days back the resource exists
    only_day: Optional[int] = None  # ran on one local day only, this many days before the anchor's


ROMASHKA_AZURE = [
    Meter("rg-prod-web", "vm-web-01", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "D2s v5 — Linux", "1 Hour", Decimal("0.096"), "always"),
    Meter("rg-prod-web", "vm-web-02", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "D2s v5 — Linux", "1 Hour", Decimal("0.096"), "always", since_days=58),
    Meter("rg-prod-web", "app-romashka-shop", "Microsoft.Web/sites", "App Service",
          "P1 v3 App", "1 Hour", Decimal("0.238"), "always"),
    Meter("rg-prod-web", "agw-romashka", "Microsoft.Network/applicationGateways", "Bandwidth",
          "Standard Data Transfer Out", "1 GB", Decimal("0.087"), "traffic"),
    Meter("rg-prod-db", "sqldb-romashka-erp", "Microsoft.Sql/servers/databases", "SQL Database",
          "S2 DTUs", "1 Hour", Decimal("0.100800"), "always"),
    Meter("rg-prod-db", "stromashkabackup", "Microsoft.Storage/storageAccounts", "Storage",
          "Hot LRS Data Stored", "1 GB/Month", Decimal("0.0208"), "storage"),
    Meter("rg-dev", "vm-dev-01", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "D4s v5 — Windows", "1 Hour", Decimal("0.376"), "business_hours"),
    Meter("rg-monitoring", "log-romashka", "Microsoft.OperationalInsights/workspaces", "Log Analytics",
          "Analytics Logs Data Ingestion", "1 GB", Decimal("2.76"), "daytime"),
    # a GPU machine somebody left running for a day: the demo's cost anomaly
    Meter("rg-ml-test", "vm-gpu-test", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "NC6s v3 — Linux", "1 Hour", Decimal("3.06"), "always", only_day=2),
]

VOSTOK_AZURE = [
    Meter("rg-erp", "vm-erp-01", "Microsoft.Compute/virtualMachines", "Virtual Machines",
          "B4ms — Windows", "1 Hour", Decimal("0.2160"), "always", since_days=60),
    Meter("rg-erp", "sterpbackup", "Microsoft.Storage/storageAccounts", "Storage",
          "Cool LRS Data Stored", "1 GB/Month", Decimal("0.0115"), "storage", since_days=60),
    Meter("rg-erp", "vnet-erp", "Microsoft.Network/virtualNetworks", "Bandwidth",
          "Standard Data Transfer Out", "1 GB", Decimal("0.087"), "traffic", since_days=60),
    Meter("rg-erp", "kv-vostok", "Microsoft.KeyVault/vaults", "Key Vault",
          "Operations", "10K", Decimal("0.03"), "daytime", since_days=60),
]

_DAY_CURVE = [0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.4, 0.65, 0.85, 1.0, 1.0, 0.95,
              0.9, 0.95, 1.0, 0.95, 0.85, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2]


def _quantity(m: Meter, rng: random.Random, local_hour: int, weekday: int, day_index: int, hours: int) -> Optional[Decimal]:
    """Usage of one meter over ``hours`` hours (1 or 24); None when the resource is off."""
    if m.pattern == "always":
        return Decimal(hours)
    weekend = weekday >= 5
    if m.pattern == "business_hours":
        if hours == 24:
            return None if weekend else Decimal(10)
        return Decimal(1) if (not weekend and 9 <= local_hour < 19) else None
    if m.pattern == "storage":
        gb = 420 + day_index * 1.9 + rng.uniform(-2, 2)
        return q6(Decimal(f"{gb:.3f}") * hours / 730)
    curve = sum(_DAY_CURVE) if hours == 24 else _DAY_CURVE[local_hour]
    factor = 0.55 if weekend else 1.0
    noise = rng.uniform(0.85, 1.2)
    if m.pattern == "traffic":
        return q6(Decimal(f"{(0.15 * hours + 1.6 * curve) * factor * noise:.4f}"))
    if m.pattern == "daytime":
        return q6(Decimal(f"{(0.004 * hours + 0.045 * curve) * factor * noise:.5f}"))
    raise ValueError(m.pattern)  # pragma: no cover


def usage_rows(org: Organisation, sub: Subscription, meters: list[Meter], anchor: datetime, *,
               granularity: str, days: int = USAGE_DAYS, seed: str = "") -> list[dict]:
    """Usage records of the last ``days`` days before ``anchor`` (hourly or daily), as row dicts."""
    tz = org.timezone
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
    hours = 1 if granularity == "hour" else 24
    if granularity == "hour":
        end = hour_floor(anchor)
        start = end - timedelta(days=days)
    else:
        end = clock.local_midnight(clock.local_date(anchor, tz), tz)
        start = clock.local_midnight(clock.local_date(anchor, tz) - timedelta(days=days), tz)
    first_day = clock.local_date(start, tz)
    anchor_day = clock.local_date(anchor, tz)
    zone = ZoneInfo(tz)
    rows: list[dict] = []
    for m in meters:
        rng = random.Random(f"{seed}:{sub.vendor_ref}:{m.resource}:{m.meter}")
        resource_id = (f"/subscriptions/{sub.vendor_ref}/resourceGroups/{m.resource_group}/providers/"
                       f"{m.provider}/{m.resource}")
        since = end - timedelta(days=m.since_days)
        t = start
        while t < end:
            local = t.astimezone(zone)
            ran = t >= since if m.only_day is None else local.date() == anchor_day - timedelta(days=m.only_day)
            if ran:
                q = _quantity(m, rng, local.hour, local.weekday(), (local.date() - first_day).days, hours)
                if q is not None and q > 0:
                    key = hashlib.sha256(f"demo:{sub.vendor_ref}:{resource_id}:{m.meter}:{t.isoformat()}".encode()).hexdigest()
                    rows.append(dict(
                        org_id=org.id, subscription_id=sub.id, period_start=t, period_end=t + step,
                        service=m.service, meter=m.meter, resource_group=m.resource_group, resource_id=resource_id,
                        resource_name=m.resource, quantity=q, unit=m.unit, cost=q6(q * m.price), currency="USD",
                        charge_category="Usage", source="demo", source_key=key, imported_at=t + step + timedelta(minutes=40),
                    ))
            t += step
    return rows


def credit_row(org: Organisation, sub: Subscription, anchor: datetime, *, days_ago: int, amount: Decimal,
               service: str, description: str) -> dict:
    """A vendor's credit (FOCUS ChargeCategory Credit, negative cost) at noon of the local day
    ``days_ago`` days before the anchor's: rating gives it back, the analytics show it as a credit."""
    day = clock.local_date(anchor, org.timezone) - timedelta(days=days_ago)
    t = clock.local_midnight(day, org.timezone) + timedelta(hours=12)
    key = hashlib.sha256(f"demo:{sub.vendor_ref}:credit:{t.isoformat()}".encode()).hexdigest()
    return dict(org_id=org.id, subscription_id=sub.id, period_start=t, period_end=t + timedelta(hours=1),
                service=service, meter=description, resource_group="", resource_id="", resource_name="",
                quantity=Decimal(0), unit="", cost=-amount, currency="USD", charge_category="Credit",
                source="demo", source_key=key, imported_at=t + timedelta(hours=1, minutes=40))


def rate_usage_daily(b: OrgBuilder, sub: Subscription, rows: list[dict]) -> None:
    """Size the top-ups for the usage of the history, one planned charge per local day.

    Nothing is posted here: ``load`` runs ``services.usage.rating`` after the commit, which charges every
    record exactly as the rating job does."""
    plan = b.session.get(Plan, sub.plan_id)
    markup = Decimal(1) + plan.usage_markup_pct / 100
    by_day: dict[date, list[dict]] = {}
    for row in rows:
        by_day.setdefault(clock.local_date(row["period_start"], b.tz), []).append(row)
    for day, day_rows in sorted(by_day.items()):
        cost = sum((r["cost"] for r in day_rows), Decimal(0))
        start, end = clock.day_bounds(day, b.tz)
        b.charge(sub, plan, start, q6(cost * markup), kind="usage",
                 key=f"demo:{b.key}:{b.sub_key(sub)}:usage:{day.isoformat()}",
                 description=f"{b.product_name(plan)}: потребление за {day.strftime('%d.%m.%Y')}",
                 period=(start, end), post=False)


_USAGE_COLUMNS = ("org_id", "subscription_id", "period_start", "period_end", "service", "meter", "resource_group",
                  "resource_id", "resource_name", "quantity", "unit", "cost", "currency", "charge_category", "source",
                  "source_key", "imported_at")


def insert_usage(session: Session, rows: list[dict]) -> None:
    """Store the records made by ``usage_rows`` (one bulk insert)."""
    BulkInsert(session, UsageRecord.__table__, _USAGE_COLUMNS).insert([row[c] for c in _USAGE_COLUMNS] for row in rows)
