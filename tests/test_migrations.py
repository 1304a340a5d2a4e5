"""The schema comes from the Alembic migrations, and the migrations match the models.

Hazards: a table or column added to ``models/`` without a migration (the app would fail on a
fresh database created by ``noventiq-panel init``); a migration that only works on SQLite.
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from noventiq_panel import models
from noventiq_panel.services import schema


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
