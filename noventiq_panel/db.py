"""Engine and sessions.

SQLite (WAL) is the embedded default; PostgreSQL is used when ``REFLEX_DB_URL`` points at it.
On SQLite every transaction starts with ``BEGIN IMMEDIATE``: a read-then-write (check the balance,
then charge) must not interleave with another writer, and SQLite's deferred transactions would
fail such an upgrade with SQLITE_BUSY instead of waiting. On PostgreSQL the same guarantee comes
from ``SELECT ... FOR UPDATE`` on the organisation row (``services.core.ledger.lock_organisation``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from .config import get_settings

_engines: dict[str, Engine] = {}
SQLITE_LOCK_TIMEOUT = 30  # seconds, as the busy timeout below


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - driver hook
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below take over
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB of page cache (the default is 2 MB): imports update several indexes of a large
            # table per row, and rating and analytics read large index ranges.
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()
            dbapi_conn.create_function("local_date", 2, _sqlite_local_date, deterministic=True)

        # Every transaction takes SQLite's write lock, so the threads of one process run their
        # transactions one at a time anyway; they queue on this lock in order instead of in
        # SQLite's busy handler, which sleeps up to 100 ms between tries (the slow tail of page
        # loads under load). Other processes (the CLI, a second worker) still meet the busy handler.
        writer = _WriterLock()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - driver hook
            dbapi = conn.connection.dbapi_connection
            writer.acquire(dbapi)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writer.release(dbapi)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _on_end(conn):  # pragma: no cover - driver hook
            try:
                dbapi = conn.connection.dbapi_connection
            except Exception:  # noqa: BLE001 - invalidated: the pool's events below release it
                return
            writer.release(dbapi)

        # A connection that goes back to the pool, is reset or thrown away holds no transaction:
        # a session dropped without closing, or a connection invalidated mid-transaction, must not
        # keep the lock (SQLite itself let go of its own lock in both cases).
        for name in ("checkin", "reset", "invalidate", "soft_invalidate", "close", "close_detached"):
            event.listen(engine.pool, name, lambda dbapi, *_: writer.release(dbapi))

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class _WriterLock:
    """The process's queue for SQLite's write lock: held from a connection's BEGIN to its end,
    released exactly once by whichever of the end events comes first (by connection)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None  # id() of the DBAPI connection that holds it

    def acquire(self, dbapi) -> None:
        if not self._lock.acquire(timeout=SQLITE_LOCK_TIMEOUT):
            raise TimeoutError(f"no database transaction for {SQLITE_LOCK_TIMEOUT} s")
        self._holder = id(dbapi)

    def release(self, dbapi) -> None:
        if dbapi is not None and self._holder == id(dbapi):
            self._holder = None
            self._lock.release()


def _sqlite_local_date(stamp: str | None, tz: str) -> str | None:
    """SQLite has no time zones: ``local_date(column, tz)`` is this function (registered on every
    connection). SQLite keeps a UTC timestamp as 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    if stamp is None:
        return None
    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz)).date().isoformat()


def local_date(column, tz: str, dialect_name: str):
    """SQL for the calendar date (ISO text, 'YYYY-MM-DD') of a UTC timestamp column in time zone ``tz``."""
    if dialect_name == "postgresql":
        return func.to_char(func.timezone(tz, column), "YYYY-MM-DD")
    return func.local_date(column, tz)


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().db_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def set_engine(engine: Engine) -> None:
    """Make ``engine`` the default one (tests)."""
    _engines[get_settings().db_url] = engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


_MEMO = "nq_memo"


def session_memo(session: Session, name: str) -> dict:
    """A dict for answers that one unit of work asks for again and again (the caller's access,
    exchange rates, the organisation's subscriptions), kept on the session. It is emptied whenever
    the session writes (a flush, a statement, a bulk insert), commits or rolls back. Never for
    money: a balance read before ``lock_organisation`` must be read again after it. Changes not
    yet flushed empty it too (the query it saves would have flushed and seen them). On PostgreSQL a
    change that another transaction commits meanwhile is seen by the next unit of work, as with a
    check made once at the start of this one."""
    if session.new or session.dirty or session.deleted:
        session.info.pop(_MEMO, None)
    return session.info.setdefault(_MEMO, {}).setdefault(name, {})


def keep_loaded(session: Session, *rows: object) -> None:
    """Keep rows the unit of work has read alive until it ends. The session's identity map holds
    rows only weakly, so a row read in one service is read again by ``session.get`` in the next;
    kept here, the second read is answered from the map (the same row, as SQLAlchemy answers
    within one transaction anyway)."""
    session.info.setdefault("nq_kept", []).extend(rows)


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
@event.listens_for(Session, "after_soft_rollback")
def _forget_memo(session, *_args) -> None:  # pragma: no cover - SQLAlchemy hook
    session.info.pop(_MEMO, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_memo_on_write(state) -> None:  # pragma: no cover - SQLAlchemy hook
    if not state.is_select:  # an INSERT, UPDATE or DELETE statement through the session
        state.session.info.pop(_MEMO, None)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for one unit of work. Services commit what they change; anything left is rolled back."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
        except Exception:
            session.rollback()
            raise


class BulkInsert:
    """Insert many rows of one table in one go, through the driver: ``COPY`` on PostgreSQL (even a
    pipelined INSERT per row costs several times more), ``executemany`` in slices on SQLite.

    Rows are tuples in ``columns`` order holding what the model takes (Decimal, datetime, dict);
    each value is put in its storage form by its column type's own bind processor (dates and
    datetimes once per distinct value). Columns named in ``stored`` already hold the storage form
    (the scaled integer of a ``Money``/``Price`` column, say) and are passed as they are."""

    def __init__(self, session: Session, table, columns: Sequence[str], stored: Iterable[str] = ()):
        self.session, self.table, self.columns = session, table, tuple(columns)
        dialect = session.get_bind().dialect
        self.pg = dialect.name == "postgresql"
        skip = set(stored)
        self.procs = [None if name in skip else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                      for name in self.columns]
        self.cache: dict = {}
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in self.columns)
        self.sql = (f"COPY {quote(table.name)} ({names}) FROM STDIN" if self.pg else
                    f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join(['?'] * len(self.columns))})")

    def _value(self, proc, value):
        if value is None:
            return None
        if not isinstance(value, date):  # datetime is a date too
            return proc(value)
        out = self.cache.get(value)
        if out is None:
            if len(self.cache) > 100_000:
                self.cache.clear()
            out = self.cache[value] = proc(value)
        return out

    def _stored(self, rows: Iterable[Sequence]) -> Iterator[tuple]:
        procs, value = self.procs, self._value
        if not any(procs):
            yield from map(tuple, rows)
            return
        for row in rows:
            yield tuple(v if p is None else value(p, v) for p, v in zip(procs, row))

    def insert(self, rows: Iterable[Sequence]) -> int:
        """Insert ``rows`` (any iterable: a generator streams) in the session's transaction; returns
        how many."""
        self.session.info.pop(_MEMO, None)  # through the driver: no session event tells the memo
        connection = self.session.connection()
        count = 0
        if self.pg:
            with connection.connection.cursor() as cursor, cursor.copy(self.sql) as copy:
                for row in self._stored(rows):
                    copy.write_row(row)
                    count += 1
            return count
        cursor = connection.connection.cursor()
        try:
            part: list[tuple] = []
            for row in self._stored(rows):
                part.append(row)
                if len(part) == 5000:
                    cursor.executemany(self.sql, part)
                    count += len(part)
                    part = []
            if part:
                cursor.executemany(self.sql, part)
                count += len(part)
        finally:
            cursor.close()
        return count


def insert_rows(session: Session, table, rows: Iterable[dict]) -> int:
    """Insert ``rows`` (dicts with the same keys, as a row builder makes them) with :class:`BulkInsert`;
    returns how many."""
    rows = list(rows)
    if rows:
        names = list(rows[0])
        BulkInsert(session, table, names).insert([row[name] for name in names] for row in rows)
    return len(rows)
