"""Import of pay-as-you-go usage from the vendors' exports (formats: ``usage_formats``).

The importer streams: the ``csv`` module reads the text stream row by row and rows are written in
batches (``batch_size``, one transaction each), so memory does not grow with the file. Each row's
``source_key`` (``usage_formats``) makes re-importing a file add nothing, and an identical line
repeated inside a file counts as a duplicate.

Corrections. Vendors deliver month-to-date exports again and again, and revise the figures of
recent lines (late meter readings, price corrections) or fill in an invoice id. A line is known by
its ``line_key`` (the row's identity without its figures and invoice ids); it may come as several
rows (tiers), which add up. A delivery that brings a row the panel does not hold yet of a line that
an earlier import recorded (its records have another ``imported_at``) revises that line: **all the
line's rows in the delivery** (the rows the panel already holds too, wherever in the file they are)
are summed and compared with what earlier imports recorded for the line, and the difference is
recorded once, as one record (on the fields and ``source_key`` of the line's first new row). So the
records of a line always add up to its latest figures and rating charges only the difference, once;
comparing one row with the whole line would credit the line's other rows and charge them again
later. The rows of such lines are kept aside (a temporary file, ``_KeptLines``) until the whole
delivery is read and written after it, so a line is never recorded at a figure no delivery stated,
not even between two batches (rating may run between them). A line sent again with the same figures
(an invoice id filled in) adds no record and counts as duplicates; a delivery that holds only rows
the panel already has (an older export imported again, say) leaves the line alone. The earlier
figures are those of the line wherever they were recorded (by ``line_key`` alone): a revision after
the line's account moved to another subscription is still the difference, and it is recorded on
the subscription that first recorded the line (never on another organisation's). A record of an
import before issue 17's review carries a legacy key (``usage_formats.LegacyRowKey``), one of a
FOCUS 1.1+ file imported while 1.1's columns were part of a line's identity the key of then
(``usage_formats.FOCUS_DROPPED_IDENTITY``): every such key is matched (``UsageCsv.alt_keys``).
Imports take the usage table's lock for each batch and for the revisions (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: ``SHARE ROW EXCLUSIVE``), so two imports never compute a difference
against the same figures.

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
import pickle
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Iterator

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
    kept = _KeptLines()  # this delivery's rows of lines an earlier import recorded

    def flush():
        if batch:
            _write_batch(session, writer, batch, report, touched, kept)
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
        category = values["charge_category"]
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
    try:
        flush()
        _revise_lines(session, writer, kept, report, touched)
    finally:
        kept.close()
    report.subscriptions = len(touched)
    rollup_started = time.perf_counter()
    report.rollup_rows = _refresh_touched(session, touched)
    report.rollup_seconds = round(time.perf_counter() - rollup_started, 3)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


_INSERT_COLUMNS = ("org_id", "subscription_id", "period_start", "period_end", "service", "meter", "resource_group",
                   "resource_id", "resource_name", "quantity", "unit", "cost", "currency", "charge_category", "source",
                   "source_key", "line_key", "imported_at")


def _writer(session: Session) -> BulkInsert:
    """Bulk insert of usage rows; ``quantity``/``cost`` are already quantized to the 6 decimals of
    ``Price``, so their stored integer is exact and goes in as it is."""
    return BulkInsert(session, UsageRecord.__table__, _INSERT_COLUMNS, stored=("quantity", "cost"))


def _write_batch(session: Session, writer: BulkInsert, batch: list[dict], report: ImportReport,
                 touched: dict[int, set[date]], kept: _KeptLines) -> None:
    """Insert the rows of lines no earlier import recorded; commit. A row of a line an earlier
    import recorded is kept aside (``kept``) with the line's other rows of this delivery, and the
    line is revised once the whole delivery is read (``_revise_lines``). Identical rows count once.
    A row is known by its ``source_key`` or by a key an earlier scheme gave it (``alt_source_keys``:
    ``UsageCsv.alt_keys``; the records imported then carry those)."""
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
    recorded_before: list[dict] = []
    for r in batch:
        k = r["source_key"]
        known = [key for key in (k, *r["alt_source_keys"]) if key in existing]
        if known:
            report.duplicates += 1
            if any(existing[key] for key in known):  # the panel holds this row already; a repeat
                report._account(r["account"])[1] += r["cost"]  # inside this file counts once
                recorded_before.append(r)  # a row of its line, should another row of it be revised
            continue
        existing[k] = False
        report._account(r["account"])[1] += r["cost"]  # the line's records add up to this row's cost
        fresh.append(r)
    kept.keep(recorded_before, revision=False)
    fresh = _new_lines(session, fresh, kept, report)
    for r in fresh:
        touched.setdefault(r["subscription_id"], set()).add(r["period_start"].date())
    _insert(writer, fresh)
    session.commit()
    _count_inserted(report, fresh)


def _insert(writer: BulkInsert, rows: list[dict]) -> None:
    if rows:
        writer.insert((r["org_id"], r["subscription_id"], r["period_start"], r["period_end"], r["service"], r["meter"],
                       r["resource_group"], r["resource_id"], r["resource_name"], int(r["quantity"].scaleb(6)),
                       r["unit"], int(r["cost"].scaleb(6)), r["currency"], r["charge_category"], r["source"],
                       r["source_key"], r["line_key"], r["imported_at"]) for r in rows)


def _count_inserted(report: ImportReport, rows: list[dict]) -> None:
    report.imported += len(rows)
    for r in rows:
        report.totals[r["currency"]] = report.totals.get(r["currency"], Decimal(0)) + r["cost"]
        report._account(r["account"])[2] += r["cost"]


def _new_lines(session: Session, fresh: list[dict], kept: _KeptLines, report: ImportReport) -> list[dict]:
    """The rows of ``fresh`` to insert now: those of lines no earlier import recorded (their tiers
    in later batches too). A row of a line an earlier import recorded — by its ``line_key`` or a key
    of an earlier scheme (``alt_line_keys``) — or of a line this delivery already kept aside is a
    revision of that line: it is kept aside too, to be compared as part of the line's whole."""
    if not fresh:
        return fresh
    imported_at = fresh[0]["imported_at"]
    line_keys = list({r["line_key"] for r in fresh} | {k for r in fresh for k in r["alt_line_keys"]})
    earlier: set[str] = set()
    for i in range(0, len(line_keys), 5000):
        earlier.update(session.execute(
            select(UsageRecord.line_key)
            .where(UsageRecord.line_key.in_(line_keys[i:i + 5000]), UsageRecord.imported_at != imported_at)
            .distinct()).scalars())
    aside = kept.lines_among({r["line_key"] for r in fresh})
    now, revisions = [], []
    for r in fresh:
        if r["line_key"] in aside or any(k in earlier for k in (r["line_key"], *r["alt_line_keys"])):
            revisions.append(r)
        else:
            now.append(r)
    for r, first in zip(revisions, kept.keep(revisions, revision=True)):
        if not first:  # the same row again in another batch of this delivery: it counts once
            report.duplicates += 1
            report._account(r["account"])[1] -= r["cost"]
    return now


class _KeptLines:
    """This delivery's rows of lines that earlier imports recorded, kept until the whole delivery is
    read (see "Corrections" in the module documentation) — in a private temporary SQLite file of
    the standard library's ``sqlite3`` (not the panel's database: nothing of it is visible to
    rating), so memory does not grow with the file. A row is kept once (by its ``source_key``):
    the same row twice in a delivery counts once. Rows the panel already holds are kept with their
    figures only; a row it does not (``revision``) makes its line a revision and is kept whole."""

    def __init__(self):
        self.db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self.db is None:
            self.db = sqlite3.connect("")  # a temporary file, deleted when closed
            self.db.execute("CREATE TABLE kept (seq INTEGER PRIMARY KEY, line_key TEXT NOT NULL, "
                            "source_key TEXT NOT NULL, cost TEXT NOT NULL, quantity TEXT NOT NULL, alt TEXT NOT NULL, "
                            "row BLOB)")
            self.db.execute("CREATE UNIQUE INDEX kept_row ON kept (line_key, source_key)")
            self.db.execute("CREATE TABLE revised (line_key TEXT PRIMARY KEY) WITHOUT ROWID")
        return self.db

    def keep(self, rows: list[dict], revision: bool) -> list[bool]:
        """Keep ``rows``; for each row of a ``revision``, whether it is the first of its
        ``source_key`` here (rows the panel already holds: nothing is returned)."""
        if not rows:
            return []
        db = self._open()
        insert = ("INSERT OR IGNORE INTO kept (line_key, source_key, cost, quantity, alt, row) "
                  "VALUES (?,?,?,?,?,?)")
        values = ((r["line_key"], r["source_key"], str(r["cost"]), str(r["quantity"]), " ".join(r["alt_line_keys"]),
                   pickle.dumps(r) if revision else None) for r in rows)
        if not revision:
            db.executemany(insert, values)
            return []
        first = [db.execute(insert, v).rowcount == 1 for v in values]
        db.executemany("INSERT OR IGNORE INTO revised VALUES (?)", [(r["line_key"],) for r in rows])
        return first

    def lines_among(self, line_keys: set[str]) -> set[str]:
        if self.db is None or not line_keys:
            return set()
        keys, found = sorted(line_keys), set()
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            found.update(k for (k,) in self.db.execute(
                f"SELECT DISTINCT line_key FROM kept WHERE line_key IN ({','.join('?' * len(part))})", part))
        return found

    def revisions(self, size: int = 1000) -> Iterator[list[dict]]:
        """The revised lines, ``size`` at a time: per line its rows' total cost and quantity, the
        keys of earlier schemes its rows name, how many of its rows the panel did not hold, and the
        first of those rows (whose fields and ``source_key`` its correction takes)."""
        if self.db is None:
            return
        lines: list[dict] = []
        line: dict | None = None
        for key, cost, quantity, alt, row in self.db.execute(
                "SELECT k.line_key, k.cost, k.quantity, k.alt, k.row FROM revised r "
                "JOIN kept k ON k.line_key = r.line_key ORDER BY k.line_key, k.seq"):
            if line is None or line["line_key"] != key:
                if line is not None:
                    lines.append(line)
                    if len(lines) >= size:
                        yield lines
                        lines = []
                line = {"line_key": key, "cost": Decimal(0), "quantity": Decimal(0), "alt": set(), "revised": 0,
                        "row": None}
            line["cost"] += Decimal(cost)
            line["quantity"] += Decimal(quantity)
            line["alt"].update(alt.split())
            if row is not None:
                line["revised"] += 1
                if line["row"] is None:
                    line["row"] = pickle.loads(row)
        if line is not None:
            lines.append(line)
        if lines:
            yield lines

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _revise_lines(session: Session, writer: BulkInsert, kept: _KeptLines, report: ImportReport,
                  touched: dict[int, set[date]]) -> None:
    """Record each revised line of the delivery as the difference between all its rows here and
    what earlier imports recorded for it, one record per line; commits per group of lines."""
    for lines in kept.revisions():
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("LOCK TABLE usagerecord IN SHARE ROW EXCLUSIVE MODE"))
        rows = _as_corrections(session, lines, report)
        for r in rows:
            touched.setdefault(r["subscription_id"], set()).add(r["period_start"].date())
        _insert(writer, rows)
        session.commit()
        _count_inserted(report, rows)


def _as_corrections(session: Session, lines: list[dict], report: ImportReport) -> list[dict]:
    """The records of the revised ``lines`` (``_KeptLines.revisions``): each line whose rows in this
    delivery add up to other figures than earlier imports recorded for it becomes one record of
    the difference (see "Corrections" in the module documentation); a line that adds up to the same
    figures (an invoice id filled in, say) adds nothing and its rows count as duplicates.

    Earlier figures are looked up by the line alone (its ``line_key``, or the keys of an earlier
    scheme its records may carry), not per subscription: the account of a line may have moved to
    another subscription (of another organisation, even) since, and the revision must be the
    difference all the same. A corrected line stays on the subscription (and organisation) that
    first recorded it: the correction is that subscription's money."""
    if not lines:
        return []
    imported_at = lines[0]["row"]["imported_at"]
    line_keys = list({line["line_key"] for line in lines} | {k for line in lines for k in line["alt"]})
    earlier: dict[str, list] = {}  # line key -> [cost, quantity, first record id]
    for i in range(0, len(line_keys), 5000):
        for lk, cost, qty, first_id in session.execute(
                select(UsageRecord.line_key, func.sum(UsageRecord.cost), func.sum(UsageRecord.quantity),
                       func.min(UsageRecord.id))
                .where(UsageRecord.line_key.in_(line_keys[i:i + 5000]), UsageRecord.imported_at != imported_at)
                .group_by(UsageRecord.line_key)):
            earlier[lk] = [cost, qty, first_id]
    owner = {rid: (sid, oid) for rid, sid, oid in session.execute(
        select(UsageRecord.id, UsageRecord.subscription_id, UsageRecord.org_id)
        .where(UsageRecord.id.in_(sorted({v[2] for v in earlier.values()}))))} if earlier else {}
    out = []
    for line in lines:
        r = dict(line["row"])
        found = [earlier[k] for k in dict.fromkeys((line["line_key"], *sorted(line["alt"]))) if k in earlier]
        r["cost"] = line["cost"] - sum((f[0] for f in found), Decimal(0))
        r["quantity"] = line["quantity"] - sum((f[1] for f in found), Decimal(0))
        if found:
            r["subscription_id"], r["org_id"] = owner[min(f[2] for f in found)]
        if not r["cost"] and not r["quantity"]:
            report.duplicates += line["revised"]
            continue
        report.duplicates += line["revised"] - 1  # the line's other new rows are in its one record
        report.corrections += 1 if found else 0
        out.append(r)
    return out


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

