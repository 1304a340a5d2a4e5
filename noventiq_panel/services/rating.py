"""Metered rating: unrated pay-as-you-go usage records → one ledger entry per subscription and period.

How a run works (set-based; no statement per record):

1. Subscriptions are taken in batches (``batch_subscriptions``, by id): pay-as-you-go plans that have
   unrated records (``ledger_entry_id IS NULL``; an index seek per subscription, so a run with
   nothing new costs milliseconds).
2. One ``GROUP BY`` per batch sums the records per (subscription, period_start, currency). Python
   then folds those rows into billing periods — the hour (hourly plans) or the day (daily plans) in
   the organisation's time zone — prices each period and converts it at the rate of the usage day
   in the organisation's time zone (``services.rates``; a day without a rate uses the latest earlier
   one, the rate of one unit of the record currency in the billing currency is stored on the entry).
3. The entries are bulk-inserted (``executemany`` on SQLite, ``COPY`` + ``INSERT … SELECT`` on
   PostgreSQL) under a deterministic idempotency key
   ``usage:{subscription}:{period start UTC %Y%m%dT%H%M}:{max record id}`` with
   ``ON CONFLICT (idempotency_key) DO NOTHING``: a rerun of the same records gives the same key and
   posts nothing twice; late-arriving records of an already rated period give a new key and a new
   entry. Money still moves only under a unique key.
4. One ``UPDATE … FROM`` marks the records with their entry id (only records still unrated and not
   newer than the group's max id, so a record that was not summed is never marked).

Each batch is one transaction: a crash mid-batch leaves nothing of that batch (no entry without its
records, no record marked without its entry). Concurrent runs: SQLite serialises writers
(``BEGIN IMMEDIATE``); on PostgreSQL each batch runs in REPEATABLE READ after
``LOCK TABLE usagerecord IN SHARE UPDATE EXCLUSIVE MODE`` (taken before the snapshot, self-exclusive,
does not block imports), so a second runner waits and then sees the first one's marks; the
snapshot guarantees that the records marked are exactly the records summed.

Amount (billing currency, negative = a charge), rounded half-up to the minor unit once::

    amount = −round_half_up(Σ cost × (1 + usage_markup_pct/100) × rate(usage day))

computed exactly with integers (costs, markups and rates are stored with 6 decimals). The entry also
stores ``source_amount`` (Σ cost × (1 + markup), to 6 decimals), ``source_currency``, ``fx_rate``
(to 6 decimals) and ``fx_date``; ``occurred_at`` is the period's start (so a month's usage is in that
month; ``created_at`` is when it was rated).

Not billable (decided here, tested in tests/services/test_rating.py): records of a **suspended**
subscription whose period starts at or after ``suspended_at`` (all of them when ``suspended_at`` is
unknown), and records of a **trial** subscription before ``trial_ends_at``, are rated with a
zero-amount ledger entry (meta ``not_billed``: the reason) — each record is still settled exactly
once, so resuming the subscription never charges usage of the suspension, and the records are not
rescanned by every later run. Records from before the suspension are charged normally.

Records whose day has no exchange rate at all (not even an earlier one) stay unrated and are listed
in the summary; the next run after the rate arrives charges them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from ..models import BillingType, Organisation, Plan, Subscription, SubscriptionStatus
from ..models.types import utcnow
from . import rates
from .clock import day_bounds
from .errors import RateMissing
from .money import minor_unit

log = logging.getLogger(__name__)

MICRO = 10**6
_PCT_DEN = 100 * MICRO  # usage_markup_pct is stored in micro-percent
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DATETIME on SQLite


@dataclass
class RatingSummary:
    records: int = 0  # records settled (charged or not billable)
    entries: int = 0  # ledger entries posted
    not_billed_records: int = 0
    subscriptions: int = 0
    batches: int = 0
    charged: dict[str, Decimal] = field(default_factory=dict)  # currency -> total charged (positive)
    missing_rates: dict[int, str] = field(default_factory=dict)  # subscription id -> reason
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (benchmarks)

    def _tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - since
        return now

    def __str__(self) -> str:
        money = ", ".join(f"{v} {k}" for k, v in sorted(self.charged.items())) or "0"
        text = (f"rated {self.records} records of {self.subscriptions} subscriptions into {self.entries} "
                f"entries ({money}; {self.not_billed_records} not billable) in {self.batches} batches, "
                f"{self.seconds:.2f}s")
        if self.missing_rates:
            text += f"; waiting for rates: {len(self.missing_rates)} subscriptions"
        return text


@dataclass(frozen=True)
class _Sub:
    id: int
    org_id: int
    name: str
    status: str
    suspended_at: datetime | None
    trial_until: datetime | None
    granularity: str
    markup_micro: int
    currency: str  # billing currency of the organisation
    tz: str


@dataclass(frozen=True)
class _Bucket:
    start: datetime  # UTC
    end: datetime
    start_db: Any  # the value as the driver stores it
    end_db: Any
    label: str
    fx_day: date
    record_start: datetime  # the record's own period_start, parsed


class _Dialect:
    """The few places where SQLite and PostgreSQL differ."""

    def __init__(self, name: str):
        self.name = name
        self.pg = name == "postgresql"

    def q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def ts_out(self, raw) -> datetime:
        if isinstance(raw, datetime):
            return raw.astimezone(timezone.utc) if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
        return datetime.fromisoformat(raw).replace(tzinfo=timezone.utc)

    def ts_in(self, value: datetime):
        value = value.astimezone(timezone.utc)
        return value if self.pg else value.replace(tzinfo=None).strftime(_SQLITE_TS)

    def date_in(self, value: date):
        return value if self.pg else value.isoformat()


def _div_half_up(n: int, d: int) -> int:
    """n / d rounded half away from zero (d > 0): ROUND_HALF_UP of Decimal."""
    q, r = divmod(abs(n), d)
    if 2 * r >= d:
        q += 1
    return q if n >= 0 else -q


def price_cents(cost_micro: int, markup_micro: int, rate_num: int, rate_den: int) -> int:
    """Σcost (micro units) × (1 + markup%) × rate_num/rate_den, in minor units, rounded once."""
    return _div_half_up(cost_micro * (_PCT_DEN + markup_micro) * rate_num, 10**12 * rate_den)


def rate_usage(session: Session, now: datetime | None = None, batch_subscriptions: int = 500) -> RatingSummary:
    """Rate every unrated record of pay-as-you-go subscriptions; commits once per batch.

    Safe to run twice, concurrently, or again after a crash: see the module documentation.
    An open transaction of ``session`` is committed first (each batch needs a fresh one).
    """
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


def _begin(session: Session, dialect: _Dialect):
    if dialect.pg:
        conn = session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        # Before any query: the snapshot is taken after the lock, so a waiting run sees our marks.
        conn.exec_driver_sql("LOCK TABLE usagerecord IN SHARE UPDATE EXCLUSIVE MODE")
    else:
        conn = session.connection()  # BEGIN IMMEDIATE (db.py): the write lock for the whole batch
    return conn


def _run_batch(session: Session, dialect: _Dialect, after: int, limit: int, now: datetime,
               summary: RatingSummary) -> tuple[bool, int]:
    conn = _begin(session, dialect)
    subs = _candidates(session, after, limit)
    if not subs:
        session.rollback()
        return True, after
    batch_summary = RatingSummary()
    _rate_batch(session, conn, dialect, subs, now, batch_summary)
    t = time.perf_counter()
    session.commit()
    session.expire_all()
    batch_summary._tick("commit", t)
    for phase, seconds in batch_summary.phases.items():
        summary.phases[phase] = summary.phases.get(phase, 0.0) + seconds
    # Only a committed batch counts (a retried batch must not be counted twice).
    summary.records += batch_summary.records
    summary.entries += batch_summary.entries
    summary.not_billed_records += batch_summary.not_billed_records
    summary.subscriptions += batch_summary.subscriptions
    summary.batches += 1
    for cur, amount in batch_summary.charged.items():
        summary.charged[cur] = summary.charged.get(cur, Decimal(0)) + amount
    summary.missing_rates.update(batch_summary.missing_rates)
    return False, max(s.id for s in subs.values())


def _candidates(session: Session, after: int, limit: int) -> dict[int, _Sub]:
    from ..models import UsageRecord

    unrated = (
        select(UsageRecord.id)
        .where(UsageRecord.subscription_id == Subscription.id, UsageRecord.ledger_entry_id.is_(None))
        .exists()
    )
    rows = session.execute(
        select(Subscription.id, Subscription.org_id, Subscription.name, Subscription.status,
               Subscription.suspended_at, Subscription.is_trial, Subscription.trial_ends_at,
               Plan.granularity, Plan.usage_markup_pct, Plan.name, Organisation.billing_currency,
               Organisation.timezone)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Organisation, Organisation.id == Subscription.org_id)
        .where(Plan.billing_type == BillingType.PAYG, Subscription.id > after, unrated)
        .order_by(Subscription.id)
        .limit(limit)
    ).all()
    subs = {}
    for (sid, org_id, name, status, suspended_at, is_trial, trial_ends_at, gran, markup, plan_name, cur,
         tz) in rows:
        subs[sid] = _Sub(
            id=sid, org_id=org_id, name=name or plan_name, status=status, suspended_at=suspended_at,
            trial_until=trial_ends_at if is_trial else None, granularity=gran or "hour",
            markup_micro=int(Decimal(markup or 0) * MICRO), currency=cur, tz=tz or "Asia/Tashkent",
        )
    return subs


def _bucket_of(dialect: _Dialect, raw_start, tz: str, granularity: str, cache: dict) -> _Bucket:
    key = (raw_start, tz, granularity)
    bucket = cache.get(key)
    if bucket is not None:
        return bucket
    start = dialect.ts_out(raw_start)
    zone = ZoneInfo(tz)
    local = start.astimezone(zone)
    if granularity == "day":
        b_start, b_end = day_bounds(local.date(), tz)
    else:
        b_start = local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)
        b_end = b_start + timedelta(hours=1)
    bucket = _Bucket(
        start=b_start, end=b_end, start_db=dialect.ts_in(b_start), end_db=dialect.ts_in(b_end),
        label=b_start.strftime("%Y%m%dT%H%M"), fx_day=local.date(), record_start=start,
    )
    cache[key] = bucket
    return bucket


def _not_billed_reason(sub: _Sub, record_start: datetime) -> str | None:
    if sub.status == SubscriptionStatus.SUSPENDED and (sub.suspended_at is None or record_start >= sub.suspended_at):
        return "suspended"
    if sub.trial_until is not None and record_start < sub.trial_until:
        return "trial"
    return None


class _Rates:
    """Conversion factors per (from, to, day), looked up once per run."""

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[tuple[str, str, date], tuple[int, int] | None] = {}

    def factor(self, from_cur: str, to_cur: str, day: date) -> tuple[int, int] | None:
        key = (from_cur.upper(), to_cur.upper(), day)
        if key not in self.cache:
            if key[0] == key[1]:
                self.cache[key] = (1, 1)
            else:
                try:
                    num = int(rates.unit_rate(self.session, from_cur, day) * MICRO)
                    den = int(rates.unit_rate(self.session, to_cur, day) * MICRO)
                    self.cache[key] = (num, den)
                except RateMissing:
                    self.cache[key] = None
        return self.cache[key]


def _aggregate(conn, dialect: _Dialect, sub_ids: list[int]):
    marks = ",".join("?" * len(sub_ids))
    cur = conn.connection.dbapi_connection.cursor()
    cur.execute(
        dialect.q(
            "SELECT subscription_id, period_start, currency, SUM(cost), COUNT(*), MAX(id) FROM usagerecord "
            f"WHERE ledger_entry_id IS NULL AND subscription_id IN ({marks}) "
            "GROUP BY subscription_id, period_start, currency"
        ),
        sub_ids,
    )
    rows = cur.fetchall()
    cur.close()
    return rows


def _rate_batch(session: Session, conn, dialect: _Dialect, subs: dict[int, _Sub], now: datetime,
                summary: RatingSummary) -> None:
    t = time.perf_counter()
    rows = _aggregate(conn, dialect, sorted(subs))
    t = summary._tick("aggregate", t)
    buckets: dict = {}
    fx = _Rates(session)
    # entry key -> [sub, bucket, currency, reason, cost_micro, count, max_id, [groups]]
    entries: dict[tuple, list] = {}
    for sub_id, raw_start, currency, cost, count, max_id in rows:
        sub = subs[sub_id]
        bucket = _bucket_of(dialect, raw_start, sub.tz, sub.granularity, buckets)
        reason = _not_billed_reason(sub, bucket.record_start)
        ekey = (sub_id, bucket.label, currency, reason)
        entry = entries.get(ekey)
        if entry is None:
            entry = entries[ekey] = [sub, bucket, currency, reason, 0, 0, 0, []]
        entry[4] += int(cost)
        entry[5] += count
        if max_id > entry[6]:
            entry[6] = max_id
        entry[7].append((sub_id, raw_start, currency, max_id))
    if not entries:
        return

    occurred_now = dialect.ts_in(now)
    new_rows: list[tuple] = []
    group_rows: list[tuple] = []  # (entry index, sub, period_start raw, currency, max id)
    keys: list[str] = []
    touched: set[int] = set()
    for sub, bucket, currency, reason, cost_micro, count, max_id, groups in entries.values():
        if reason is None:
            factor = fx.factor(currency, sub.currency, bucket.fx_day)
            if factor is None:
                summary.missing_rates[sub.id] = f"no {currency} rate on or before {bucket.fx_day}"
                continue
            num, den = factor
            if minor_unit(sub.currency) != 2:
                raise NotImplementedError(f"rating into {sub.currency}: only 2-decimal currencies")
            amount = -price_cents(cost_micro, sub.markup_micro, num, den)
            source_amount = _div_half_up(cost_micro * (_PCT_DEN + sub.markup_micro), _PCT_DEN)
            fx_rate = _div_half_up(num * MICRO, den)
            meta = f'{{"records": {count}, "max_record_id": {max_id}, "cost": {cost_micro}}}'
            summary.charged[sub.currency] = summary.charged.get(sub.currency, Decimal(0)) - Decimal(amount).scaleb(-2)
            description = f"Usage: {sub.name}"
        else:
            amount, source_amount, fx_rate = 0, 0, None
            meta = f'{{"records": {count}, "max_record_id": {max_id}, "cost": {cost_micro}, "not_billed": "{reason}"}}'
            summary.not_billed_records += count
            description = f"Usage not billed ({reason}): {sub.name}"
        key = f"usage:{sub.id}:{bucket.label}:{max_id}"
        index = len(new_rows)
        keys.append(key)
        new_rows.append((
            sub.org_id, "usage", amount, sub.currency, description[:500], sub.id, source_amount, currency,
            fx_rate, dialect.date_in(bucket.fx_day) if fx_rate is not None else None,
            bucket.start_db, bucket.end_db, key, bucket.start_db, occurred_now, meta,
        ))
        for g in groups:
            group_rows.append((index,) + g)
        summary.records += count
        touched.add(sub.id)
    t = summary._tick("price", t)
    if not new_rows:
        return
    ids = _insert_entries(conn, dialect, new_rows, keys)
    t = summary._tick("insert_entries", t)
    _mark_records(conn, dialect, [(ids[i], sub_id, start, cur, max_id) for i, sub_id, start, cur, max_id in group_rows])
    t = summary._tick("mark_records", t)
    summary.entries += len(new_rows)
    summary.subscriptions += len(touched)


_ENTRY_COLUMNS = ("id, org_id, kind, amount, currency, description, subscription_id, source_amount, "
                  "source_currency, fx_rate, fx_date, period_start, period_end, idempotency_key, occurred_at, "
                  "created_at, meta")


def _insert_entries(conn, dialect: _Dialect, rows: list[tuple], keys: list[str]) -> list[int]:
    """Insert the entries (skipping keys already posted) and return the id of each key's entry."""
    raw = conn.connection.dbapi_connection
    cur = raw.cursor()
    n = len(rows)
    if dialect.pg:
        cur.execute("SELECT nextval(pg_get_serial_sequence('ledgerentry', 'id')) FROM generate_series(1, %s)", (n,))
        ids = [r[0] for r in cur.fetchall()]
        cur.execute(f"CREATE TEMP TABLE rating_entry ON COMMIT DROP AS SELECT {_ENTRY_COLUMNS} FROM ledgerentry LIMIT 0")
        with cur.copy(f"COPY rating_entry ({_ENTRY_COLUMNS}) FROM STDIN") as copy:
            for i, row in zip(ids, rows):
                copy.write_row((i,) + row)
        cur.execute(f"INSERT INTO ledgerentry ({_ENTRY_COLUMNS}) SELECT {_ENTRY_COLUMNS} FROM rating_entry "
                    "ON CONFLICT (idempotency_key) DO NOTHING")
        inserted = cur.rowcount
    else:
        base = cur.execute("SELECT COALESCE(MAX(id), 0) FROM ledgerentry").fetchone()[0]
        ids = list(range(base + 1, base + 1 + n))
        cur.executemany(
            f"INSERT INTO ledgerentry ({_ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            [(i,) + row for i, row in zip(ids, rows)],
        )
        inserted = cur.rowcount
    if inserted != n:
        # Some keys were already posted (a record set rated before): link those records to the
        # existing entry instead of charging again.
        log.warning("rating: %d of %d usage entries already existed; linking to them", n - inserted, n)
        existing: dict[str, int] = {}
        for start in range(0, n, 500):
            chunk = keys[start:start + 500]
            cur.execute(dialect.q(f"SELECT idempotency_key, id FROM ledgerentry WHERE idempotency_key IN "
                                  f"({','.join('?' * len(chunk))})"), chunk)
            existing.update(dict(cur.fetchall()))
        ids = [existing[k] for k in keys]
    cur.close()
    return ids


def _mark_records(conn, dialect: _Dialect, groups: Iterable[tuple]) -> None:
    """Set ``ledger_entry_id`` on exactly the records that were summed, in one UPDATE."""
    raw = conn.connection.dbapi_connection
    cur = raw.cursor()
    if dialect.pg:
        cur.execute("CREATE TEMP TABLE rating_map (entry_id bigint, sub_id bigint, period_start timestamptz, "
                    "currency varchar(3), max_id bigint) ON COMMIT DROP")
        with cur.copy("COPY rating_map FROM STDIN") as copy:
            for row in groups:
                copy.write_row(row)
        cur.execute("ANALYZE rating_map")
    else:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS rating_map (entry_id INTEGER, sub_id INTEGER, "
                    "period_start TEXT, currency TEXT, max_id INTEGER)")
        cur.execute("DELETE FROM rating_map")
        cur.executemany("INSERT INTO rating_map VALUES (?,?,?,?,?)", groups)
    cur.execute(
        "UPDATE usagerecord SET ledger_entry_id = m.entry_id FROM rating_map m "
        "WHERE usagerecord.subscription_id = m.sub_id AND usagerecord.period_start = m.period_start "
        "AND usagerecord.currency = m.currency AND usagerecord.ledger_entry_id IS NULL "
        "AND usagerecord.id <= m.max_id"
    )
    if not dialect.pg:
        cur.execute("DELETE FROM rating_map")
    cur.close()
