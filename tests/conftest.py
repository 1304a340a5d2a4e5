"""Shared fixtures: a fresh database per test, on SQLite and, when it answers, on PostgreSQL.

Tests that take ``db_url``/``engine``/``session`` run once per backend. ``db_url`` is an empty
database without schema (migration and CLI tests); ``engine``/``session`` have the schema. On
PostgreSQL the run uses throw-away databases of its own (one shared by the ``engine`` tests and
truncated before each), so parallel runs never see each other's rows. Without a PostgreSQL server
the PostgreSQL variants are skipped with the reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from noventiq_panel import db as dbmod
from noventiq_panel import models
from noventiq_panel.config import reset_settings

PG_ADMIN_URL = os.environ.get("PANEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def vendor_double():
    """Every vendor activates at once through the instant test double (tests/doubles/instant_vendor.py)
    unless a test takes it away (``connector.unregister("*")``: vendors without an API, the
    provisioning queue). Yields the double, which keeps what it was told."""
    from noventiq_panel.services.vendors import connector
    from tests.doubles.instant_vendor import InstantVendor

    double = InstantVendor()
    connector.register("*", double)
    yield double
    connector.unregister("*")


@pytest.fixture
def manual_vendors(vendor_double):
    """No connector for any vendor: every order and change goes to the provisioning queue
    (``pytestmark = pytest.mark.usefixtures("manual_vendors")`` in a module)."""
    from noventiq_panel.services.vendors import connector

    connector.unregister("*")
    yield


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = dbmod.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL at {PG_ADMIN_URL} does not answer ({type(exc).__name__}); PostgreSQL variants skipped"


_PG_REASON = _pg_available()


def _create_pg_database() -> tuple[str, callable]:
    name = f"panel_test_{uuid.uuid4().hex[:12]}"
    admin = dbmod.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop():
        dbmod.dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request, tmp_path: Path, monkeypatch):
    """A fresh, empty database URL made the panel's default for the test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'panel.db'}"
        drop = dbmod.dispose_engines
    else:
        if _PG_REASON:
            pytest.skip(_PG_REASON)
        url, drop = _create_pg_database()
    monkeypatch.setenv("REFLEX_DB_URL", url)
    reset_settings()
    dbmod.dispose_engines()
    yield url
    drop()
    reset_settings()


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch):
    """SQLite only (tests of behaviour that does not depend on the backend)."""
    url = f"sqlite:///{tmp_path / 'panel.db'}"
    monkeypatch.setenv("REFLEX_DB_URL", url)
    reset_settings()
    dbmod.dispose_engines()
    yield url
    dbmod.dispose_engines()
    reset_settings()


_SCHEMA_TEMPLATE: Path | None = None


def _sqlite_schema_template() -> Path:
    """A SQLite file with the schema and no rows, made once per process (per xdist worker):
    ``create_all`` costs ~20 ms a test, a copy of the file well under 1 ms."""
    global _SCHEMA_TEMPLATE
    if _SCHEMA_TEMPLATE is None:
        folder = Path(tempfile.mkdtemp(prefix="panel-schema-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "schema.db"
        engine = dbmod.make_engine(f"sqlite:///{path}")
        models.metadata.create_all(engine)
        engine.dispose()  # the last connection closed: SQLite checkpoints and removes the -wal file
        assert not Path(f"{path}-wal").exists(), "the schema template still has a write-ahead log"
        _SCHEMA_TEMPLATE = path
    return _SCHEMA_TEMPLATE


def _engine_for(url: str):
    """An engine on ``url`` with the schema: a new SQLite file is a copy of the schema template."""
    path = Path(url.split("///", 1)[1]) if url.startswith("sqlite:///") else None
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_schema_template(), path)
        return dbmod.get_engine(url)
    engine = dbmod.get_engine(url)
    models.metadata.create_all(engine)
    return engine


@pytest.fixture(scope="session")
def _pg_shared_url():
    """One PostgreSQL database with the schema for the whole run (creating one costs ~2 s)."""
    if _PG_REASON:
        pytest.skip(_PG_REASON)
    url, drop = _create_pg_database()
    engine = dbmod.make_engine(url)
    models.metadata.create_all(engine)
    engine.dispose()
    yield url
    drop()


def _truncate_all(url: str) -> None:
    engine = dbmod.get_engine(url)
    names = ", ".join(f'"{t.name}"' for t in models.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def engine(request, tmp_path: Path, monkeypatch):
    """An engine on an empty database with the schema, made the panel's default for the test.

    SQLite: a new file per test. PostgreSQL: the run's shared database, truncated before the test.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'panel.db'}"
    else:
        url = request.getfixturevalue("_pg_shared_url")
    monkeypatch.setenv("REFLEX_DB_URL", url)
    reset_settings()
    dbmod.dispose_engines()
    if request.param == "sqlite":
        engine = _engine_for(url)
    else:
        _truncate_all(url)
        engine = dbmod.get_engine(url)
    yield engine
    dbmod.dispose_engines()
    reset_settings()


@pytest.fixture
def sqlite_engine(sqlite_url):
    return _engine_for(sqlite_url)


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as s:
        yield s


def pytest_collection_modifyitems(config, items):
    """Browser tests run together: Playwright's sync API keeps an event loop running in this thread
    until its fixture ends (with the last browser test), and the asyncio tests cannot start their
    own loop beside it. In one process they run last; under pytest-xdist (one worker takes them all,
    ``--dist loadgroup``) first, so the server's build starts at once while the other workers run
    the rest."""
    under_xdist = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    items.sort(key=lambda item: ("/e2e/" in "/" + item.nodeid) != under_xdist)
