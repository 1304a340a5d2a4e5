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
from typing import Iterable
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
    rollup_rows: int = 0  # analytics roll-up rows rebuilt (only where the rate used differs)
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

    @property
    def maybe_free(self) -> bool:
        return self.status == SubscriptionStatus.SUSPENDED or self.trial_until is not None


class _Bucket:
    """A billing period; one object per (time zone, granularity, start), compared by identity."""

    __slots__ = ("start", "end", "start_db", "end_db", "label", "fx_day")

    def __init__(self, start: datetime, end: datetime, start_db, end_db, fx_day: date):
        self.start, self.end, self.start_db, self.end_db, self.fx_day = start, end, start_db, end_db, fx_day
        self.label = start.strftime("%Y%m%dT%H%M")


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
        session.commit()  # nothing written; a commit (unlike a rollback) keeps the caller's objects loaded
        return True, after
    batch_summary = RatingSummary()
    _rate_batch(session, conn, dialect, subs, now, batch_summary)
    t = time.perf_counter()
    session.commit()
    _expire_usage(session)
    batch_summary._tick("commit", t)
    for phase, seconds in batch_summary.phases.items():
        summary.phases[phase] = summary.phases.get(phase, 0.0) + seconds
    # Only a committed batch counts (a retried batch must not be counted twice).
    summary.records += batch_summary.records
    summary.entries += batch_summary.entries
    summary.not_billed_records += batch_summary.not_billed_records
    summary.rollup_rows += batch_summary.rollup_rows
    summary.subscriptions += batch_summary.subscriptions
    summary.batches += 1
    for cur, amount in batch_summary.charged.items():
        summary.charged[cur] = summary.charged.get(cur, Decimal(0)) + amount
    summary.missing_rates.update(batch_summary.missing_rates)
    return False, max(s.id for s in subs.values())


def _expire_usage(session: Session) -> None:
    """Records loaded in the caller's session were marked behind the ORM's back: reload them."""
    from ..models import UsageRecord

    for obj in list(session.identity_map.values()):
        if isinstance(obj, UsageRecord):
            session.expire(obj)


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


class _Periods:
    """Maps a record's stored ``period_start`` to its billing period, once per distinct value."""

    def __init__(self, dialect: "_Dialect"):
        self.dialect = dialect
        self.canonical: dict[tuple, _Bucket] = {}
        self.by_zone: dict[tuple[str, str], dict] = {}

    def cache_for(self, tz: str, granularity: str) -> dict:
        return self.by_zone.setdefault((tz, granularity), {})

    def resolve(self, raw_start, tz: str, granularity: str) -> tuple[_Bucket, datetime]:
        start = self.dialect.ts_out(raw_start)
        local = start.astimezone(ZoneInfo(tz))
        if granularity == "day":
            b_start, b_end = day_bounds(local.date(), tz)
        else:
            b_start = local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)
            b_end = b_start + timedelta(hours=1)
        key = (tz, granularity, b_start)
        bucket = self.canonical.get(key)
        if bucket is None:
            # The rate of the usage day: the period's first day in the organisation's time zone.
            bucket = self.canonical[key] = _Bucket(
                b_start, b_end, self.dialect.ts_in(b_start), self.dialect.ts_in(b_end),
                b_start.astimezone(ZoneInfo(tz)).date(),
            )
        return bucket, start


# Ledger descriptions are written in Russian, the language of the closing documents.
_NOT_BILLED_RU = {"suspended": "подписка приостановлена", "trial": "пробный период"}


def _not_billed_reason(sub: _Sub, record_start: datetime) -> str | None:
    if sub.status == SubscriptionStatus.SUSPENDED and (sub.suspended_at is None or record_start >= sub.suspended_at):
        return "suspended"
    if sub.trial_until is not None and record_start < sub.trial_until:
        return "trial"
    return None


class _Rates:
    """Conversion factors per (from, to, day), looked up once per batch: (num, den, rate to 6 decimals)."""

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[tuple[str, str, date], tuple[int, int, int] | None] = {}

    def factor(self, from_cur: str, to_cur: str, day: date) -> tuple[int, int, int] | None:
        key = (from_cur, to_cur, day)
        if key not in self.cache:
            if from_cur.upper() == to_cur.upper():
                self.cache[key] = (1, 1, MICRO)
            else:
                try:
                    num = int(rates.unit_rate(self.session, from_cur, day) * MICRO)
                    den = int(rates.unit_rate(self.session, to_cur, day) * MICRO)
                    self.cache[key] = (num, den, _div_half_up(num * MICRO, den))
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
    if not rows:
        return
    periods = _Periods(dialect)
    caches = {sid: periods.cache_for(sub.tz, sub.granularity) for sid, sub in subs.items()}
    maybe_free = {sid for sid, sub in subs.items() if sub.maybe_free}
    # (sub id, bucket, record currency, not-billed reason) -> [Σcost, count, max id, [SQL groups]]
    entries: dict[tuple, list] = {}
    for sub_id, raw_start, currency, cost, count, max_id in rows:
        cache = caches[sub_id]
        hit = cache.get(raw_start)
        if hit is None:
            sub = subs[sub_id]
            hit = cache[raw_start] = periods.resolve(raw_start, sub.tz, sub.granularity)
        reason = _not_billed_reason(subs[sub_id], hit[1]) if sub_id in maybe_free else None
        ekey = (sub_id, hit[0], currency, reason)
        entry = entries.get(ekey)
        if entry is None:
            entries[ekey] = [int(cost), count, max_id, [(sub_id, raw_start, currency, max_id)]]
        else:
            entry[0] += int(cost)
            entry[1] += count
            if max_id > entry[2]:
                entry[2] = max_id
            entry[3].append((sub_id, raw_start, currency, max_id))

    fx = _Rates(session)
    # per (record currency, billing currency, bucket): (num, den, fx rate, fx date as stored) or None
    factors: dict[tuple, tuple | None] = {}
    used_rates: dict[tuple[int, date, str], int] = {}  # (sub, local day, currency) -> fx rate (micro)
    ids = iter(_new_ids(conn, dialect, len(entries)))
    occurred_now = dialect.ts_in(now)
    per_sub = {sid: (sub, sub.org_id, sub.currency, _PCT_DEN + sub.markup_micro,
                     10 ** (2 - minor_unit(sub.currency)), f"Потребление: {sub.name}"[:500])
               for sid, sub in subs.items()}
    new_rows: list[tuple] = []
    map_rows: list[tuple] = []  # (entry id, sub id, period_start as stored, currency, max id)
    append_entry, append_map = new_rows.append, map_rows.append
    charged: dict[str, int] = {}
    touched: set[int] = set()
    records = 0
    for (sub_id, bucket, currency, reason), (cost_micro, count, max_id, groups) in entries.items():
        sub, org_id, org_cur, markup_factor, step, description = per_sub[sub_id]
        if reason is None:
            fkey = (currency, org_cur, bucket)
            factor = factors.get(fkey, False)
            if factor is False:
                rate = fx.factor(currency, org_cur, bucket.fx_day)
                factor = factors[fkey] = None if rate is None else (*rate, dialect.date_in(bucket.fx_day))
            if factor is None:
                summary.missing_rates[sub_id] = f"no {currency} rate on or before {bucket.fx_day}"
                continue
            num, den, fx_rate, fx_date = factor
            marked_up = cost_micro * markup_factor
            # the ledger stores 2 decimals; a currency with fewer is rounded to its own unit
            cents = _div_half_up(marked_up * num, 10**12 * den * step) * step
            amount, source_amount = -cents, _div_half_up(marked_up, _PCT_DEN)
            charged[org_cur] = charged.get(org_cur, 0) + cents
            used_rates[(sub_id, bucket.fx_day, currency)] = fx_rate
            meta = f'{{"records": {count}, "max_record_id": {max_id}, "cost_micro": {cost_micro}}}'
        else:
            amount, source_amount, fx_rate, fx_date = 0, 0, None, None
            meta = (f'{{"records": {count}, "max_record_id": {max_id}, "cost_micro": {cost_micro}, '
                    f'"not_billed": "{reason}"}}')
            summary.not_billed_records += count
            description = f"Потребление не оплачивается ({_NOT_BILLED_RU.get(reason, reason)}): {sub.name}"[:500]
        entry_id = next(ids)
        append_entry((
            entry_id, org_id, "usage", amount, org_cur, description, sub_id, source_amount, currency,
            fx_rate, fx_date, bucket.start_db, bucket.end_db,
            f"usage:{sub_id}:{bucket.label}:{max_id}", bucket.start_db, occurred_now, meta,
        ))
        for group in groups:
            append_map((entry_id, *group))
        records += count
        touched.add(sub_id)
    summary.records += records
    t = summary._tick("price", t)
    if not new_rows:
        return
    remap = _insert_entries(conn, dialect, new_rows)
    if remap:
        map_rows = [(remap.get(row[0], row[0]),) + row[1:] for row in map_rows]
    t = summary._tick("insert_entries", t)
    _mark_records(conn, dialect, map_rows)
    t = summary._tick("mark_records", t)
    summary.rollup_rows += _refresh_rollup(session, conn, dialect, used_rates)
    t = summary._tick("rollup", t)
    summary.entries += len(new_rows) - len(remap)
    summary.subscriptions += len(touched)
    for cur, cents in charged.items():
        summary.charged[cur] = summary.charged.get(cur, Decimal(0)) + Decimal(cents).scaleb(-minor_unit(cur))


_ENTRY_COLUMNS = ("id, org_id, kind, amount, currency, description, subscription_id, source_amount, "
                  "source_currency, fx_rate, fx_date, period_start, period_end, idempotency_key, occurred_at, "
                  "created_at, meta")
_ENTRY_WIDTH = len(_ENTRY_COLUMNS.split(", "))


def _new_ids(conn, dialect: _Dialect, n: int) -> list[int]:
    """Ids for the new entries: the inserts below give them explicitly (no RETURNING round trip)."""
    cur = conn.connection.dbapi_connection.cursor()
    if dialect.pg:
        cur.execute("SELECT nextval(pg_get_serial_sequence('ledgerentry', 'id')) FROM generate_series(1, %s)", (n,))
        ids = [r[0] for r in cur.fetchall()]
    else:
        # The batch holds SQLite's write lock (BEGIN IMMEDIATE): nobody else inserts meanwhile.
        base = cur.execute("SELECT COALESCE(MAX(id), 0) FROM ledgerentry").fetchone()[0]
        ids = list(range(base + 1, base + 1 + n))
    cur.close()
    return ids


def _insert_entries(conn, dialect: _Dialect, rows: list[tuple]) -> dict[int, int]:
    """Insert the entries, skipping idempotency keys already posted.

    Returns {id we meant to give: id of the entry already posted under that key} for the skipped
    ones (empty in the normal case), so their records are linked to the existing entry instead of
    being charged again.
    """
    cur = conn.connection.dbapi_connection.cursor()
    n = len(rows)
    if dialect.pg:
        cur.execute(f"CREATE TEMP TABLE rating_entry ON COMMIT DROP AS SELECT {_ENTRY_COLUMNS} FROM ledgerentry LIMIT 0")
        with cur.copy(f"COPY rating_entry ({_ENTRY_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO ledgerentry ({_ENTRY_COLUMNS}) SELECT {_ENTRY_COLUMNS} FROM rating_entry "
                    "ON CONFLICT (idempotency_key) DO NOTHING")
        inserted = cur.rowcount
    else:
        cur.executemany(
            f"INSERT INTO ledgerentry ({_ENTRY_COLUMNS}) VALUES ({','.join('?' * _ENTRY_WIDTH)}) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            rows,
        )
        inserted = cur.rowcount
    remap: dict[int, int] = {}
    if inserted != n:
        log.warning("rating: %d of %d usage entries were already posted; linking their records to them",
                    n - inserted, n)
        key_at = _ENTRY_COLUMNS.split(", ").index("idempotency_key")
        wanted = {row[key_at]: row[0] for row in rows}
        keys = list(wanted)
        for start in range(0, n, 500):
            chunk = keys[start:start + 500]
            cur.execute(dialect.q(f"SELECT idempotency_key, id FROM ledgerentry WHERE idempotency_key IN "
                                  f"({','.join('?' * len(chunk))})"), chunk)
            for key, existing in cur.fetchall():
                if existing != wanted[key]:
                    remap[wanted[key]] = existing
    cur.close()
    return remap


def _refresh_rollup(session: Session, conn, dialect: _Dialect, used: dict[tuple[int, date, str], int]) -> int:
    """Keep the analytics roll-up (``UsageDaily``, services/analytics.py) in step with the rates used.

    The importer builds the roll-up with the day's rate known at import time; rating may use another
    one (the day's rate arrived meanwhile). Only (subscription, day) pairs whose roll-up is missing
    or disagrees with the rate used are rebuilt — by the analytics service, in this transaction.
    """
    if not used:
        return 0
    try:
        from . import analytics
    except ImportError:  # pragma: no cover - analytics is another module
        return 0
    if not hasattr(analytics, "refresh_rollup_pairs"):  # pragma: no cover
        return 0
    sub_ids = sorted({k[0] for k in used})
    days = [k[1] for k in used]
    cur = conn.connection.dbapi_connection.cursor()
    cur.execute(dialect.q(
        "SELECT subscription_id, day, currency, SUM(cost), SUM(cost_org), COUNT(*), COUNT(cost_org) FROM usagedaily "
        f"WHERE subscription_id IN ({','.join('?' * len(sub_ids))}) AND day >= ? AND day <= ? "
        "GROUP BY subscription_id, day, currency"), [*sub_ids, dialect.date_in(min(days)), dialect.date_in(max(days))])
    have = {}
    for sid, day, currency, cost, cost_org, n, n_org in cur.fetchall():
        day = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
        have[(sid, day, currency)] = (int(cost or 0), int(cost_org or 0), n, n_org)
    cur.close()
    stale = set()
    for key, rate in used.items():
        row = have.get(key)
        if row is None or row[3] != row[2]:
            stale.add(key[:2])
            continue
        cost, cost_org, n, _ = row
        # cost and cost_org are micro units; each roll-up row rounds cost_org to 6 decimals.
        if abs(cost_org * MICRO - cost * rate) > n * MICRO:
            stale.add(key[:2])
    if not stale:
        return 0
    return analytics.refresh_rollup_pairs(session, stale)


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
