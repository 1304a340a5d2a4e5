"""The schema comes from the Alembic migrations, and the migrations match the models.

Hazards: a table or column added to ``models/`` without a migration (the app would fail on a
fresh database created by ``noventiq-panel init``); a migration that only works on SQLite.
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from noventiq_panel import models
from noventiq_panel.services.core import schema


def test_upgrade_of_an_empty_database_reaches_head_and_matches_the_models(db_url):
    assert schema.current(db_url) is None
    reached = schema.upgrade(db_url)
    assert reached == schema.head() is not None
    assert schema.is_up_to_date(db_url)
    diff = schema.differences(db_url)
    assert diff == [], f"the migrations differ from models.metadata, write a migration: {diff}"
    engine = create_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(models.metadata.tables) <= tables


def test_upgrade_twice_changes_nothing(sqlite_url):
    first = schema.upgrade(sqlite_url)
    assert schema.upgrade(sqlite_url) == first


def test_downgrade_to_base_and_up_again(db_url):
    schema.upgrade(db_url)
    schema.downgrade(db_url, "base")
    assert schema.current(db_url) is None
    engine = create_engine(db_url)
    try:
        assert not set(models.metadata.tables) & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    schema.upgrade(db_url)
    assert schema.differences(db_url) == []


def test_one_head_only():
    # Two developers adding migrations in parallel make two heads: merge them.
    assert len(schema.script_directory().get_heads()) == 1


def test_migration_scripts_import_the_custom_types_they_use():
    # A script that uses Money()/Price()/UTCDateTime() without importing them fails only on upgrade.
    for rev in schema.script_directory().walk_revisions():
        text = open(rev.path, encoding="utf-8").read()
        if "noventiq_panel.models.types." in text:
            assert "import noventiq_panel.models.types" in text, rev.path


def test_the_comparison_notices_a_missing_table(sqlite_url):
    # Guards the guard: if ``differences`` compared nothing, the first test would always pass.
    schema.upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE budgetalert")
    finally:
        engine.dispose()
    diff = schema.differences(sqlite_url)
    assert any(d[0] == "add_table" and d[1].name == "budgetalert" for d in diff)


def _insert(conn, table: str, **values) -> int:
    """Insert a row into ``table`` as the old schema has it, filling required columns with plain values."""
    from datetime import date, datetime

    from sqlalchemy import Boolean, Date, DateTime, Integer, MetaData, Numeric, Table

    t = Table(table, MetaData(), autoload_with=conn)
    row = {}
    for col in t.columns:
        if col.name in values or col.nullable or col.primary_key:
            continue
        kind = col.type
        if isinstance(kind, Boolean):
            row[col.name] = False
        elif isinstance(kind, DateTime):
            row[col.name] = datetime(2026, 11, 1) if conn.dialect.name == "sqlite" else datetime(2026, 11, 1).astimezone()
        elif isinstance(kind, Date):
            row[col.name] = date(2026, 11, 1)
        elif isinstance(kind, (Integer, Numeric)):
            row[col.name] = 0
        else:
            row[col.name] = f"{table}-{col.name}"[: getattr(kind, "length", None) or 64]
    row.update(values)
    return conn.execute(t.insert().values(**row)).inserted_primary_key[0]


def _old_world(conn, rated: list[bool]) -> int:
    """An organisation with one pay-as-you-go subscription and usage records rated (or not) the old
    way, in order; returns the subscription id."""
    from datetime import date

    org = _insert(conn, "organisation", name="Org", billing_currency="UZS", timezone="Asia/Tashkent")
    vendor = _insert(conn, "vendor", code="ms", name="Microsoft")
    product = _insert(conn, "product", code="azure", vendor_id=vendor, name="Azure")
    plan = _insert(conn, "plan", code="azure-h", product_id=product, name="Azure", billing_type="payg", currency="USD")
    sub = _insert(conn, "subscription", org_id=org, plan_id=plan, status="active", quantity=1)
    entry = _insert(conn, "ledgerentry", org_id=org, kind="usage", amount=-100, currency="UZS", subscription_id=sub,
                    source_currency="USD", fx_rate=12_000_000_000, fx_date=date(2026, 11, 1), idempotency_key="u1")
    for i, is_rated in enumerate(rated):
        _insert(conn, "usagerecord", org_id=org, subscription_id=sub, source_key=f"k{i}", currency="USD",
                ledger_entry_id=entry if is_rated else None)
    return sub


def test_upgrade_keeps_what_was_rated_as_the_watermark_and_the_rate_of_the_day(db_url):
    from sqlalchemy import text

    schema.upgrade(db_url, "0002")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            sub = _old_world(conn, [True, True, True, False])  # the last record was not rated yet
        schema.upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT subscription_id, last_record_id FROM ratingwatermark")).all() == [
                (sub, conn.execute(text("SELECT MAX(id) - 1 FROM usagerecord")).scalar())]
            assert conn.execute(text("SELECT currency, billing_currency, rate FROM usagefxrate")).all() == [
                ("USD", "UZS", 12_000_000_000)]
            if engine.dialect.name == "sqlite":  # ids are never reused, even after a delete
                ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'usagerecord'")).scalar()
                assert "AUTOINCREMENT" in ddl
    finally:
        engine.dispose()


def test_upgrade_refuses_records_that_the_watermark_would_skip(db_url):
    import pytest

    schema.upgrade(db_url, "0002")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            _old_world(conn, [True, False, True])  # the middle one waits for a rate below a rated one
        with pytest.raises(RuntimeError, match="wait for an exchange rate"):
            schema.upgrade(db_url)
        assert schema.current(db_url) == "0002"
    finally:
        engine.dispose()
