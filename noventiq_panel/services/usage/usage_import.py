"""Import of pay-as-you-go usage from the vendors' exports (formats: ``usage_formats``).

The importer streams: the ``csv`` module reads the text stream row by row and rows are written in
batches (``batch_size``, one transaction each), so memory does not grow with the file. Each row's
``source_key`` (``usage_formats``) makes re-importing a file add nothing, and an identical line
repeated inside a file counts as a duplicate.

Corrections. Vendors deliver month-to-date exports again and again, and revise the figures of
recent lines (late meter readings, price corrections) or fill in an invoice id. A new row whose
``line_key`` (the row's identity without its figures and invoice ids) was imported by another,
earlier import (its records have another ``imported_at``) is a correction of that line: it is
recorded as a record of the difference (new cost and quantity minus what earlier imports recorded
for the line), so the records of a line always add up to its latest figures and rating charges
only the difference, once. The earlier figures are those of the line wherever they were recorded (by
``line_key`` alone): a revision after the line's account moved to another subscription is still the
difference, and it is recorded on the subscription that first recorded the line (never on another
organisation's). A record of an import before issue 17's review carries a legacy key
(``usage_formats.LegacyRowKey``), one of a FOCUS 1.1+ file imported while 1.1's columns were part
of a line's identity the key of then (``usage_formats.FOCUS_DROPPED_IDENTITY``): every such key is
matched (``UsageCsv.alt_keys``). Rows of one import with the same ``line_key`` (a line split in tiers)
add up: only the first of them is compared with the earlier imports. A line sent again with the
same figures (an invoice id filled in) adds no record and counts as a duplicate. Imports take the
usage table's lock for each batch (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SHARE ROW
EXCLUSIVE``), so two imports never compute a difference against the same figures.

Rows are matched to subscriptions by ``Subscription.vendor_ref`` (``SubAccountId``/
``SubscriptionId``, case and ``/subscriptions/`` prefix ignored); rows with no matching
subscription are counted and listed by reference, rows that cannot be read are listed with their
line number and the reason, and the good rows are imported.

Charge categories. Every FOCUS ``ChargeCategory`` (Azure ``ChargeType``) is imported — usage,
purchases, credits and adjustments alike, a credit as a record with a negative cost (rating nets it
with the usage of its period; see ``rating``) — except tax, which is skipped and counted. So that
an operator sees at a glance that nothing was lost, the report totals the file per account
(``SubAccountId``/``SubscriptionId``, normalised), charge category and currency (``accounts``:
every readable row, tax and unmatched rows included) next to what the panel holds for those rows
after the import ("recorded": new records, and rows an earlier import already recorded; a row
repeated identically in the file counts once) and what this import added ("new": corrections as
their difference). Where "file" and "recorded" differ, the counts say why (tax skipped, unmatched,
a repeated line).

Importing is an operation of the reseller (CLI, scheduled folder: ``folder_import``), not of a
customer: it takes no actor. The daily roll-up of the touched (subscription, day) pairs is rebuilt
at the end.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO

from sqlalchemy import func, select, text
from sqlmodel import Session

from noventiq_panel.db import BulkInsert
from noventiq_panel.models import Organisation, Plan, Subscription, UsageRecord
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import clock
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.usage import rollup
from noventiq_panel.services.usage.usage_formats import BadRow, UsageCsv, normalise_ref

BATCH_SIZE = 5000
MAX_BAD_LISTED = 1000  # the report lists this many bad lines (and counts all)
MAX_UNMATCHED_LISTED = 100


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
    # (account, charge category, currency) -> [file total, recorded total, new]; see the module documentation
    accounts: dict[tuple[str, str, str], list[Decimal]] = field(default_factory=dict)
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
        d["accounts"] = [{"account": a, "category": c, "currency": cur, "file": str(v[0]), "recorded": str(v[1]),
                          "new": str(v[2])} for (a, c, cur), v in sorted(self.accounts.items())]
        return d

    def _account(self, key: tuple[str, str, str]) -> list[Decimal]:
        totals = self.accounts.get(key)
        if totals is None:
            totals = self.accounts[key] = [Decimal(0), Decimal(0), Decimal(0)]
        return totals

    def account_lines(self) -> list[str]:
        """One line per account, category and currency: the file's total next to what was recorded."""
        lines = []
        for (account, category, currency), (in_file, recorded, new) in sorted(self.accounts.items()):
            mark = "" if in_file == recorded else "  <- differs"
            lines.append(f"  {account or '-'} {category} {currency}: file {in_file}, recorded {recorded}, "
                         f"new {new}{mark}")
        return lines

    def summary(self) -> str:
        totals = ", ".join(f"{v} {k}" for k, v in sorted(self.totals.items())) or "0"
        return (f"{self.source or '-'} [{self.format}]: read {self.rows_read}, imported {self.imported}, "
                f"corrections {self.corrections}, duplicates {self.duplicates}, unmatched {self.unmatched}, skipped {self.skipped}, "
                f"bad {self.bad_count}; imported cost {totals}"
                + "".join("\n" + line for line in self.account_lines()))


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


def import_stream(session: Session, stream: IO[str], fmt: str | None = None, *, source: str = "",
                  batch_size: int = BATCH_SIZE, now: datetime | None = None) -> ImportReport:
    """Import usage rows from a text stream. Commits each batch; returns the report.

    ``fmt`` is ``"focus"`` or ``"azure"``; ``None`` detects it from the header. An unknown format
    or missing required columns raise ``InvalidInput`` before anything is written.
    """
    started = time.perf_counter()
    report = ImportReport(source=source)
    usage_csv = UsageCsv(stream, fmt)
    report.format = usage_csv.format
    matcher = _SubscriptionMatcher(session)
    imported_at = now or utcnow()
    touched: dict[int, set[date]] = {}  # subscription -> UTC dates of its rows (duplicates included)
    batch: list[dict] = []

    writer = _writer(session)

    def flush():
        if batch:
            _write_batch(session, writer, batch, report, touched)
            batch.clear()

    for line, row in usage_csv.rows():
        report.rows_read += 1
        try:
            parsed = usage_csv.parse(row)
        except BadRow as exc:
            report.bad_count += 1
            if len(report.bad) < MAX_BAD_LISTED:
                report.bad.append((line, str(exc)))
            continue
        values, ref = parsed
        category = values.pop("charge_category")
        if values.pop("skip", False):  # tax: not billed here, but in the report's totals
            report.skipped += 1
            report._account((normalise_ref(ref), category, values["currency"]))[0] += values["cost"]
            continue
        match = None
        for candidate in usage_csv.references(row):
            match = matcher.match(candidate)
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
        account = (normalise_ref(ref), category, cur)
        report._account(account)[0] += values["cost"]
        if match is None:
            report.unmatched += 1
            key = normalise_ref(ref)
            if key in report.unmatched_refs or len(report.unmatched_refs) < MAX_UNMATCHED_LISTED:
                report.unmatched_refs[key] = report.unmatched_refs.get(key, 0) + 1
            continue
        sub_id, org_id, _plan_currency = match
        source_key, line_key = usage_csv.key(row)
        alt = [k for k in usage_csv.alt_keys(row) if k != (source_key, line_key)]
        values.update(org_id=org_id, subscription_id=sub_id, source=usage_csv.format,
                      imported_at=imported_at, source_key=source_key, line_key=line_key, account=account,
                      alt_source_keys=tuple(dict.fromkeys(k for k, _ in alt)),
                      alt_line_keys=tuple(dict.fromkeys(k for _, k in alt)))
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


def _write_batch(session: Session, writer: BulkInsert, batch: list[dict], report: ImportReport,
                 touched: dict[int, set[date]] | None = None) -> None:
    """Insert the rows whose key is new, corrections as the difference; commit. Identical rows
    inside the batch count once. A row is known by its ``source_key`` or by a key an earlier scheme
    gave it (``alt_source_keys``: ``UsageCsv.alt_keys``; the records imported then carry those)."""
    if session.get_bind().dialect.name == "postgresql":
        # First in the transaction: imports (and rating) wait for each other, so no two compute a
        # correction against the same earlier figures (SQLite: BEGIN IMMEDIATE does the same).
        session.execute(text("LOCK TABLE usagerecord IN SHARE ROW EXCLUSIVE MODE"))
    keys = list({r["source_key"] for r in batch} | {k for r in batch for k in r["alt_source_keys"]})
    existing: dict[str, bool] = {}  # source key -> recorded by an earlier import (not a repeat in this one)
    imported_at = batch[0]["imported_at"]
    for i in range(0, len(keys), 5000):
        existing.update((k, at != imported_at) for k, at in session.execute(
            select(UsageRecord.source_key, UsageRecord.imported_at)
            .where(UsageRecord.source_key.in_(keys[i:i + 5000]))).all())
    fresh: list[dict] = []
    for r in batch:
        k = r["source_key"]
        known = [key for key in (k, *r["alt_source_keys"]) if key in existing]
        if known:
            report.duplicates += 1
            if any(existing[key] for key in known):  # the panel holds this row already; a repeat
                report._account(r["account"])[1] += r["cost"]  # inside this file counts once
            continue
        existing[k] = False
        report._account(r["account"])[1] += r["cost"]  # the line's records add up to this row's cost
        fresh.append(r)
    fresh = _as_corrections(session, fresh, report)
    if touched is not None:  # a correction stays on the subscription that first recorded its line
        for r in fresh:
            touched.setdefault(r["subscription_id"], set()).add(r["period_start"].date())
    if fresh:
        writer.insert((r["org_id"], r["subscription_id"], r["period_start"], r["period_end"], r["service"], r["meter"],
                       r["resource_group"], r["resource_id"], r["resource_name"], int(r["quantity"].scaleb(6)),
                       r["unit"], int(r["cost"].scaleb(6)), r["currency"], r["source"], r["source_key"], r["line_key"],
                       r["imported_at"]) for r in fresh)
    session.commit()
    report.imported += len(fresh)
    for r in fresh:
        report.totals[r["currency"]] = report.totals.get(r["currency"], Decimal(0)) + r["cost"]
        report._account(r["account"])[2] += r["cost"]


def _as_corrections(session: Session, fresh: list[dict], report: ImportReport) -> list[dict]:
    """The rows to insert: each new row that revises a line of an earlier import becomes the
    difference (see "Corrections" in the module documentation); a line sent again with the same
    figures (only an invoice id filled in, say) is left out and counted as a duplicate.

    Earlier figures are looked up by the line alone (its ``line_key``, or the keys of an earlier
    scheme its records may carry: ``alt_line_keys``), not per subscription: the
    account of a line may have moved to another subscription (of another organisation, even) since,
    and the revision must be the difference all the same. A corrected line stays on the subscription
    (and organisation) that first recorded it: the correction is that subscription's money."""
    if not fresh:
        return fresh
    imported_at = fresh[0]["imported_at"]
    line_keys = list({r["line_key"] for r in fresh} | {k for r in fresh for k in r["alt_line_keys"]})
    earlier: dict[str, list] = {}  # line key -> [cost, quantity, first record id]
    parts = [line_keys[i:i + 5000] for i in range(0, len(line_keys), 5000)]
    for part in parts:
        for lk, cost, qty, first_id in session.execute(
                select(UsageRecord.line_key, func.sum(UsageRecord.cost), func.sum(UsageRecord.quantity),
                       func.min(UsageRecord.id))
                .where(UsageRecord.line_key.in_(part), UsageRecord.imported_at != imported_at)
                .group_by(UsageRecord.line_key)):
            earlier[lk] = [cost, qty, first_id]
    if not earlier:  # no line of this batch was imported before (the usual case)
        return fresh
    owner = {rid: (sid, oid) for rid, sid, oid in session.execute(
        select(UsageRecord.id, UsageRecord.subscription_id, UsageRecord.org_id)
        .where(UsageRecord.id.in_(sorted({v[2] for v in earlier.values()}))))}
    this_import: dict[str, tuple[int, int]] = {}  # line key -> (subscription, org) this import put it on
    for part in parts:
        this_import.update((lk, (sid, oid)) for lk, sid, oid in session.execute(
            select(UsageRecord.line_key, UsageRecord.subscription_id, UsageRecord.org_id)
            .where(UsageRecord.line_key.in_(part), UsageRecord.imported_at == imported_at).distinct()))
    kept = []
    for r in fresh:
        line = r["line_key"]
        if line in this_import:  # a later part of a line this import already compared: on the same subscription
            r["subscription_id"], r["org_id"] = this_import[line]
        else:
            found = [earlier[k] for k in dict.fromkeys((line, *r["alt_line_keys"])) if k in earlier]
            if found:
                r["cost"] -= sum((f[0] for f in found), Decimal(0))
                r["quantity"] -= sum((f[1] for f in found), Decimal(0))
                r["subscription_id"], r["org_id"] = owner[min(f[2] for f in found)]
            this_import[line] = (r["subscription_id"], r["org_id"])
            if found:
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
    written = rollup.refresh_rollup_pairs(session, pairs)
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

