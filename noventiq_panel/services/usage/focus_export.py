"""The organisation's rated usage as a FinOps FOCUS 1.2 CSV, at the customer's prices.

Follows FOCUS 1.2 (github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec, ``specification/columns``)
and is checked with the FinOps Foundation's ``focus-validator`` (``tests/services/usage/
test_focus_validator.py``). :data:`FOCUS_VERSION` is written into the file's metadata
(:func:`focus_metadata`, a FOCUS metadata JSON the CLI writes next to the CSV).

Which usage: only **rated** usage (a record at or below its subscription's rating watermark,
``models/usage.py``), so that ``BilledCost`` is what the ledger charged and is never empty. Usage
not rated yet is left out; :func:`unrated_count` says how much of the period waits (the CLI prints
it). A rated record's ledger entry is the usage entry of its subscription, period and currency with
the first ``meta.max_record_id`` at or above the record's id.

What each column holds, and why:

- ``BilledCost`` = ``EffectiveCost``: the customer's price of the record in the billing currency:
  its cost × the markup its entry charged (the plan's, or when it has changed since, the entry's
  ``source_amount`` / Σ cost) × the entry's
  ``fx_rate``, to 6 decimals (the ledger rounds once per entry, so rows do not add up to the tiyin
  of the entries). ``0`` when rating settled the record as not billable (trial, suspension: meta
  ``not_billed``). No commitment discounts or amortisation exist here, so EffectiveCost = BilledCost.
- ``ListCost`` = ``ContractedCost``: the price of the record at the plan's price (the same figure,
  also for a record that was not billed). The panel knows no other list price than its plan's
  price and no negotiated discount below it; the vendor's own cost is not the customer's list price.
- ``BillingAccountId``: ``org-<id>`` (a string, the panel's organisation); ``BillingAccountName``:
  its legal name. ``SubAccountId``/``SubAccountName``: the vendor subscription and its name.
- ``ProviderName`` = ``InvoiceIssuerName``: the seller (``PANEL_SELLER_NAME``), ``PublisherName``:
  the vendor (Microsoft): FOCUS's "Origination of cost data", scenario 2.1 (cloud services bought
  through a service provider that makes them available and invoices them).
- ``BillingPeriodStart``/``End``: the calendar month (organisation's time zone) whose closing
  document includes the charge: the month of the entry's ``occurred_at`` (late usage of a closed
  month is dated when rated, so it is in a later month than the usage itself).
- ``InvoiceId``: the number of that month's invoice (``СФ-…``) once the closing document is issued,
  else empty (FOCUS: null when the charge is on no invoice yet).
- ``ChargeCategory``: the record's category as FOCUS 1.2 allows it (:func:`focus_charge`: Usage,
  Purchase, Credit — an Azure Refund too —, Adjustment); ``ChargeFrequency`` "Usage-Based" for
  usage, "One-Time" for the others, whose ``ConsumedQuantity``/``ConsumedUnit`` are null (FOCUS: only
  usage is consumed). ``ChargeClass`` is empty, and
  "Correction" only for a record that corrects an earlier record of the same export line
  (``line_key``) and is charged in a later billing period than the usage's own month (FOCUS: a
  correction within the current billing period has no ChargeClass).
- ``ChargeDescription``: the meter, with typographic dashes, quotes and spaces written as ASCII.
- ``ConsumedQuantity``/``ConsumedUnit``: the quantity and unit as the vendor wrote them;
  ``PricingQuantity``: the same quantity (vendor prices are per unit of measure); ``PricingUnit``:
  that unit in the FOCUS unit format (:func:`pricing_unit`: "1 Hour" → "Hours", "10K" → "10000 Units").
- ``ServiceCategory``/``ServiceSubcategory``: from the meter category (:data:`SERVICE_CATEGORIES`,
  Azure's meter categories mapped to FOCUS 1.2's allowed values; "Other"/"Other (Other)" otherwise).
- A vendor credit above what its subscription was charged is not given back (rating's cap): each
  capped day adds an ``Adjustment`` row of the part kept back (``rating.uncredited``), so that
  BilledCost sums to what the ledger charged.
- ``x_PricingCurrency``/``x_PricingCost``: the customer's price in the usage currency;
  ``x_ExchangeRate``: the rate used; ``x_ResourceGroupName``.

Figures are written to 6 decimals without trailing zeros; times as ``YYYY-MM-DDTHH:MM:SSZ``.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from noventiq_panel.config import get_settings
from noventiq_panel.models import ClosingDocument, LedgerEntry, Organisation, RatingWatermark, UsageRecord
from noventiq_panel.services.core import clock, rates, spreadsheet
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput, RateMissing
from noventiq_panel.services.catalog import subscription_info
from noventiq_panel.services.usage import rating
from noventiq_panel.services.usage.usage_formats import MICRO

FOCUS_VERSION = "1.2"
MICRO_INT = 10**6
_MAX_PERIOD = timedelta(days=2)  # the longest billing period of rating (a local day, DST included)

FOCUS_EXPORT_COLUMNS = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
    "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ResourceId", "ResourceName", "ServiceCategory", "ServiceName",
    "ServiceSubcategory", "SubAccountId", "SubAccountName", "x_ResourceGroupName", "x_PricingCurrency",
    "x_PricingCost", "x_ExchangeRate",
)

_TYPES = {"BilledCost": "Decimal", "ContractedCost": "Decimal", "EffectiveCost": "Decimal", "ListCost": "Decimal",
          "ConsumedQuantity": "Decimal", "PricingQuantity": "Decimal", "x_PricingCost": "Decimal",
          "x_ExchangeRate": "Decimal", "BillingPeriodEnd": "DateTime", "BillingPeriodStart": "DateTime",
          "ChargePeriodEnd": "DateTime", "ChargePeriodStart": "DateTime"}

# Azure meter categories (UsageRecord.service) → FOCUS 1.2 ServiceCategory and ServiceSubcategory.
SERVICE_CATEGORIES: dict[str, tuple[str, str]] = {k.lower(): v for k, v in {
    "Virtual Machines": ("Compute", "Virtual Machines"),
    "Virtual Machines Licenses": ("Compute", "Virtual Machines"),
    "Azure Virtual Desktop": ("Compute", "End User Computing"),
    "Azure Kubernetes Service": ("Compute", "Containers"),
    "Container Instances": ("Compute", "Containers"),
    "Container Registry": ("Compute", "Containers"),
    "Azure Container Apps": ("Compute", "Containers"),
    "Functions": ("Compute", "Serverless Compute"),
    "App Service": ("Web", "Application Platforms"),
    "Azure App Service": ("Web", "Application Platforms"),
    "Static Web Apps": ("Web", "Application Platforms"),
    "SQL Database": ("Databases", "Relational Databases"),
    "SQL Managed Instance": ("Databases", "Relational Databases"),
    "Azure Database for PostgreSQL": ("Databases", "Relational Databases"),
    "Azure Database for MySQL": ("Databases", "Relational Databases"),
    "Azure Cosmos DB": ("Databases", "NoSQL Databases"),
    "Redis Cache": ("Databases", "Caching"),
    "Azure Cache for Redis": ("Databases", "Caching"),
    "Azure Synapse Analytics": ("Databases", "Data Warehouses"),
    "Storage": ("Storage", "Other (Storage)"),
    "Backup": ("Storage", "Backup Storage"),
    "Bandwidth": ("Networking", "Network Connectivity"),
    "Virtual Network": ("Networking", "Network Infrastructure"),
    "VPN Gateway": ("Networking", "Network Connectivity"),
    "ExpressRoute": ("Networking", "Network Connectivity"),
    "Load Balancer": ("Networking", "Application Networking"),
    "Application Gateway": ("Networking", "Application Networking"),
    "Azure Front Door Service": ("Networking", "Content Delivery"),
    "Content Delivery Network": ("Networking", "Content Delivery"),
    "Azure DNS": ("Networking", "Network Routing"),
    "Azure Firewall": ("Networking", "Network Security"),
    "Azure DDOS Protection": ("Networking", "Network Security"),
    "Key Vault": ("Security", "Secret Management"),
    "Microsoft Defender for Cloud": ("Security", "Security Posture Management"),
    "Sentinel": ("Security", "Threat Detection and Response"),
    "Microsoft Entra ID": ("Identity", "Identity and Access Management"),
    "Azure Active Directory": ("Identity", "Identity and Access Management"),
    "Log Analytics": ("Management and Governance", "Observability"),
    "Azure Monitor": ("Management and Governance", "Observability"),
    "Application Insights": ("Management and Governance", "Observability"),
    "Azure Site Recovery": ("Management and Governance", "Disaster Recovery"),
    "Site Recovery": ("Management and Governance", "Disaster Recovery"),
    "Event Hubs": ("Integration", "Messaging"),
    "Service Bus": ("Integration", "Messaging"),
    "Event Grid": ("Integration", "Messaging"),
    "Logic Apps": ("Integration", "Workflow Orchestration"),
    "API Management": ("Integration", "API Management"),
    "Azure Data Factory v2": ("Analytics", "Data Processing"),
    "Azure Databricks": ("Analytics", "Data Processing"),
    "Azure Cognitive Search": ("Analytics", "Search"),
    "Cognitive Services": ("AI and Machine Learning", "AI Platforms"),
    "Azure OpenAI": ("AI and Machine Learning", "Generative AI"),
    "Azure Machine Learning": ("AI and Machine Learning", "Machine Learning"),
    "Azure Bot Service": ("AI and Machine Learning", "Bots"),
    "IoT Hub": ("Internet of Things", "IoT Platforms"),
}.items()}

_DATA_UNITS = ("b", "Kb", "Mb", "Gb", "Tb", "Pb", "Eb", "B", "KB", "MB", "GB", "TB", "PB", "EB",
               "Kib", "Mib", "Gib", "Tib", "Pib", "Eib", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_TIME_ONE = ("Year", "Month", "Day", "Hour", "Minute", "Second")
_TIME_MANY = tuple(t + "s" for t in _TIME_ONE)
_COUNT = r"[A-Za-z][A-Za-z0-9]*(?:\s+[A-Za-z][A-Za-z0-9]*)*"
_D, _T1, _TN = "|".join(_DATA_UNITS), "|".join(_TIME_ONE), "|".join(_TIME_MANY)
# FOCUS 1.2 "Unit Format" (specification/attributes/unit_format.md), as focus-validator checks it.
UNIT_FORMAT = re.compile("|".join(f"(?:{p})" for p in (
    f"^(?:{_D}|{_T1}|{_TN}|{_COUNT})$",
    f"^(?:{_D}|{_COUNT})-(?:{_TN})$",
    f"^(?:{_D}|{_COUNT}|{_TN})/(?:{_T1})$",
    f"^[0-9]+ (?:{_D}|{_T1}|{_TN}|{_COUNT})$",
    f"^(?:{_D}|{_COUNT}|{_TN})/[0-9]+ (?:{_TN})$",
)))
_BLOCK = re.compile(r"^\s*([0-9]+)?\s*([KMB])?(?![A-Za-z])\s*(.*?)\s*$")
_MULTIPLIER = {"K": 1000, "M": 1000000, "B": 1000000000}
_ASCII_PUNCTUATION = str.maketrans({"—": "-", "–": "-", "‑": "-", "−": "-", "«": '"', "»": '"', "“": '"',
                                    "”": '"', "„": '"', "‘": "'", "’": "'", "\u00a0": " ", "\u202f": " ",
                                    "…": "..."})


def pricing_unit(unit: str) -> str:
    """The vendor's unit of measure in FOCUS's unit format: the block size as a number in front
    ("10K" → "10000 Units", "100 Hours"), a single unit as the plural name ("1 Hour" → "Hours",
    "1 GB" → "GB", "1 GB/Month" → "GB/Month"); "Units" when nothing can be made of it."""
    m = _BLOCK.match(unit or "")
    count, mult, rest = (m.group(1), m.group(2), m.group(3)) if m else (None, None, unit or "")
    block = int(count or 1) * _MULTIPLIER.get(mult or "", 1)
    rest = rest.strip()
    for one, many in zip(_TIME_ONE, _TIME_MANY):
        if rest.lower() in (one.lower(), many.lower()):
            rest = many
    if rest and not UNIT_FORMAT.match(rest):
        rest = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9/ -]", " ", rest)).strip()
    if not rest or not UNIT_FORMAT.match(rest):
        rest = "Units"
    text = rest if block == 1 else f"{block} {rest}"
    return text if UNIT_FORMAT.match(text) else f"{block} Units"


def service_category(meter_category: str) -> tuple[str, str]:
    return SERVICE_CATEGORIES.get((meter_category or "").strip().lower(), ("Other", "Other (Other)"))


def _iso(dt: datetime) -> str:
    return clock.aware(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _q6(value: Decimal) -> str:
    return _plain(value.quantize(MICRO, rounding=ROUND_HALF_UP))


def billing_account_id(org: Organisation) -> str:
    return f"org-{org.id}"


def focus_metadata(session: Session, actor: Actor, *, now: datetime | None = None) -> dict:
    """The FOCUS metadata of the organisation's export (FOCUS 1.2 "Metadata": data generator and
    schema with its FOCUS version and column definitions)."""
    org = session.get(Organisation, can_read(session, actor).org_id)
    created = clock.aware(now or datetime.now(timezone.utc))
    columns = [{"ColumnName": c, "DataType": _TYPES.get(c, "String"),
                **({"ProviderDefinedColumn": True} if c.startswith("x_") else {})} for c in FOCUS_EXPORT_COLUMNS]
    schema_id = hashlib.sha256(("|".join(FOCUS_EXPORT_COLUMNS) + FOCUS_VERSION).encode()).hexdigest()[:16]
    return {
        "DataGenerator": {"DataGenerator": get_settings().seller_name},
        "Schema": {"SchemaId": schema_id, "FocusVersion": FOCUS_VERSION, "CreationDate": _iso(created),
                   "ColumnDefinition": columns},
        "BillingAccountId": billing_account_id(org),
    }


def _period(session: Session, actor: Actor, start: date, end: date) -> Organisation:
    access = can_read(session, actor)
    if end <= start:
        raise InvalidInput("period: the end must be after the start", field="period", key="error.analytics_period")
    return session.get(Organisation, access.org_id)


def export_focus(session: Session, actor: Actor, start: date, end: date, *, chunk_rows: int = 5000
                 ) -> Iterator[bytes]:
    """The organisation's rated usage of ``[start, end)`` (local dates) as FOCUS 1.2 CSV, in chunks
    of bytes (see the module's docstring for the columns). Access is checked at once; rows stream
    as the result is read."""
    org = _period(session, actor, start, end)
    subs = subscription_info.subscriptions_of(session, org.id)
    return _export_rows(session, org, subs, start, end, chunk_rows)


def unrated_count(session: Session, actor: Actor, start: date, end: date) -> int:
    """How many usage records of ``[start, end)`` are not rated yet (and so not exported)."""
    org = _period(session, actor, start, end)
    a, b = clock.local_midnight(start, org.timezone), clock.local_midnight(end, org.timezone)
    mark = (select(RatingWatermark.last_record_id).where(RatingWatermark.subscription_id == UsageRecord.subscription_id)
            .scalar_subquery())
    return session.execute(select(func.count()).select_from(UsageRecord).where(
        UsageRecord.org_id == org.id, UsageRecord.period_start >= a, UsageRecord.period_start < b,
        UsageRecord.id > func.coalesce(mark, 0))).scalar_one()


@dataclass(frozen=True)
class _Entry:
    period_end: datetime
    max_record_id: int
    not_billed: bool
    markup: Decimal | None  # the factor (1 + markup) the entry charged
    fx: Decimal | None
    occurred_at: datetime


class _Entries:
    """The usage entries that charged the exported records, found per record."""

    def __init__(self, session: Session, org: Organisation, a: datetime, b: datetime, markups: dict[int, Decimal]):
        rows = session.execute(
            select(LedgerEntry.subscription_id, LedgerEntry.source_currency, LedgerEntry.period_start,
                   LedgerEntry.period_end, LedgerEntry.source_amount, LedgerEntry.fx_rate, LedgerEntry.occurred_at,
                   LedgerEntry.meta)
            .where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "usage",
                   LedgerEntry.period_start >= a - timedelta(days=2), LedgerEntry.period_start < b)
        ).all()
        self.by_key: dict[tuple, dict[datetime, list[tuple[int, _Entry]]]] = {}
        for sid, cur, ps, pe, source, fx, occurred, meta in rows:
            meta = meta or {}
            if ps is None or pe is None or "max_record_id" not in meta:
                continue
            cost = Decimal(int(meta.get("cost_micro") or 0)) / MICRO_INT
            markup = None
            if source and cost and not meta.get("not_billed"):
                plan = markups.get(sid)
                # the plan's markup when it is the one the entry charged (its source is the rounded
                # Σ cost × it); else the markup of the entry, from its figures
                markup = plan if plan is not None and (cost * plan).quantize(MICRO, ROUND_HALF_UP) == source \
                    else Decimal(source) / cost
            entry = _Entry(clock.aware(pe), int(meta["max_record_id"]), bool(meta.get("not_billed")), markup,
                           Decimal(fx) if fx else None, clock.aware(occurred))
            self.by_key.setdefault((sid, (cur or "").upper()), {}).setdefault(clock.aware(ps), []).append(
                (entry.max_record_id, entry))
        self.starts: dict[tuple, list[datetime]] = {}
        for key, periods in self.by_key.items():
            for lst in periods.values():
                lst.sort(key=lambda x: x[0])
            self.starts[key] = sorted(periods)

    def find(self, sid: int, currency: str, start: datetime, record_id: int) -> _Entry | None:
        key = (sid, currency.upper())
        starts = self.starts.get(key)
        if not starts:
            return None
        i = bisect.bisect_right(starts, start) - 1
        while i >= 0:
            ps = starts[i]
            entries = self.by_key[key][ps]
            if start < entries[0][1].period_end:
                j = bisect.bisect_left([m for m, _ in entries], record_id)
                if j < len(entries):
                    return entries[j][1]
            i -= 1
            if start - ps > _MAX_PERIOD:
                break
        return None


def _export_rows(session: Session, org: Organisation, subs: dict, start: date, end: date, chunk_rows: int
                 ) -> Iterator[bytes]:
    tz = org.timezone
    a, b = clock.local_midnight(start, tz), clock.local_midnight(end, tz)
    settings = get_settings()
    buf = io.StringIO()
    writer = spreadsheet.writer(buf, lineterminator="\n")
    writer.writerow(FOCUS_EXPORT_COLUMNS)
    entries = _Entries(session, org, a, b, {sid: 1 + i.markup_pct / 100 for sid, i in subs.items()})
    invoices = {p: f"СФ-{y}-{n:06d}" for p, y, n in session.execute(
        select(ClosingDocument.period, ClosingDocument.year, ClosingDocument.number)
        .where(ClosingDocument.org_id == org.id, ClosingDocument.kind == "act")).all()}
    rate_cache: dict = {}
    month_cache: dict = {}
    earlier = aliased(UsageRecord)
    is_correction = exists().where(and_(earlier.line_key == UsageRecord.line_key, earlier.id < UsageRecord.id))
    query = (
        select(UsageRecord.id, UsageRecord.period_start, UsageRecord.period_end, UsageRecord.subscription_id,
               UsageRecord.service, UsageRecord.meter, UsageRecord.resource_group, UsageRecord.resource_id,
               UsageRecord.resource_name, UsageRecord.quantity, UsageRecord.unit, UsageRecord.cost,
               UsageRecord.currency, UsageRecord.line_key.is_not(None) & is_correction, UsageRecord.charge_category)
        .join(RatingWatermark, RatingWatermark.subscription_id == UsageRecord.subscription_id)
        .where(UsageRecord.org_id == org.id, UsageRecord.period_start >= a, UsageRecord.period_start < b,
               UsageRecord.id <= RatingWatermark.last_record_id)
        .order_by(UsageRecord.period_start, UsageRecord.id)
        .execution_options(yield_per=chunk_rows)
    )

    def month_of(dt: datetime) -> tuple[date, str, str]:
        month = clock.local_date(dt, tz).replace(day=1)
        if month not in month_cache:
            first, after = clock.month_bounds(month, tz)
            month_cache[month] = (month, _iso(first), _iso(after))
        return month_cache[month]

    n = 0
    for (rid, ps, pe, sid, svc, meter, rg, res_id, rname, qty, unit, cost, currency, correction,
         charge) in session.execute(query):
        ps = clock.aware(ps)
        info = subs.get(sid)
        entry = entries.find(sid, currency, ps, rid)
        markup = entry.markup if entry and entry.markup is not None else (
            1 + (info.markup_pct if info else Decimal(0)) / 100)
        price = cost * markup
        fx = entry.fx if entry else None
        if fx is None:
            key = (currency, clock.local_date(ps, tz))
            if key not in rate_cache:
                try:
                    rate_cache[key] = rates.usage_rate(session, currency, org.billing_currency, key[1])
                except RateMissing:
                    rate_cache[key] = None
            fx = rate_cache[key]
        if fx is None:  # rated, yet neither its entry nor the day has a rate: it was not charged
            fx = Decimal(0)
        listed = _q6(price * fx)
        billed = "0" if entry and entry.not_billed else listed
        month, bp_start, bp_end = month_of(entry.occurred_at if entry else ps)
        usage_month = clock.local_date(ps, tz).replace(day=1)
        category, subcategory = service_category(svc)
        vendor = info.vendor_name if info else ""
        charge = focus_charge(charge)
        usage = charge == "Usage"
        writer.writerow((
            billed, billing_account_id(org), org.name, org.billing_currency, bp_end, bp_start, charge,
            "Correction" if correction and month != usage_month else "",
            (meter or "").translate(_ASCII_PUNCTUATION), "Usage-Based" if usage else "One-Time", _iso(pe), _iso(ps),
            _plain(qty) if usage else "", unit if usage else "",
            listed, billed, invoices.get(month, "") if entry else "", settings.seller_name, listed, _plain(qty),
            pricing_unit(unit), settings.seller_name, vendor, res_id, rname, category, svc, subcategory,
            info.vendor_ref if info else "", info.name if info else str(sid), rg, currency, _q6(price), _plain(fx),
        ))
        n += 1
        if n % chunk_rows == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    for sid, ps, pe, occurred, amount in rating.uncredited(session, org.id, a, b, sorted(subs)):
        # a vendor credit above what the subscription was charged is not given back (rating's
        # cap): one adjustment per capped day, so that BilledCost sums to what the ledger charged
        info = subs.get(sid)
        month, bp_start, bp_end = month_of(clock.aware(occurred))
        category, subcategory = service_category("")
        back = _q6(amount)
        writer.writerow((
            back, billing_account_id(org), org.name, org.billing_currency, bp_end, bp_start, "Adjustment", "",
            "Vendor credit above the charges, not given back", "One-Time", _iso(clock.aware(pe)),
            _iso(clock.aware(ps)), "", "", back, back, invoices.get(month, ""), settings.seller_name, back, "", "",
            settings.seller_name, info.vendor_name if info else "", "", "", category, "Vendor credit", subcategory,
            info.vendor_ref if info else "", info.name if info else str(sid), "", org.billing_currency, back, "1",
        ))
    yield buf.getvalue().encode("utf-8")


_FOCUS_CHARGES = {"Usage": "Usage", "Purchase": "Purchase", "Credit": "Credit", "Refund": "Credit",
                  "Adjustment": "Adjustment", "RoundingAdjustment": "Adjustment",
                  "UnusedReservation": "Usage", "UnusedSavingsPlan": "Usage"}


def focus_charge(category: str) -> str:
    """A record's charge category as FOCUS 1.2's ChargeCategory allows it: Azure's Refund is a
    Credit, its rounding an Adjustment, its unused commitments Usage; a category no export format
    defines is an Adjustment (a charge its export did not call usage). Tax is never imported."""
    return _FOCUS_CHARGES.get(category, "Adjustment")


def export_focus_bytes(session: Session, actor: Actor, start: date, end: date) -> bytes:
    return b"".join(export_focus(session, actor, start, end))
