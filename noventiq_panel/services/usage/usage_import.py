"""Import of pay-as-you-go usage from the vendors' billing exports, and export as FOCUS CSV.

Formats:
- FinOps FOCUS 1.0 and later (``ChargePeriodStart``, ``ChargePeriodEnd``, ``BilledCost``,
  ``BillingCurrency``, ``ServiceName``, ``ResourceId``, ``SubAccountId``, ...). Rows of
  ``ChargeCategory`` *Tax* are skipped (the panel bills its own VAT); provider-specific ``x_``
  columns, ``RegionName`` and the rest are not needed (``x_ResourceGroupName`` is used when the
  resource id does not name a resource group).
- Azure cost-management export, actual cost, daily (``Date``, ``MeterCategory``, ``MeterName``,
  ``ResourceGroup``/``ResourceGroupName``, ``ResourceId``/``InstanceId``,
  ``CostInBillingCurrency``/``Cost``/``PreTaxCost``, ``BillingCurrency``/``BillingCurrencyCode``/
  ``Currency``, ``SubscriptionId``/``SubscriptionGuid``, ...), in any letter case (newer exports
  write ``costInBillingCurrency``), dates as ``MM/DD/YYYY`` or ISO.

The importer streams: the ``csv`` module reads the text stream row by row and rows are written in
batches (``batch_size``, one transaction each), so memory does not grow with the file. A UTF-8
byte-order mark is ignored; ``;`` and tab separated files are recognised by their header.

Each row's ``source_key`` is a hash of the row's content (format and every non-empty column,
independent of the column order and of the line number): re-importing a file adds nothing, and an
identical line repeated inside a file counts as a duplicate.

Corrections. Vendors deliver month-to-date exports again and again, and revise the figures of
recent lines (late meter readings, price corrections) or fill in an invoice id. Each row also gets
a ``line_key``: the same hash without the figures (``MEASURE_COLUMNS``: costs, quantities, prices,
exchange rates) and without ``VOLATILE_COLUMNS`` (invoice ids). A new row whose ``line_key`` was
imported by another, earlier import (its records have another ``imported_at``) is a correction of
that line: it is recorded as a record of the
difference (new cost and quantity minus what earlier imports recorded for the line), so the records
of a line always add up to its latest figures and rating charges only the difference, once. Rows
of one import with the same ``line_key`` (a line split in tiers) add up: only the first of them is
compared with the earlier imports. A line sent again with the same figures (an invoice id filled
in) adds no record and counts as a duplicate. Imports take the usage table's lock for each batch (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``SHARE ROW EXCLUSIVE``), so two imports never compute a
difference against the same figures. Rows are matched to subscriptions by
``Subscription.vendor_ref`` (``SubAccountId``/``SubscriptionId``, case and ``/subscriptions/``
prefix ignored); rows with no matching subscription are counted and listed by reference, rows that
cannot be read are listed with their line number and the reason, and the good rows are imported.

Importing is an operation of the reseller (CLI, scheduled folder), not of a customer: it takes no
actor. The daily roll-up of the touched (subscription, day) pairs is rebuilt at the end.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
import logging
import operator
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Iterable, Iterator

from sqlalchemy import func, select, text
from sqlmodel import Session

from noventiq_panel.config import get_settings
from noventiq_panel.models import Organisation, Plan, Subscription, UsageRecord
from noventiq_panel.db import BulkInsert
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.reporting import analytics
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput, RateMissing

log = logging.getLogger(__name__)

FOCUS = "focus"
AZURE = "azure"
FORMATS = (FOCUS, AZURE)
BATCH_SIZE = 5000
MAX_BAD_LISTED = 1000  # the report lists this many bad lines (and counts all)
MAX_UNMATCHED_LISTED = 100
MICRO = Decimal("0.000001")
MAX_VALUE = Decimal("1000000000000")  # |cost| or quantity above 10**12 is an input error

# Canonical field -> header names (lower case), in order of preference.
FOCUS_COLUMNS: dict[str, tuple[str, ...]] = {
    "start": ("chargeperiodstart",),
    "end": ("chargeperiodend",),
    "cost": ("billedcost",),
    "currency": ("billingcurrency",),
    "service": ("servicename",),
    "category": ("servicecategory",),
    "description": ("chargedescription",),
    "resource_id": ("resourceid",),
    "resource_name": ("resourcename",),
    "resource_group": ("x_resourcegroupname",),
    "subscription": ("subaccountid",),
    "quantity": ("consumedquantity",),
    "unit": ("consumedunit",),
    "charge_category": ("chargecategory",),
}
FOCUS_REQUIRED = ("start", "end", "cost", "currency", "subscription")

AZURE_COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("date", "usagedate", "usagedatetime"),
    "service": ("metercategory",),
    "subcategory": ("metersubcategory",),
    "meter": ("metername",),
    "resource_group": ("resourcegroup", "resourcegroupname"),
    "resource_id": ("resourceid", "instanceid"),
    "resource_name": ("resourcename",),
    "quantity": ("quantity", "usagequantity", "consumedquantity"),
    "unit": ("unitofmeasure",),
    "cost": ("costinbillingcurrency", "cost", "pretaxcost"),
    "currency": ("billingcurrency", "billingcurrencycode", "currency"),
    "subscription": ("subscriptionid", "subscriptionguid"),
}
AZURE_REQUIRED = ("date", "cost", "subscription")

# Columns that are figures of a line, not its identity (lower case; see "Corrections" above).
MEASURE_COLUMNS = frozenset({
    # FOCUS
    "billedcost", "effectivecost", "listcost", "contractedcost", "consumedquantity", "pricingquantity",
    "listunitprice", "contractedunitprice",
    # Azure cost details (EA, MCA, legacy)
    "cost", "costinbillingcurrency", "costinusd", "costinpricingcurrency", "pretaxcost", "quantity",
    "usagequantity", "unitprice", "effectiveprice", "paygprice", "paygcostinbillingcurrency", "paygcostinusd",
    "exchangeratepricingtobilling", "exchangeratedate", "resourcerate",
})
_MEASURE_PARTS = ("cost", "unitprice", "exchangerate")  # provider columns (x_…) holding figures
VOLATILE_COLUMNS = frozenset({"invoiceid", "x_invoiceid", "invoicesectionid", "x_invoicesectionid"})


def _is_measure(name: str) -> bool:
    return name in MEASURE_COLUMNS or (name.startswith("x_") and any(p in name for p in _MEASURE_PARTS))

_RG_IN_ID = re.compile(r"/resourcegroups/([^/]+)", re.IGNORECASE)
_CURRENCY = re.compile(r"[A-Z]{3}")


class BadRow(ValueError):
    """A row that cannot be imported; the message is the reason shown in the report."""


@dataclass
class ImportReport:
    source: str = ""
    format: str = ""
    rows_read: int = 0  # data rows (blank lines not counted)
    imported: int = 0
    duplicates: int = 0  # already imported (earlier import or an identical line before)
    corrections: int = 0  # of ``imported``: revised lines of an earlier import, recorded as the difference
    unmatched: int = 0  # no subscription with that vendor reference
    skipped: int = 0  # rows the panel does not bill (FOCUS ChargeCategory Tax)
    bad_count: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), first 1000
    unmatched_refs: dict[str, int] = field(default_factory=dict)  # vendor reference -> rows
    totals: dict[str, Decimal] = field(default_factory=dict)  # imported cost by currency
    file_totals: dict[str, Decimal] = field(default_factory=dict)  # every readable row, by currency
    subscriptions: int = 0  # subscriptions that received rows
    rollup_rows: int = 0
    seconds: float = 0.0
    rollup_seconds: float = 0.0  # of ``seconds``: rebuilding the daily roll-up at the end
    error: str = ""  # a file-level failure (unknown format, missing columns)

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict:
        d = asdict(self)
        d["totals"] = {k: str(v) for k, v in self.totals.items()}
        d["file_totals"] = {k: str(v) for k, v in self.file_totals.items()}
        return d

    def summary(self) -> str:
        totals = ", ".join(f"{v} {k}" for k, v in sorted(self.totals.items())) or "0"
        return (f"{self.source or '-'} [{self.format}]: read {self.rows_read}, imported {self.imported}, "
                f"corrections {self.corrections}, duplicates {self.duplicates}, unmatched {self.unmatched}, skipped {self.skipped}, "
                f"bad {self.bad_count}; imported cost {totals}")


# --------------------------------------------------------------------------------------------
# Parsing helpers


def _norm_header(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().strip('"').lower()


def detect_format(header: Iterable[str]) -> str | None:
    names = {_norm_header(h) for h in header}
    if {"chargeperiodstart", "billedcost"} <= names:
        return FOCUS
    has_cost = any(c in names for c in AZURE_COLUMNS["cost"])
    if has_cost and ("metercategory" in names or any(c in names for c in AZURE_COLUMNS["date"])):
        return AZURE
    return None


def _resolve(header: list[str], columns: dict[str, tuple[str, ...]]) -> dict[str, list[int]]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(_norm_header(h), i)
    return {name: [index[a] for a in aliases if a in index] for name, aliases in columns.items()}


def _decimal(raw: str, what: str, *, required: bool = True) -> Decimal:
    text = raw.strip()
    if not text:
        if required:
            raise BadRow(f"{what}: empty")
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        try:  # "1 234,56" written by a spreadsheet in some locales
            value = Decimal(text.replace("\u00a0", "").replace(" ", "").replace(",", "."))
        except InvalidOperation:
            raise BadRow(f"{what}: not a number: {raw[:40]!r}") from None
    if not value.is_finite():
        raise BadRow(f"{what}: not a number: {raw[:40]!r}")
    value = value.quantize(MICRO, rounding=ROUND_HALF_UP)
    if abs(value) >= MAX_VALUE:
        raise BadRow(f"{what}: out of range: {raw[:40]!r}")
    return value


class _DateParser:
    """Cached date parsing (an export repeats the same few dates millions of times)."""

    def __init__(self):
        self._cache: dict[str, datetime] = {}

    def instant(self, raw: str, what: str) -> datetime:
        hit = self._cache.get(raw)
        if hit is not None:
            return hit
        text = raw.strip()
        if not text:
            raise BadRow(f"{what}: empty")
        try:
            if "/" in text:  # Azure: MM/DD/YYYY (optionally with a time)
                month, day, year = text.split(" ", 1)[0].split("/")
                value = datetime(int(year), int(month), int(day), tzinfo=timezone.utc)
            else:
                value = datetime.fromisoformat(text.replace(" UTC", "").replace("z", "Z"))
                value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        except (ValueError, TypeError):
            raise BadRow(f"{what}: not a date: {raw[:40]!r}") from None
        if not 1990 <= value.year <= 2200:
            raise BadRow(f"{what}: not a date: {raw[:40]!r}")
        if len(self._cache) > 50000:
            self._cache.clear()
        self._cache[raw] = value
        return value

    def day(self, raw: str, what: str) -> datetime:
        value = self.instant(raw, what)
        return value.replace(hour=0, minute=0, second=0, microsecond=0)


def normalise_ref(ref: str) -> str:
    ref = ref.strip().lower()
    if ref.startswith("/subscriptions/"):
        ref = ref[len("/subscriptions/"):].split("/", 1)[0]
    return ref


_MISS = object()


class _SubscriptionMatcher:
    """Vendor reference -> (subscription id, org id, plan currency), looked up once per reference."""

    def __init__(self, session: Session):
        self.session = session
        self._cache: dict[str, tuple[int, int, str] | None] = {}
        self._raw: dict[str, tuple[int, int, str] | None] = {}  # the reference as written -> match

    def match(self, ref: str) -> tuple[int, int, str] | None:
        raw = self._raw.get(ref, _MISS)
        if raw is not _MISS:
            return raw
        if len(self._raw) > 100000:
            self._raw.clear()
        key = normalise_ref(ref)
        if key in self._cache:
            self._raw[ref] = self._cache[key]
            return self._cache[key]
        found = None
        if key:
            candidates = {ref.strip(), key, key.upper(), "/subscriptions/" + key}
            rows = self.session.execute(
                select(Subscription.id, Subscription.org_id, Subscription.status, Plan.billing_type, Plan.currency)
                .join(Plan, Plan.id == Subscription.plan_id)
                .where(Subscription.vendor_ref.in_(sorted(candidates)))
            ).all()
            # End the read at once: on SQLite every transaction holds the write lock, and the
            # import must not keep it while it parses the rest of a batch.
            self.session.commit()
            if rows:
                # Prefer a pay-as-you-go subscription, then a live one, then the newest.
                rows.sort(key=lambda r: (r[3] != "payg", r[2] in ("cancelled", "expired"), -r[0]))
                found = (rows[0][0], rows[0][1], rows[0][4])
        self._cache[key] = self._raw[ref] = found
        return found


class _RowKey:
    """The row's identity, as ``(source_key, line_key)``: sha256 of the format and the non-empty
    ``column=value`` pairs, columns in name order (so the keys depend neither on the line number
    nor on the column order); every column for ``source_key``, the line's identity columns only
    (no figures, no invoice id) for ``line_key`` (its first 32 hex digits)."""

    def __init__(self, fmt: str, header: list[str]):
        named = sorted((_norm_header(h), i) for i, h in enumerate(header) if h.strip())
        identity = [(name, i) for name, i in named if not (_is_measure(name) or name in VOLATILE_COLUMNS)]
        self.prefix = fmt.encode()
        self.names = [f"{name}=" for name, _ in named]
        self.getter = self._getter([i for _, i in named])
        self.id_names = [f"{name}=" for name, _ in identity]
        self.id_getter = self._getter([i for _, i in identity])

    @staticmethod
    def _getter(indexes: list[int]):
        if not indexes:
            return lambda row: ()
        if len(indexes) == 1:
            return lambda row: (row[indexes[0]],)
        return operator.itemgetter(*indexes)

    def __call__(self, row: list[str]) -> tuple[str, str]:
        content = "\x1f".join([n + v for n, v in zip(self.names, self.getter(row)) if v])
        identity = "\x1f".join([n + v for n, v in zip(self.id_names, self.id_getter(row)) if v])
        return (hashlib.sha256(self.prefix + b"\x1f" + content.encode("utf-8")).hexdigest(),
                hashlib.sha256(self.prefix + b"\x1e" + identity.encode("utf-8")).hexdigest()[:32])


def _first(row: list[str], idx: list[int]) -> str:
    if len(idx) == 1:
        return row[idx[0]].strip()
    for i in idx:
        if i < len(row):
            v = row[i].strip()
            if v:
                return v
    return ""


def _resource_group(resource_id: str) -> str:
    m = _RG_IN_ID.search(resource_id)
    return m.group(1) if m else ""


# Row parsers: return the canonical values (without org/subscription) or raise BadRow;
# return None for a row that is skipped on purpose.


def _parse_focus(row: list[str], cols: dict[str, list[int]], dates: _DateParser) -> dict | None:
    category = _first(row, cols["charge_category"])
    if category.lower() == "tax":
        return None
    start = dates.instant(_first(row, cols["start"]), "ChargePeriodStart")
    end = dates.instant(_first(row, cols["end"]), "ChargePeriodEnd")
    if end < start:
        raise BadRow("ChargePeriodEnd is before ChargePeriodStart")
    if end == start:
        end = start + timedelta(hours=1)
    currency = _first(row, cols["currency"]).upper()
    if not _CURRENCY.fullmatch(currency):
        raise BadRow(f"BillingCurrency: not a currency code: {currency[:10]!r}")
    resource_id = _first(row, cols["resource_id"])
    return {
        "period_start": start, "period_end": end,
        "cost": _decimal(_first(row, cols["cost"]), "BilledCost"),
        "currency": currency,
        "service": (_first(row, cols["service"]) or _first(row, cols["category"]))[:128],
        "meter": (_first(row, cols["description"]) or _first(row, cols["category"]))[:255],
        "resource_id": resource_id[:500],
        "resource_name": (_first(row, cols["resource_name"]) or resource_id.rsplit("/", 1)[-1])[:255],
        "resource_group": (_resource_group(resource_id) or _first(row, cols["resource_group"]))[:255],
        "quantity": _decimal(_first(row, cols["quantity"]), "ConsumedQuantity", required=False),
        "unit": _first(row, cols["unit"])[:64],
    }


def _parse_azure(row: list[str], cols: dict[str, list[int]], dates: _DateParser) -> dict:
    start = dates.day(_first(row, cols["date"]), "Date")
    currency = _first(row, cols["currency"]).upper()
    if cols["currency"] and not _CURRENCY.fullmatch(currency):
        raise BadRow(f"BillingCurrency: not a currency code: {currency[:10]!r}")
    sub, name = _first(row, cols["subcategory"]), _first(row, cols["meter"])
    resource_id = _first(row, cols["resource_id"])
    return {
        "period_start": start, "period_end": start + timedelta(days=1),
        "cost": _decimal(_first(row, cols["cost"]), "Cost"),
        "currency": currency,  # "" when the export has no currency column: the plan's currency
        "service": _first(row, cols["service"])[:128],
        "meter": (f"{sub} / {name}" if sub and name and sub != name else (name or sub))[:255],
        "resource_id": resource_id[:500],
        "resource_name": (_first(row, cols["resource_name"]) or resource_id.rsplit("/", 1)[-1])[:255],
        "resource_group": (_first(row, cols["resource_group"]) or _resource_group(resource_id))[:255],
        "quantity": _decimal(_first(row, cols["quantity"]), "Quantity", required=False),
        "unit": _first(row, cols["unit"])[:64],
    }


# --------------------------------------------------------------------------------------------
# Import


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def import_stream(session: Session, stream: IO[str], fmt: str | None = None, *, source: str = "",
                  batch_size: int = BATCH_SIZE, now: datetime | None = None) -> ImportReport:
    """Import usage rows from a text stream. Commits each batch; returns the report.

    ``fmt`` is ``"focus"`` or ``"azure"``; ``None`` detects it from the header. An unknown format
    or missing required columns raise ``InvalidInput`` before anything is written.
    """
    started = time.perf_counter()
    report = ImportReport(source=source)
    first_line = stream.readline()
    if not first_line.strip():
        raise InvalidInput("the file is empty", key="error.usage_empty")
    first_line = first_line.lstrip("\ufeff")
    reader = csv.reader(itertools.chain([first_line], stream), delimiter=_sniff_delimiter(first_line))
    header = next(reader)
    detected = detect_format(header)
    if fmt is None:
        fmt = detected
        if fmt is None:
            raise InvalidInput("unknown usage file format (neither FOCUS nor Azure cost export)",
                               key="error.usage_format_unknown")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}", field="format", key="error.usage_format_unknown")
    columns, required = (FOCUS_COLUMNS, FOCUS_REQUIRED) if fmt == FOCUS else (AZURE_COLUMNS, AZURE_REQUIRED)
    cols = _resolve(header, columns)
    missing = [columns[name][0] for name in required if not cols[name]]
    if missing:
        raise InvalidInput(f"missing columns for {fmt}: {', '.join(missing)}", key="error.usage_missing_columns",
                           columns=", ".join(missing), format=fmt)
    report.format = fmt
    parse = _parse_focus if fmt == FOCUS else _parse_azure
    row_key = _RowKey(fmt, header)
    ncols = len(header)
    dates = _DateParser()
    matcher = _SubscriptionMatcher(session)
    imported_at = now or utcnow()
    touched: dict[int, set[date]] = {}  # subscription -> UTC dates of its rows (duplicates included)
    batch: list[dict] = []
    line_end = reader.line_num

    writer = _writer(session)

    def flush():
        if batch:
            _write_batch(session, writer, batch, report)
            batch.clear()

    for row in reader:
        line = line_end + 1
        line_end = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        report.rows_read += 1
        try:
            if len(row) < ncols:
                raise BadRow(f"expected {ncols} columns, found {len(row)}")
            if len(row) > ncols and any(v.strip() for v in row[ncols:]):
                raise BadRow(f"expected {ncols} columns, found {len(row)}")
            values = parse(row, cols, dates)
            if values is None:
                report.skipped += 1
                continue
            ref = _first(row, cols["subscription"])
            if not ref:
                raise BadRow("no subscription id")
        except BadRow as exc:
            report.bad_count += 1
            if len(report.bad) < MAX_BAD_LISTED:
                report.bad.append((line, str(exc)))
            continue
        match = None
        for i in cols["subscription"]:  # SubscriptionId, then SubscriptionGuid (EA exports carry both)
            if i < len(row) and row[i].strip():
                match = matcher.match(row[i])
                if match:
                    break
        if not values["currency"]:
            if match is None:
                currency = "?"
            else:
                currency = match[2]
            values["currency"] = currency
        cur = values["currency"]
        report.file_totals[cur] = report.file_totals.get(cur, Decimal(0)) + values["cost"]
        if match is None:
            report.unmatched += 1
            key = normalise_ref(ref)
            if key in report.unmatched_refs or len(report.unmatched_refs) < MAX_UNMATCHED_LISTED:
                report.unmatched_refs[key] = report.unmatched_refs.get(key, 0) + 1
            continue
        sub_id, org_id, _plan_currency = match
        source_key, line_key = row_key(row)
        values.update(org_id=org_id, subscription_id=sub_id, source=fmt,
                      imported_at=imported_at, source_key=source_key, line_key=line_key)
        batch.append(values)
        touched.setdefault(sub_id, set()).add(values["period_start"].date())
        if len(batch) >= batch_size:
            flush()
    flush()
    report.subscriptions = len(touched)
    rollup_started = time.perf_counter()
    report.rollup_rows = _refresh_touched(session, touched)
    report.rollup_seconds = round(time.perf_counter() - rollup_started, 3)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


_INSERT_COLUMNS = ("org_id", "subscription_id", "period_start", "period_end", "service", "meter", "resource_group",
                   "resource_id", "resource_name", "quantity", "unit", "cost", "currency", "source", "source_key", "line_key",
                   "imported_at")


def _writer(session: Session) -> BulkInsert:
    """Bulk insert of usage rows; ``quantity``/``cost`` are already quantized to the 6 decimals of
    ``Price``, so their stored integer is exact and goes in as it is."""
    return BulkInsert(session, UsageRecord.__table__, _INSERT_COLUMNS, stored=("quantity", "cost"))


def _write_batch(session: Session, writer: BulkInsert, batch: list[dict], report: ImportReport) -> None:
    """Insert the rows whose key is new, corrections as the difference; commit. Identical rows
    inside the batch count once."""
    if session.get_bind().dialect.name == "postgresql":
        # First in the transaction: imports (and rating) wait for each other, so no two compute a
        # correction against the same earlier figures (SQLite: BEGIN IMMEDIATE does the same).
        session.execute(text("LOCK TABLE usagerecord IN SHARE ROW EXCLUSIVE MODE"))
    keys = list({r["source_key"] for r in batch})
    existing: set[str] = set()
    for i in range(0, len(keys), 5000):
        existing.update(session.execute(
            select(UsageRecord.source_key).where(UsageRecord.source_key.in_(keys[i:i + 5000]))).scalars())
    fresh: list[dict] = []
    for r in batch:
        k = r["source_key"]
        if k in existing:
            report.duplicates += 1
            continue
        existing.add(k)
        fresh.append(r)
    fresh = _as_corrections(session, fresh, report)
    if fresh:
        writer.insert((r["org_id"], r["subscription_id"], r["period_start"], r["period_end"], r["service"], r["meter"],
                       r["resource_group"], r["resource_id"], r["resource_name"], int(r["quantity"].scaleb(6)),
                       r["unit"], int(r["cost"].scaleb(6)), r["currency"], r["source"], r["source_key"], r["line_key"],
                       r["imported_at"]) for r in fresh)
    session.commit()
    report.imported += len(fresh)
    for r in fresh:
        report.totals[r["currency"]] = report.totals.get(r["currency"], Decimal(0)) + r["cost"]


def _as_corrections(session: Session, fresh: list[dict], report: ImportReport) -> list[dict]:
    """The rows to insert: each new row that revises a line of an earlier import becomes the
    difference (see "Corrections" in the module documentation); a line sent again with the same
    figures (only an invoice id filled in, say) is left out and counted as a duplicate."""
    if not fresh:
        return fresh
    imported_at = fresh[0]["imported_at"]
    line_keys = list({r["line_key"] for r in fresh})
    earlier: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}
    this_import: set[tuple[str, int]] = set()
    parts = [line_keys[i:i + 5000] for i in range(0, len(line_keys), 5000)]
    for part in parts:
        earlier.update({
            (lk, sid): (cost, qty) for lk, sid, cost, qty in session.execute(
                select(UsageRecord.line_key, UsageRecord.subscription_id, func.sum(UsageRecord.cost),
                       func.sum(UsageRecord.quantity))
                .where(UsageRecord.line_key.in_(part), UsageRecord.imported_at != imported_at)
                .group_by(UsageRecord.line_key, UsageRecord.subscription_id))})
    if not earlier:  # no line of this batch was imported before (the usual case)
        return fresh
    for part in parts:
        this_import.update((lk, sid) for lk, sid in session.execute(
            select(UsageRecord.line_key, UsageRecord.subscription_id)
            .where(UsageRecord.line_key.in_(part), UsageRecord.imported_at == imported_at).distinct()))
    kept = []
    for r in fresh:
        line = (r["line_key"], r["subscription_id"])
        if line not in this_import:  # else a later part of a line this import already compared
            this_import.add(line)
            if line in earlier:
                cost, qty = earlier[line]
                r["cost"] -= cost
                r["quantity"] -= qty
                if not r["cost"] and not r["quantity"]:
                    report.duplicates += 1
                    continue
                report.corrections += 1
        kept.append(r)
    return kept


def _refresh_touched(session: Session, touched: dict[int, set[date]]) -> int:
    """Rebuild the roll-up for the local days that the touched UTC dates overlap; commits."""
    if not touched:
        return 0
    tz_of = dict(session.execute(
        select(Subscription.id, Organisation.timezone).join(Organisation, Organisation.id == Subscription.org_id)
        .where(Subscription.id.in_(sorted(touched)))).all())
    pairs: set[tuple[int, date]] = set()
    for sid, utc_days in touched.items():
        tz = tz_of.get(sid, "UTC")
        for d in utc_days:
            first = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
            pairs.add((sid, clock.local_date(first, tz)))
            pairs.add((sid, clock.local_date(first + timedelta(days=1) - timedelta(microseconds=1), tz)))
    written = analytics.refresh_rollup_pairs(session, pairs)
    session.commit()
    return written


def open_text(path: str | os.PathLike) -> IO[str]:
    """A text stream over a CSV file (``.gz`` too), UTF-8 with or without a byte-order mark."""
    path = Path(path)
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, "r", encoding="utf-8-sig", newline="")


def import_file(session: Session, path: str | os.PathLike, fmt: str | None = None, *,
                batch_size: int = BATCH_SIZE, now: datetime | None = None) -> ImportReport:
    """Import one CSV file (see ``import_stream``)."""
    with open_text(path) as stream:
        try:
            return import_stream(session, stream, fmt, source=Path(path).name, batch_size=batch_size, now=now)
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{Path(path).name}: not UTF-8 text ({exc.reason})", key="error.usage_encoding") from None


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{utcnow().strftime('%Y%m%dT%H%M%S%f')}{path.suffix}"
    shutil.move(str(path), str(target))
    return target


STALE_CLAIM_SECONDS = 6 * 3600  # a file left in processing/ this long was claimed by a run that died


def _is_usage_file(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and (name.endswith(".csv") or name.endswith(".csv.gz"))


def import_folder(session: Session, folder: str | os.PathLike | None = None, *, now: datetime | None = None,
                  fmt: str | None = None) -> list[ImportReport]:
    """Import every ``*.csv``/``*.csv.gz`` in ``folder`` (default: ``PANEL_USAGE_IMPORT_DIR``).

    A file is first claimed by moving it into ``processing/`` (so two runs never take the same
    file), then moved to ``done/`` with a ``.report.json`` beside it, or to ``failed/`` when the
    whole file could not be read (unknown format, missing columns, not UTF-8). A file left in
    ``processing/`` for six hours (its run died) is taken again: re-importing adds nothing twice.
    """
    folder = Path(folder or get_settings().usage_import_dir or "")
    if not str(folder) or not folder.is_dir():
        raise InvalidInput(f"not a folder: {folder}", key="error.usage_folder")
    processing = folder / "processing"
    if processing.is_dir():
        for stale in processing.iterdir():
            try:
                if _is_usage_file(stale) and time.time() - stale.stat().st_mtime > STALE_CLAIM_SECONDS:
                    os.rename(stale, folder / stale.name)
            except FileNotFoundError:
                continue
    reports = []
    candidates = sorted(p for p in folder.iterdir() if _is_usage_file(p))
    for path in candidates:
        processing.mkdir(exist_ok=True)
        claimed = processing / path.name
        try:
            os.rename(path, claimed)  # atomic: a concurrent run gets FileNotFoundError
            os.utime(claimed)  # the claim's time (for the stale-claim rule), not the file's
        except (FileNotFoundError, FileExistsError):
            continue
        try:
            report = import_file(session, claimed, fmt, now=now)
            target = _move(claimed, folder / "done")
        except InvalidInput as exc:
            session.rollback()
            report = ImportReport(source=path.name, error=str(exc))
            target = _move(claimed, folder / "failed")
        except Exception:
            session.rollback()
            _move(claimed, folder)  # leave it for the next run
            raise
        report.source = path.name
        Path(str(target) + ".report.json").write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1),
                                                       encoding="utf-8")
        log.info("usage import: %s", report.summary())
        reports.append(report)
    return reports


# --------------------------------------------------------------------------------------------
# Export


FOCUS_EXPORT_COLUMNS = (
    "BillingAccountId", "BillingAccountName", "BillingCurrency", "BilledCost", "EffectiveCost",
    "ChargeCategory", "ChargeDescription", "ChargePeriodStart", "ChargePeriodEnd", "ConsumedQuantity",
    "ConsumedUnit", "ProviderName", "PublisherName", "InvoiceIssuerName", "ResourceId", "ResourceName",
    "ServiceName", "SubAccountId", "SubAccountName", "x_ResourceGroupName", "x_PricingCurrency",
    "x_PricingCost", "x_ExchangeRate",
)


def _iso(dt: datetime) -> str:
    return clock.aware(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def export_focus(session: Session, actor: Actor, start: date, end: date, *, chunk_rows: int = 5000
                 ) -> Iterator[bytes]:
    """The organisation's usage of ``[start, end)`` (local dates) as FOCUS CSV, in chunks of bytes.

    Costs are the customer's: the price with the plan's markup, in the billing currency at the rate
    the rating used (the day's rate while not rated yet); ``x_PricingCost``/``x_PricingCurrency``
    give it in the usage currency. Access is checked at once; rows stream as the result is read.
    """
    access = can_read(session, actor)
    if end <= start:
        raise InvalidInput("period: the end must be after the start", field="period", key="error.analytics_period")
    org = session.get(Organisation, access.org_id)
    subs = analytics.subscriptions_of(session, org.id)
    return _export_rows(session, org, subs, start, end, chunk_rows)


def _export_rows(session: Session, org: Organisation, subs: dict, start: date, end: date, chunk_rows: int
                 ) -> Iterator[bytes]:
    a, b = clock.local_midnight(start, org.timezone), clock.local_midnight(end, org.timezone)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FOCUS_EXPORT_COLUMNS)
    rate_cache: dict = {}
    query = (
        select(UsageRecord.period_start, UsageRecord.period_end, UsageRecord.subscription_id, UsageRecord.service,
               UsageRecord.meter, UsageRecord.resource_group, UsageRecord.resource_id, UsageRecord.resource_name,
               UsageRecord.quantity, UsageRecord.unit, UsageRecord.cost, UsageRecord.currency)
        .where(UsageRecord.org_id == org.id, UsageRecord.period_start >= a, UsageRecord.period_start < b)
        .order_by(UsageRecord.period_start, UsageRecord.id)
        .execution_options(yield_per=chunk_rows)
    )
    n = 0
    for ps, pe, sid, svc, meter, rg, rid, rname, qty, unit, cost, currency in session.execute(query):
        info = subs.get(sid)
        markup = info.markup_pct if info else Decimal(0)
        price = cost * (1 + markup / 100)
        key = (currency, clock.local_date(ps, org.timezone))
        if key not in rate_cache:
            try:
                rate_cache[key] = rates.usage_rate(session, currency, org.billing_currency, key[1])
            except RateMissing:
                rate_cache[key] = None
        fx = rate_cache[key]
        billed = _plain((price * fx).quantize(MICRO, rounding=ROUND_HALF_UP)) if fx is not None else ""
        writer.writerow((
            str(org.id), org.name, org.billing_currency, billed, billed, "Usage", meter, _iso(ps), _iso(pe),
            _plain(qty), unit, info.vendor_name if info else "", info.vendor_name if info else "",
            get_settings().seller_name, rid, rname, svc, info.vendor_ref if info else "",
            info.name if info else str(sid), rg, currency, _plain(price.quantize(MICRO, rounding=ROUND_HALF_UP)),
            _plain(fx) if fx is not None else "",
        ))
        n += 1
        if n % chunk_rows == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def export_focus_bytes(session: Session, actor: Actor, start: date, end: date) -> bytes:
    return b"".join(export_focus(session, actor, start, end))


__all__ = [
    "ImportReport", "BadRow", "FOCUS", "AZURE", "FORMATS", "detect_format", "normalise_ref", "import_stream",
    "import_file", "import_folder", "open_text", "export_focus", "export_focus_bytes", "FOCUS_EXPORT_COLUMNS",
]
