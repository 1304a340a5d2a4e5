"""Metered rating: usage records not yet charged → one ledger entry per subscription, local day
and usage currency (the increment of the run).

**The billing period is the local day, hourly plans included** (issue 17). Hourly plans are still
charged every hour — the hourly job rates each new hour's records as they arrive — but a run posts
one entry per subscription, day in the organisation's time zone and usage currency: the increment
of that run, not one entry per hour. A catch-up over 30 days writes 30 entries per subscription,
not 720; a later run of the same day posts another entry (its own records, a higher max record
id). Why: an entry per hour was 24 ledger rows a day per subscription (720 a month), which made
the ledger, the transactions list and every balance query grow with the hours while saying
nothing the records do not; the hourly detail stays in the usage records (and the analytics
roll-up ``UsageDaily``, read per day anyway). Nothing else moves: an hour's usage is in the same
local day, so the month (closing documents, the postpaid month), the usage day's fixed rate, the
transactions page and analytics read the same figures, seats are not rated at all. Rounding: once
per entry (the run's records of the day summed, then rounded half-up, see "Amount"), so a day
rated in several runs may differ from one run by the rounding of each entry — never by a record.

What is charged is decided by a watermark, not by marking records: ``RatingWatermark`` keeps, per
subscription, the highest record id already settled, and a record is new exactly when its id is
above it. Record ids only grow (``models/usage.py``), and a batch reads the records while imports
are locked out (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE usagerecord IN SHARE ROW
EXCLUSIVE MODE``, which waits for running imports and is self-exclusive, taken before the snapshot),
so a record committed later always has a higher id than the watermark set now.

One batch (``batch_subscriptions`` subscriptions, one transaction), all of it set-based SQL:

1. the pay-as-you-go subscriptions with records above their watermark go into a temporary table,
   with the first and last start of their new records (a subscription never rated: the index on
   (subscription, period_start) answers at once; else its new records are read by id);
2. Python lists the local days those spans cover per time zone (``clock.day_bounds``: any zone,
   DST included) and cuts each subscription's days into *segments*: the whole day, or — for a
   subscription suspended or in a trial — the parts of the day before and after ``suspended_at`` /
   ``trial_ends_at``, each with the reason it is not billed (see "Not billable": decided per hour,
   by each record's own start, before the day is summed);
3. one ``GROUP BY`` sums the new records of each segment per usage currency, reading each
   segment's range of the covering index ``ix_usage_rating``; SQLite groups in the order it reads
   (no sort of millions of rows), PostgreSQL per segment in a lateral subquery;
4. the few rates needed are looked up (and fixed for their day);
5. one ``INSERT … SELECT`` posts an entry per (segment, currency) under the key
   ``usage:{subscription}:{day start UTC %Y%m%dT%H%M}:{max record id}`` with
   ``ON CONFLICT (idempotency_key) DO NOTHING`` (money moves only under a unique key; the parts of a
   cut day settle different records, so their max ids, and keys, differ);
6. the watermarks move to the highest record id summed, in the same transaction.

An entry's ``period_start``/``period_end`` are its local day; an entry of part of a day (a cut
segment) says which part in its meta, ``records_from``/``records_until`` (ISO, UTC): the ledger
check attributes records to entries by it.

A crash mid-batch leaves nothing of the batch; a second run finds nothing above the watermarks; a
concurrent run waits for the lock and then finds the watermarks moved.

Why not ``ledger.entry_row``/``post_many``: they build each entry in Python, so rating would read
every group back out of the database, price it and write it again — the cost the benchmark
(``bench/bench_rating.py``) measures away. The entries are therefore made by the database, under
the ledger's rules written for SQL once here: the key (``_KEY_SQL``), the amount rounded half-up
once to the billing currency's minor unit (:func:`amount_minor`, the same rounding as
``money.round_money``; :meth:`_Dialect.half_up` is its SQL form), the description cut to the
column's 500 characters, and a key already posted left alone (``ON CONFLICT DO NOTHING``, as
``post_many`` skips it).

Amount (billing currency, negative = a charge), from the two figures stored on the entry::

    source_amount = round_half_up(Σ cost × (1 + usage_markup_pct/100), 6 decimals)   (usage currency)
    amount        = −round_half_up(source_amount × fx_rate, minor unit)

so anyone can recompute an entry from what it shows. ``fx_rate`` is the rate of the usage day (the
entry's local day in the organisation's time zone), fixed the first time usage of that day is
charged (``rates.usage_rate``, ``UsageFxRate``): late records of a day are charged at the same rate
as the rest of it, and analytics convert every record of the day at it. ``occurred_at`` is the
period's start (a month's usage is in that month), ``created_at`` when it was rated — except for
late usage of a closed month (its closing documents already generated — whether it got an act or
its credit was carried — or a later act made; ``documents.closed_through``): that is dated when it
is rated, so it goes into the next document instead of into none (the period fields keep the
usage's own dates).

Credits (issue 17). An export's credit, refund or negative adjustment line (FOCUS ``ChargeCategory``
Credit/Adjustment, a negative ``BilledCost``; Azure ``Refund``) is an ordinary usage record with a
negative cost, and it is rated by exactly the rules of usage, decided so:

- **Netted in its day, one entry.** Its record sums into its (subscription, day, currency)
  group with the usage of that day (rated in the same run), so the entry is the net; a day whose records net negative
  gets a *positive* ``usage`` entry (the balance goes up by it). The ledger kind stays ``usage``:
  the credit offsets consumption of that subscription, so spend, the closing documents and the
  postpaid month (``CONSUMPTION_KINDS``) net it with the usage it offsets, and the ledger check
  finds the records of every usage entry as before. A credit thus only ever reduces what the
  organisation owes for that subscription; it never reaches another subscription or organisation.
- **Same markup.** ``source_amount`` = Σ cost × (1 + markup): the customer was charged the usage
  with the plan's markup, so a vendor credit against it is passed on with the same markup. A credit
  without markup would leave the customer paying the markup on usage the vendor took back; and one
  rule for both signs keeps the entry the net of its records (rounded once), whatever the mix.
- **Same rate.** The rate of the credit line's own usage day (its local day), fixed
  once per day (``UsageFxRate``) like usage: a credit dated on a usage day offsets that day's usage
  at the very rate it was charged at. A FOCUS credit line names no usage line it offsets, so the
  rate of its own day is the only one that can be told from the file.
- **Once.** The credit's record is settled by the watermark like any record (the key names the
  highest record id it settles), so it is credited exactly once; its sign is the sign of its cost,
  never turned into a debit. Records of a suspended period or a trial are settled as not billed, a
  credit among them too (it offsets usage that was not charged).

- **Capped at what was charged** (review of issue 17). Credits give back at most what the
  subscription was charged for usage: after a batch, the sum of the subscription's ``usage``
  entries (all of its history: charges with markup, net of earlier credits, in the billing
  currency) is never above 0 — credits never pay out money the customer did not pay (a standalone
  credit on a subscription never charged, a credit of trial usage dated after the trial, which was
  settled as not billed). The charges of the batch itself count before its credits. A credit entry
  above the room is lowered to it (to 0 when there is none): its meta says ``"capped": true`` and
  ``"uncredited"`` (the part not credited, billing currency), its ``source_amount``/``fx_rate``
  still show the full credit; the part not credited is not credited at all (it stays with the
  reseller against the vendor) and is listed in ``RatingSummary.uncredited`` for the operator.
  A capped entry stays capped: a later charge does not release it.

``RatingSummary.charged`` is the net (debits minus credits) per currency; ``credited`` what the
entries that came out positive gave back; ``uncredited`` what the cap kept back.

Not billable, decided per record (hour), never per day: records of a **suspended** subscription
whose period starts at or after ``suspended_at`` (all of them when it is unknown) — except one
suspended for credit (an overdrawn organisation, ``credit_control``), whose usage that still arrives
is charged and shown — and records of a **trial** that start before ``trial_ends_at``; they are
settled with a zero-amount entry (meta ``not_billed``), so resuming never charges the suspension.
A day cut by a suspension at 13:00 thus gets a charged entry of its hours before 13:00 and a
zero entry of those from 13:00 on. Records whose day has no exchange rate at all (not even an earlier one)
wait: the subscription's watermark stops below the first of them (later records of it wait too, so
nothing is charged out of order twice), and they are listed in the summary.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from noventiq_panel.models import (
    BillingType,
    LedgerEntry,
    Organisation,
    Plan,
    RatingWatermark,
    Subscription,
    SubscriptionStatus,
    UsageRecord,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import documents
from noventiq_panel.services.core import rates
from noventiq_panel.services.core.clock import day_bounds, local_midnight, next_month
from noventiq_panel.services.core.errors import RateMissing
from noventiq_panel.services.core.money import minor_unit
from noventiq_panel.services.usage import rollup

log = logging.getLogger(__name__)

MICRO = 10**6
_PCT_DEN = 100 * MICRO  # usage_markup_pct is stored in micro-percent
_RATE_DEN = MICRO * MICRO // 100  # micro-units × micro-rate → hundredths
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DATETIME on SQLite
_NOT_BILLED_RU = {"suspended": "подписка приостановлена", "trial": "пробный период"}

# The idempotency key of a usage entry, written here only: the subscription, the start of its
# billing period in UTC (``PERIOD_LABEL``) and the highest record id the entry settles.
PERIOD_LABEL = "%Y%m%dT%H%M"
_KEY_SQL = "'usage:' || y.sub_id || ':' || y.label || ':' || y.max_id"


def _div_half_up(n: int, d: int) -> int:
    """n / d rounded half away from zero (d > 0): Decimal's ROUND_HALF_UP."""
    q, r = divmod(abs(n), d)
    if 2 * r >= d:
        q += 1
    return q if n >= 0 else -q


def source_micro(cost_micro: int, markup_micro: int) -> int:
    """Σ cost with the plan's markup, in micro-units of the usage currency, rounded half-up."""
    return _div_half_up(cost_micro * (_PCT_DEN + markup_micro), _PCT_DEN)


def amount_minor(source: int, rate_micro: int, step: int = 1) -> int:
    """``source`` (micro-units) × rate (micro) in hundredths of the billing currency (the ledger's
    stored scale), rounded half-up to ``step`` hundredths: 1, or 100 for a currency without
    decimals — ``money.round_money`` on the stored integers."""
    return _div_half_up(source * rate_micro, _RATE_DEN * step) * step


@dataclass
class RatingSummary:
    records: int = 0  # records settled (charged or not billable)
    entries: int = 0  # ledger entries posted
    not_billed_records: int = 0
    subscriptions: int = 0
    batches: int = 0
    charged: dict[str, Decimal] = field(default_factory=dict)  # currency -> net total charged (positive)
    credited: dict[str, Decimal] = field(default_factory=dict)  # currency -> total of entries that credit (positive)
    # currency -> credits not given back: above what their subscription was charged (the cap)
    uncredited: dict[str, Decimal] = field(default_factory=dict)
    missing_rates: dict[int, str] = field(default_factory=dict)  # subscription id -> reason
    rollup_rows: int = 0  # analytics roll-up rows rebuilt (only where the rate used differs)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (benchmarks)

    def _tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - since
        return now

    def add(self, other: RatingSummary) -> None:
        for name in ("records", "entries", "not_billed_records", "subscriptions", "batches", "rollup_rows"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for cur, amount in other.charged.items():
            self.charged[cur] = self.charged.get(cur, Decimal(0)) + amount
        for cur, amount in other.credited.items():
            self.credited[cur] = self.credited.get(cur, Decimal(0)) + amount
        for cur, amount in other.uncredited.items():
            self.uncredited[cur] = self.uncredited.get(cur, Decimal(0)) + amount
        for phase, seconds in other.phases.items():
            self.phases[phase] = self.phases.get(phase, 0.0) + seconds
        self.missing_rates.update(other.missing_rates)

    def __str__(self) -> str:
        money = ", ".join(f"{v} {k}" for k, v in sorted(self.charged.items())) or "0"
        if self.credited:
            money += "; credited " + ", ".join(f"{v} {k}" for k, v in sorted(self.credited.items()))
        if self.uncredited:
            money += ("; not credited (above what was charged) "
                      + ", ".join(f"{v} {k}" for k, v in sorted(self.uncredited.items())))
        text = (f"rated {self.records} records of {self.subscriptions} subscriptions into {self.entries} "
                f"entries ({money}; {self.not_billed_records} not billable) in {self.batches} batches, "
                f"{self.seconds:.2f}s")
        if self.missing_rates:
            text += f"; waiting for rates: {len(self.missing_rates)} subscriptions"
        return text


@dataclass(frozen=True)
class _Sub:
    id: int
    after_id: int  # the watermark
    org_id: int
    name: str
    suspended: bool
    suspended_at: datetime | None
    trial_until: datetime | None
    markup_micro: int
    currency: str  # billing currency of the organisation
    tz: str


class _Dialect:
    """The few places where SQLite and PostgreSQL differ."""

    def __init__(self, name: str):
        self.pg = name == "postgresql"
        self.ts = "timestamptz" if self.pg else "TEXT"
        self.day = "date" if self.pg else "TEXT"
        self.temp = "ON COMMIT DROP" if self.pg else ""
        self.key = "bigint" if self.pg else "INTEGER"  # SQLite: the rowid itself, no extra index
        self.json = "json_build_object" if self.pg else "json_object"
        self.without_rowid = "" if self.pg else "WITHOUT ROWID"  # SQLite: the primary key is the table
        # The covering index of (subscription, period_start, currency, cost): SQLite is told it.
        self.rating_index = "" if self.pg else "INDEXED BY ix_usage_rating"
        self.new_records_index = "" if self.pg else "INDEXED BY ix_usage_sub_id"

    def ts_out(self, raw) -> datetime:
        if isinstance(raw, datetime):
            return raw.astimezone(UTC) if raw.tzinfo else raw.replace(tzinfo=UTC)
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)

    def ts_in(self, value: datetime | None):
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value if self.pg else value.replace(tzinfo=None).strftime(_SQLITE_TS)

    def date_in(self, value: date):
        return value if self.pg else value.isoformat()

    def date_out(self, raw) -> date:
        return raw if isinstance(raw, date) else date.fromisoformat(str(raw)[:10])

    def half_up(self, a: str, b: str, d: str) -> str:
        """SQL for ``a × b / d`` rounded half away from zero, as :func:`_div_half_up` does.
        PostgreSQL: exact numeric. SQLite: integer arithmetic (the caller checks that the batch's
        figures are small enough for 64 bits: SQLite's integers would silently turn into floats)."""
        if self.pg:
            return f"CAST(ROUND(CAST({a} AS numeric) * {b} / {d}) AS bigint)"
        n = f"{a} * {b}"
        return f"(CASE WHEN {n} >= 0 THEN ({n} + {d} / 2) / {d} ELSE -(({d} / 2 - ({n})) / {d}) END)"

    def source(self, cost: str, markup: str, small: bool) -> str:
        """SQL for :func:`source_micro`; on SQLite with figures too large for its integers, the
        Python function itself."""
        if self.pg or small:
            return self.half_up(cost, f"({_PCT_DEN} + {markup})", str(_PCT_DEN))
        return f"rating_source({cost}, {markup})"

    def amount(self, source: str, rate: str, step: str, small: bool) -> str:
        """SQL for :func:`amount_minor` (see ``source``)."""
        if self.pg or small:
            return f"{self.half_up(source, rate, f'({_RATE_DEN} * {step})')} * {step}"
        return f"rating_amount({source}, {rate}, {step})"


_INT_LIMIT = 2**62  # products below this, plus half a divisor, stay inside SQLite's 64-bit integers
_TEMP_TABLES = ("rating_sub", "rating_day", "rating_seg", "rating_group", "rating_fx")


def uncredited(session: Session, org_id: int, start: datetime, end: datetime,
               subscription_ids: list[int] | None = None) -> list[tuple[int, datetime, datetime, datetime, Decimal]]:
    """The credits the cap kept back (see "Credits" above): (subscription, period start, period end,
    occurred at, amount not credited in the billing currency) of each capped usage entry whose
    period starts in ``[start, end)``. The analytics and the FOCUS export add it back to the
    records' figures so that they show what the ledger credited, not the vendor's whole credit."""
    q = select(LedgerEntry.subscription_id, LedgerEntry.period_start, LedgerEntry.period_end,
               LedgerEntry.occurred_at, LedgerEntry.meta).where(
        LedgerEntry.org_id == org_id, LedgerEntry.kind == "usage", LedgerEntry.amount >= 0,
        LedgerEntry.period_start >= start, LedgerEntry.period_start < end)
    if subscription_ids is not None:
        q = q.where(LedgerEntry.subscription_id.in_(subscription_ids))
    out = []
    for sid, ps, pe, occurred, meta in session.execute(q).all():
        if meta and meta.get("uncredited"):
            out.append((sid, ps, pe, occurred, Decimal(str(meta["uncredited"]))))
    return out


def rate_usage(session: Session, now: datetime | None = None, batch_subscriptions: int = 500) -> RatingSummary:
    """Charge every usage record of pay-as-you-go subscriptions above its subscription's watermark;
    commits once per batch. Safe to run twice, concurrently, or again after a crash.
    An open transaction of ``session`` is committed first (each batch needs a fresh one)."""
    started = time.perf_counter()
    now = now or utcnow()
    summary = RatingSummary()
    if session.in_transaction():
        session.commit()
    dialect = _Dialect(session.get_bind().dialect.name)
    after = 0
    while True:
        for attempt in range(5):
            try:
                done, after = _run_batch(session, dialect, after, batch_subscriptions, now, summary)
                break
            except DBAPIError as exc:
                session.rollback()
                if getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40001", "40P01") and attempt < 4:
                    log.info("rating batch retried after a serialisation conflict: %s", exc.orig)
                    continue
                raise
            except BaseException:
                session.rollback()
                raise
        if done:
            break
    summary.seconds = time.perf_counter() - started
    return summary


def _run_batch(session: Session, dialect: _Dialect, after: int, limit: int, now: datetime,
               summary: RatingSummary) -> tuple[bool, int]:
    if dialect.pg:
        conn = session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        # Before any query, so the snapshot is taken after the lock: imports running now have
        # committed, and new ones wait until this batch commits.
        conn.exec_driver_sql("LOCK TABLE usagerecord IN SHARE ROW EXCLUSIVE MODE")
        # A closing document or a generation run (documents._record_run) made meanwhile is either
        # seen here or waits for this batch: late usage of a closed month is never dated into it.
        conn.exec_driver_sql("LOCK TABLE closingdocument IN SHARE MODE")
        # Large estimates would make PostgreSQL compile these one-off statements: slower, not faster.
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # a batch's groups sort in memory
    else:
        conn = session.connection()  # BEGIN IMMEDIATE (db.py): the write lock for the whole batch
    subs = _candidates(session, after, limit)
    if not subs:
        session.commit()  # nothing written; a commit (unlike a rollback) keeps the caller's objects loaded
        return True, after
    batch = RatingSummary()
    _Batch(session, conn, dialect, subs, now, batch).run()
    t = time.perf_counter()
    session.commit()
    batch._tick("commit", t)
    batch.batches = 1
    summary.add(batch)  # only a committed batch counts (a retried one must not count twice)
    return False, max(subs)


def _candidates(session: Session, after: int, limit: int) -> dict[int, _Sub]:
    watermark = RatingWatermark.last_record_id
    new = (select(UsageRecord.id)
           .where(UsageRecord.subscription_id == Subscription.id, UsageRecord.id > func.coalesce(watermark, 0))
           .exists())
    rows = session.execute(
        select(Subscription.id, watermark, Subscription.org_id, Subscription.name, Subscription.status,
               Subscription.suspend_reason, Subscription.suspended_at, Subscription.is_trial, Subscription.trial_ends_at,
               Plan.usage_markup_pct, Plan.name, Organisation.billing_currency, Organisation.timezone)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Organisation, Organisation.id == Subscription.org_id)
        .outerjoin(RatingWatermark, RatingWatermark.subscription_id == Subscription.id)
        .where(Plan.billing_type == BillingType.PAYG, Subscription.id > after, new)
        .order_by(Subscription.id)
        .limit(limit)
    ).all()
    return {
        sid: _Sub(id=sid, after_id=mark or 0, org_id=org_id, name=name or plan_name,
                  # suspended for credit (an overdrawn organisation): what still arrives is charged
                  suspended=status == SubscriptionStatus.SUSPENDED and reason != "credit", suspended_at=suspended_at,
                  trial_until=trial_ends_at if is_trial else None,
                  markup_micro=int(Decimal(markup or 0) * MICRO), currency=cur, tz=tz or "Asia/Tashkent")
        for (sid, mark, org_id, name, status, reason, suspended_at, is_trial, trial_ends_at, markup, plan_name, cur,
             tz) in rows
    }


def _reason(sub: _Sub, start: datetime) -> str | None:
    """Why records starting at ``start`` are not billed (None: they are billed)."""
    if sub.suspended and (sub.suspended_at is None or start >= sub.suspended_at):
        return "suspended"
    if sub.trial_until is not None and start < sub.trial_until:
        return "trial"
    return None


class _Batch:
    """The SQL of one batch over its temporary tables (see the module documentation)."""

    def __init__(self, session: Session, conn, dialect: _Dialect, subs: dict[int, _Sub], now: datetime,
                 summary: RatingSummary):
        self.session, self.dialect, self.subs, self.now, self.summary = session, dialect, subs, now, summary
        self.raw = conn.connection.dbapi_connection
        self.cur = self.raw.cursor()
        self.zones = {tz: i for i, tz in enumerate(sorted({s.tz for s in subs.values()}))}
        self.spans: dict[int, tuple[datetime, datetime]] = {}  # sub -> first and last start of its new records

    def q(self, sql: str, params=()):
        self.cur.execute(sql.replace("?", "%s") if self.dialect.pg else sql, params)
        return self.cur

    def many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self.cur.executemany(sql.replace("?", "%s") if self.dialect.pg else sql, rows)

    def run(self) -> None:
        t = time.perf_counter()
        self.create_tables()
        self.fill_subs()
        self.fill_segments()
        t = self.summary._tick("subs_and_days", t)
        self.aggregate()
        t = self.summary._tick("aggregate", t)
        self.fill_rates()
        t = self.summary._tick("rates", t)
        self.post_entries()
        t = self.summary._tick("insert_entries", t)
        self.move_watermarks()
        self.summary.rollup_rows += _refresh_rollup(self.session, self, self.used_rates())
        self.summary._tick("watermarks_and_rollup", t)
        if not self.dialect.pg:
            for table in _TEMP_TABLES:
                self.q(f"DELETE FROM {table}")
        self.cur.close()

    def create_tables(self) -> None:
        d = self.dialect
        prefix = "CREATE TEMP TABLE" if d.pg else "CREATE TEMP TABLE IF NOT EXISTS"
        self.q(f"{prefix} rating_sub (sub_id {d.key} PRIMARY KEY, after_id bigint, upto_id bigint, "
               f"from_period {d.ts}, to_period {d.ts}, zone integer, special integer, org_id bigint, "
               f"org_currency varchar(3), markup bigint, step bigint, open_from {d.ts}, description text, "
               f"desc_suspended text, desc_trial text) {d.temp}")
        self.q(f"{prefix} rating_day (zone integer, day_start {d.ts}, day_end {d.ts}, label varchar(16), "
               f"fx_day {d.day}, PRIMARY KEY (zone, day_start)) {d.without_rowid} {d.temp}")
        # One row per entry to be made of a subscription's records: its local day, or the part of
        # the day on one side of a suspension or a trial's end (``reason``: why it is not billed).
        self.q(f"{prefix} rating_seg (sub_id bigint, seg_start {d.ts}, seg_end {d.ts}, day_start {d.ts}, "
               f"day_end {d.ts}, label varchar(16), fx_day {d.day}, reason varchar(16), part_from varchar(40), "
               f"part_until varchar(40), PRIMARY KEY (sub_id, seg_start)) {d.without_rowid} {d.temp}")
        self.q(f"{prefix} rating_group (sub_id bigint, seg_start {d.ts}, currency varchar(3), "
               f"currency_max varchar(3), cost bigint, n bigint, max_id bigint) {d.temp}")
        self.q(f"{prefix} rating_fx (currency varchar(3), org_currency varchar(3), fx_day {d.day}, rate bigint, "
               f"PRIMARY KEY (currency, org_currency, fx_day)) {d.temp}")
        if not d.pg:
            for table in _TEMP_TABLES:
                self.q(f"DELETE FROM {table}")
            # Exact integer pricing (see _Dialect.source): the rule's one definition, in Python.
            self.raw.create_function("rating_source", 2, source_micro, deterministic=True)
            self.raw.create_function("rating_amount", 3, amount_minor, deterministic=True)

    def open_months(self) -> dict[int, datetime]:
        """Organisation → where its open months begin (after its last closed month: the closing
        documents' rule, ``documents.closed_through``)."""
        zone = {s.org_id: s.tz for s in self.subs.values()}
        return {org_id: local_midnight(next_month(period), zone[org_id])
                for org_id, period in documents.closed_through(self.session, zone).items()}

    def fill_subs(self) -> None:
        d = self.dialect
        open_from = self.open_months()
        rows = []
        for s in self.subs.values():
            name = s.name
            rows.append((
                s.id, s.after_id, self.zones[s.tz], int(s.suspended or s.trial_until is not None), s.org_id,
                s.currency, s.markup_micro, 10 ** (2 - minor_unit(s.currency)), d.ts_in(open_from.get(s.org_id)),
                f"Потребление: {name}"[:500],
                f"Потребление не оплачивается ({_NOT_BILLED_RU['suspended']}): {name}"[:500],
                f"Потребление не оплачивается ({_NOT_BILLED_RU['trial']}): {name}"[:500],
            ))
        self.many("INSERT INTO rating_sub (sub_id, after_id, zone, special, org_id, org_currency, markup, step, "
                  "open_from, description, desc_suspended, desc_trial) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self.analyze("rating_sub")
        # Where in time each subscription's new records start and end. Never rated: all its records
        # are new, and the index on (subscription, period_start) answers at once; else its new
        # records are read by id (few, except in a catch-up).
        spans = self.q(
            f"SELECT s.sub_id, (SELECT MIN(u.period_start) FROM usagerecord u {d.rating_index} "
            "WHERE u.subscription_id = s.sub_id), "
            f"(SELECT MAX(u.period_start) FROM usagerecord u {d.rating_index} WHERE u.subscription_id = s.sub_id) "
            "FROM rating_sub s WHERE s.after_id = 0").fetchall()
        if d.pg:  # per subscription, its range of ix_usage_sub_id (the fence keeps PostgreSQL from
            # reading MIN/MAX off ix_usage_rating in time order, filtering out every old record)
            spans += self.q(
                "SELECT s.sub_id, u.first, u.last FROM rating_sub s CROSS JOIN LATERAL "
                "(SELECT MIN(x.ps) AS first, MAX(x.ps) AS last FROM (SELECT u.period_start AS ps FROM usagerecord u "
                "WHERE u.subscription_id = s.sub_id AND u.id > s.after_id OFFSET 0) x) u WHERE s.after_id > 0").fetchall()
        else:
            spans += self.q(
                "SELECT s.sub_id, MIN(u.period_start), MAX(u.period_start) FROM rating_sub s "
                f"CROSS JOIN usagerecord u {d.new_records_index} "
                "WHERE s.after_id > 0 AND u.subscription_id = s.sub_id AND u.id > s.after_id GROUP BY s.sub_id"
            ).fetchall()
        spans = [r for r in spans if r[1] is not None]
        self.many("UPDATE rating_sub SET from_period = ?, to_period = ? WHERE sub_id = ?",
                  [(first, last, sid) for sid, first, last in spans])
        self.spans = {sid: (d.ts_out(first), d.ts_out(last)) for sid, first, last in spans}

    def analyze(self, table: str) -> None:
        """PostgreSQL plans temporary tables well only with their statistics."""
        if self.dialect.pg:
            self.q(f"ANALYZE {table}")

    def fill_segments(self) -> None:
        """The local days of each zone that new records fall in (Python: a few dozen values), and
        each subscription's segments: its days, cut where a suspension begins or a trial ends
        (an hour's records are billed or not by their own start, as before the days were folded)."""
        d = self.dialect
        days_of: dict[str, list[tuple[datetime, datetime, date]]] = {}
        rows = []
        for tz, zone in self.zones.items():
            spans = [self.spans[s.id] for s in self.subs.values() if s.tz == tz and s.id in self.spans]
            if not spans:
                continue
            zi = ZoneInfo(tz)
            day, last = min(a for a, _ in spans).astimezone(zi).date(), max(b for _, b in spans).astimezone(zi).date()
            days_of[tz] = []
            while day <= last:
                start, end = day_bounds(day, tz)
                days_of[tz].append((start, end, day))
                rows.append((zone, d.ts_in(start), d.ts_in(end), start.strftime(PERIOD_LABEL), d.date_in(day)))
                day += timedelta(days=1)
        self.many("INSERT INTO rating_day (zone, day_start, day_end, label, fx_day) VALUES (?,?,?,?,?)", rows)
        self.analyze("rating_day")
        # Subscriptions billed all day long: one segment per day, in SQL.
        self.q("INSERT INTO rating_seg (sub_id, seg_start, seg_end, day_start, day_end, label, fx_day) "
               "SELECT s.sub_id, d.day_start, d.day_end, d.day_start, d.day_end, d.label, d.fx_day "
               "FROM rating_sub s JOIN rating_day d ON d.zone = s.zone AND d.day_end > s.from_period "
               "AND d.day_start <= s.to_period WHERE s.special = 0")
        # Suspended or in a trial: the day is cut at suspended_at and trial_ends_at (Python, few).
        segs = []
        for s in self.subs.values():
            if not (s.suspended or s.trial_until is not None) or s.id not in self.spans:
                continue
            first, last = self.spans[s.id]
            cuts = {c for c in (s.suspended_at if s.suspended else None, s.trial_until) if c is not None}
            for start, end, day in days_of[s.tz]:
                if end <= first or start > last:
                    continue
                points = sorted({start, end, *(c for c in cuts if start < c < end)})
                pieces: list[list] = []
                for a, b in pairwise(points):
                    reason = _reason(s, a)
                    if pieces and pieces[-1][2] == reason:
                        pieces[-1][1] = b
                    else:
                        pieces.append([a, b, reason])
                for a, b, reason in pieces:
                    whole = a == start and b == end
                    segs.append((s.id, d.ts_in(a), d.ts_in(b), d.ts_in(start), d.ts_in(end),
                                 start.strftime(PERIOD_LABEL), d.date_in(day), reason,
                                 None if whole else a.isoformat(), None if whole else b.isoformat()))
        self.many("INSERT INTO rating_seg (sub_id, seg_start, seg_end, day_start, day_end, label, fx_day, reason, "
                  "part_from, part_until) VALUES (?,?,?,?,?,?,?,?,?,?)", segs)
        self.analyze("rating_seg")

    def aggregate(self, only_cut: bool = False) -> None:
        """Sum the new records of each segment and usage currency, read from the covering index
        ``ix_usage_rating`` one segment's range at a time. SQLite groups in the order it reads (no
        sort): per segment, with the lowest and highest currency; the rare segment with two
        currencies is summed again per currency."""
        d = self.dialect
        cut = "AND s.upto_id IS NOT NULL " if only_cut else ""
        new = ("u.id > s.after_id AND (s.upto_id IS NULL OR u.id <= s.upto_id) " + cut)
        if d.pg:
            self.q("INSERT INTO rating_group (sub_id, seg_start, currency, currency_max, cost, n, max_id) "
                   "SELECT g.sub_id, g.seg_start, u.currency, u.currency, SUM(u.cost), COUNT(*), MAX(u.id) "
                   "FROM rating_seg g JOIN rating_sub s ON s.sub_id = g.sub_id CROSS JOIN LATERAL "
                   "(SELECT u.currency, u.cost, u.id FROM usagerecord u WHERE u.subscription_id = g.sub_id "
                   "AND u.period_start >= g.seg_start AND u.period_start < g.seg_end OFFSET 0) u "
                   f"WHERE {new}GROUP BY g.sub_id, g.seg_start, u.currency")
        else:
            self.q("INSERT INTO rating_group (sub_id, seg_start, currency, currency_max, cost, n, max_id) "
                   "SELECT g.sub_id, g.seg_start, MIN(u.currency), MAX(u.currency), SUM(u.cost), COUNT(*), MAX(u.id) "
                   "FROM rating_seg g CROSS JOIN rating_sub s CROSS JOIN usagerecord u INDEXED BY ix_usage_rating "
                   "WHERE s.sub_id = g.sub_id AND u.subscription_id = g.sub_id AND u.period_start >= g.seg_start "
                   f"AND u.period_start < g.seg_end AND {new}GROUP BY g.sub_id, g.seg_start")
            if self.q("SELECT 1 FROM rating_group WHERE currency <> currency_max LIMIT 1").fetchone():
                self.q("INSERT INTO rating_group (sub_id, seg_start, currency, currency_max, cost, n, max_id) "
                       "SELECT g.sub_id, g.seg_start, u.currency, u.currency, SUM(u.cost), COUNT(*), MAX(u.id) "
                       "FROM rating_group m JOIN rating_seg g ON g.sub_id = m.sub_id AND g.seg_start = m.seg_start "
                       "JOIN rating_sub s ON s.sub_id = g.sub_id CROSS JOIN usagerecord u INDEXED BY ix_usage_rating "
                       "WHERE m.currency <> m.currency_max AND u.subscription_id = g.sub_id "
                       f"AND u.period_start >= g.seg_start AND u.period_start < g.seg_end AND {new}"
                       "GROUP BY g.sub_id, g.seg_start, u.currency")
                self.q("DELETE FROM rating_group WHERE currency <> currency_max")
        self.analyze("rating_group")

    def fill_rates(self) -> None:
        """The rate of each (usage currency, billing currency, usage day) needed, fixed for the day
        the first time it is used; subscriptions with usage of a day without any rate wait."""
        d = self.dialect
        rows, missing = [], []
        for currency, org_currency, raw_day in self.q(
                "SELECT DISTINCT g.currency, s.org_currency, x.fx_day FROM rating_group g "
                "JOIN rating_sub s ON s.sub_id = g.sub_id "
                "JOIN rating_seg x ON x.sub_id = g.sub_id AND x.seg_start = g.seg_start").fetchall():
            day = d.date_out(raw_day)
            try:
                rate = rates.usage_rate(self.session, currency, org_currency, day, fix=True)
            except RateMissing:
                missing.append((currency, org_currency, day))
                continue
            rows.append((currency, org_currency, d.date_in(day), int(rate * MICRO)))
        self.many("INSERT INTO rating_fx VALUES (?,?,?,?)", rows)
        self.analyze("rating_fx")
        if missing:
            self.wait_for_rates(missing)

    def wait_for_rates(self, missing: list[tuple[str, str, date]]) -> None:
        """Stop each affected subscription's watermark below its first billable record without a
        rate, and group its records again up to there."""
        cut = self.q(
            "SELECT g.sub_id, MIN(u.id) FROM rating_seg g JOIN rating_sub s ON s.sub_id = g.sub_id "
            "CROSS JOIN usagerecord u "
            "LEFT JOIN rating_fx f ON f.currency = u.currency AND f.org_currency = s.org_currency AND f.fx_day = g.fx_day "
            "WHERE g.reason IS NULL AND u.subscription_id = g.sub_id AND u.period_start >= g.seg_start "
            "AND u.period_start < g.seg_end AND u.id > s.after_id AND f.rate IS NULL GROUP BY g.sub_id").fetchall()
        for sub_id, first_id in cut:
            self.q("UPDATE rating_sub SET upto_id = ? WHERE sub_id = ?", (first_id - 1, sub_id))
            self.q("DELETE FROM rating_group WHERE sub_id = ?", (sub_id,))
            days = sorted({str(m[2]) for m in missing})
            self.summary.missing_rates[sub_id] = f"no rate on or before {', '.join(days)} ({missing[0][0]})"
        if cut:
            self.aggregate(only_cut=True)

    def small_figures(self) -> bool:
        """Whether every product of the pricing fits SQLite's 64-bit integers in this batch."""
        biggest = self.q("SELECT MAX(t) FROM (SELECT SUM(ABS(cost)) AS t FROM rating_group GROUP BY sub_id) x"
                         ).fetchone()[0] or 0
        rate = self.q("SELECT MAX(rate) FROM rating_fx").fetchone()[0] or 1
        marked_up = biggest * (_PCT_DEN + max(s.markup_micro for s in self.subs.values()))
        return marked_up < _INT_LIMIT and (marked_up // _PCT_DEN + 1) * rate < _INT_LIMIT

    def post_entries(self) -> None:
        d = self.dialect
        small = False if d.pg else self.small_figures()
        base = "'records', y.n, 'max_record_id', y.max_id, 'cost_micro', y.cost"
        part = "'records_from', y.part_from, 'records_until', y.part_until"
        not_billed = "'not_billed', y.reason"
        meta = (f"CASE WHEN y.part_from IS NULL THEN (CASE WHEN y.reason IS NULL THEN {d.json}({base}) "
                f"ELSE {d.json}({base}, {not_billed}) END) ELSE (CASE WHEN y.reason IS NULL THEN "
                f"{d.json}({base}, {part}) ELSE {d.json}({base}, {part}, {not_billed}) END) END")
        # Under the batch's lock only this batch posts usage entries: they are the ones above ``before``.
        before = self.q("SELECT COALESCE(MAX(id), 0) FROM ledgerentry").fetchone()[0]
        self.q(
            "INSERT INTO ledgerentry (org_id, kind, amount, currency, description, subscription_id, source_amount, "
            "source_currency, fx_rate, fx_date, period_start, period_end, idempotency_key, occurred_at, created_at, meta) "
            "SELECT y.org_id, 'usage', "
            f"CASE WHEN y.reason IS NULL THEN -{d.amount('y.source', 'y.rate', 'y.step', small)} ELSE 0 END, "
            "y.org_currency, "
            "CASE y.reason WHEN 'suspended' THEN y.desc_suspended WHEN 'trial' THEN y.desc_trial ELSE y.description END, "
            "y.sub_id, CASE WHEN y.reason IS NULL THEN y.source ELSE 0 END, y.currency, "
            "CASE WHEN y.reason IS NULL THEN y.rate END, CASE WHEN y.reason IS NULL THEN y.fx_day END, "
            f"y.day_start, y.day_end, {_KEY_SQL}, "
            "CASE WHEN y.day_start < y.open_from THEN ? ELSE y.day_start END, ?, "
            f"{meta} "
            "FROM (SELECT g.sub_id, g.currency, g.cost, g.n, g.max_id, x.day_start, x.day_end, x.label, x.fx_day, "
            "x.reason, x.part_from, x.part_until, s.org_id, s.org_currency, s.step, s.open_from, s.description, "
            f"s.desc_suspended, s.desc_trial, f.rate, {d.source('g.cost', 's.markup', small)} AS source "
            "FROM rating_group g JOIN rating_seg x ON x.sub_id = g.sub_id AND x.seg_start = g.seg_start "
            "JOIN rating_sub s ON s.sub_id = g.sub_id "
            "LEFT JOIN rating_fx f ON f.currency = g.currency AND f.org_currency = s.org_currency "
            "AND f.fx_day = x.fx_day ORDER BY g.sub_id, g.seg_start, g.currency) y WHERE true "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            (d.ts_in(self.now), d.ts_in(self.now)))
        self.summary.entries = self.cur.rowcount
        self.cap_credits(before)
        for currency, minor, credit, subs in self.q(
                "SELECT currency, -SUM(amount), SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END), "
                "COUNT(DISTINCT subscription_id) FROM ledgerentry "
                "WHERE id > ? AND kind = 'usage' GROUP BY currency", (before,)).fetchall():
            self.summary.subscriptions += subs
            if minor:
                self.summary.charged[currency] = Decimal(int(minor)).scaleb(-2)
            if credit:
                self.summary.credited[currency] = Decimal(int(credit)).scaleb(-2)
        records, not_billed, groups = self.q(
            "SELECT COALESCE(SUM(g.n), 0), COALESCE(SUM(CASE WHEN x.reason IS NULL THEN 0 ELSE g.n END), 0), "
            "COUNT(*) FROM rating_group g JOIN rating_seg x ON x.sub_id = g.sub_id AND x.seg_start = g.seg_start"
        ).fetchone()
        self.summary.records, self.summary.not_billed_records = int(records), int(not_billed)
        if self.summary.entries == 0 and groups:
            log.warning("rating: every usage entry of this batch was already posted")

    def cap_credits(self, before: int) -> None:
        """Cap the credit entries of this batch (amount above 0) at what their subscription was
        charged for usage: after them the subscription's usage entries must not sum above 0 (see
        "Credits" in the module documentation). Only subscriptions with a credit entry are read;
        the part not credited goes into the entry's meta (``capped``, ``uncredited``) and the summary."""
        d = self.dialect
        subs = [r[0] for r in self.q("SELECT DISTINCT subscription_id FROM ledgerentry "
                                     "WHERE id > ? AND kind = 'usage' AND amount > 0", (before,)).fetchall()]
        if not subs:
            return
        marks = ",".join("?" * len(subs))
        prior = {sid: int(total) for sid, total in self.q(
            f"SELECT subscription_id, COALESCE(SUM(amount), 0) FROM ledgerentry WHERE kind = 'usage' AND id <= ? "
            f"AND subscription_id IN ({marks}) GROUP BY subscription_id", [before, *subs]).fetchall()}
        new = self.q(f"SELECT id, subscription_id, amount, currency, meta FROM ledgerentry WHERE id > ? "
                     f"AND kind = 'usage' AND subscription_id IN ({marks}) ORDER BY id", [before, *subs]).fetchall()
        room = {sid: -prior.get(sid, 0) for sid in subs}  # hundredths still creditable
        for _, sid, amount, _, _ in new:
            if int(amount) < 0:  # this batch's charges count first, whatever their periods
                room[sid] -= int(amount)
        meta_in = "CAST(? AS json)" if d.pg else "?"
        for entry_id, sid, amount, currency, meta in new:
            amount = int(amount)
            if amount <= 0:
                continue
            give = min(amount, max(room[sid], 0))
            room[sid] -= give
            if give == amount:
                continue
            meta = dict(json.loads(meta) if isinstance(meta, str) else meta or {})
            rest = Decimal(amount - give).scaleb(-2)
            meta.update(capped=True, uncredited=str(rest))
            self.q(f"UPDATE ledgerentry SET amount = ?, meta = {meta_in} WHERE id = ?",
                   (give, json.dumps(meta), entry_id))
            self.summary.uncredited[currency] = self.summary.uncredited.get(currency, Decimal(0)) + rest

    def move_watermarks(self) -> None:
        self.q("INSERT INTO ratingwatermark (subscription_id, last_record_id, rated_at) "
               "SELECT sub_id, MAX(max_id), ? FROM rating_group WHERE true GROUP BY sub_id "
               "ON CONFLICT (subscription_id) DO UPDATE SET last_record_id = excluded.last_record_id, "
               "rated_at = excluded.rated_at", (self.dialect.ts_in(self.now),))

    def used_rates(self) -> dict[tuple[int, date, str], int]:
        """(subscription, usage day, currency) → rate (micro) of what was charged in this batch."""
        d = self.dialect
        rate_of = {(cur, org_cur, d.date_out(day)): rate for cur, org_cur, day, rate in
                   self.q("SELECT currency, org_currency, fx_day, rate FROM rating_fx").fetchall()}
        currency_of = {s.id: s.currency for s in self.subs.values()}
        used = {}
        for sid, day, currency in self.q(
                "SELECT g.sub_id, x.fx_day, g.currency FROM rating_group g "
                "JOIN rating_seg x ON x.sub_id = g.sub_id AND x.seg_start = g.seg_start "
                "WHERE x.reason IS NULL GROUP BY g.sub_id, x.fx_day, g.currency").fetchall():
            day = d.date_out(day)
            used[(sid, day, currency)] = rate_of[(currency, currency_of[sid], day)]
        return used


def _refresh_rollup(session: Session, batch: _Batch, used: dict[tuple[int, date, str], int]) -> int:
    """Keep the analytics roll-up (``UsageDaily``, services/usage/rollup.py) in step with the rates used.

    The importer builds the roll-up with the day's rate known at import time; rating may fix another
    one (the day's rate arrived meanwhile). Only (subscription, day) pairs whose roll-up is missing
    or disagrees with the rate used are rebuilt (``rollup``), in this transaction.
    """
    if not used:
        return 0
    sub_ids = sorted({k[0] for k in used})
    days = [k[1] for k in used]
    d = batch.dialect
    have = {}
    for sid, day, currency, cost, cost_org, n, n_org in batch.q(
            "SELECT subscription_id, day, currency, SUM(cost), SUM(cost_org), COUNT(*), COUNT(cost_org) "
            f"FROM usagedaily WHERE subscription_id IN ({','.join('?' * len(sub_ids))}) AND day >= ? AND day <= ? "
            "GROUP BY subscription_id, day, currency",
            [*sub_ids, d.date_in(min(days)), d.date_in(max(days))]).fetchall():
        have[(sid, d.date_out(day), currency)] = (int(cost or 0), int(cost_org or 0), n, n_org)
    stale = set()
    for key, rate in used.items():
        row = have.get(key)
        if row is None or row[3] != row[2]:
            stale.add(key[:2])
            continue
        cost, cost_org, n, _ = row
        # cost and cost_org are micro units; each of the n roll-up rows rounds its cost and its
        # cost_org to 6 decimals, so they may disagree by up to half a micro-unit times (rate + 1).
        if abs(cost_org * MICRO - cost * rate) > n * (rate + MICRO):
            stale.add(key[:2])
    if not stale:
        return 0
    return rollup.refresh_rollup_pairs(session, stale)
