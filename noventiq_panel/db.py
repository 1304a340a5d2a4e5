"""Engine and sessions.

SQLite (WAL) is the embedded default; PostgreSQL is used when ``REFLEX_DB_URL`` points at it.
On SQLite every transaction starts with ``BEGIN IMMEDIATE``: a read-then-write (check the balance,
then charge) must not interleave with another writer, and SQLite's deferred transactions would
fail such an upgrade with SQLITE_BUSY instead of waiting. On PostgreSQL the same guarantee comes
from ``SELECT ... FOR UPDATE`` on the organisation row (``services.ledger.lock_organisation``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from .config import get_settings

_engines: dict[str, Engine] = {}


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

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - driver hook
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


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


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for one unit of work. Services commit what they change; anything left is rolled back."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
        except Exception:
            session.rollback()
            raise
