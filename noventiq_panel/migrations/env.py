"""Alembic environment of the panel.

Used through ``noventiq_panel.services.core.schema`` (``noventiq-panel init`` / ``noventiq-panel db ...``)
with a programmatic Config: no alembic.ini is needed. The database URL comes from
``config.attributes["url"]`` (set by the schema service) or the panel's settings (REFLEX_DB_URL);
a connection passed in ``config.attributes["connection"]`` is used as it is.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from noventiq_panel import models  # noqa: F401  (registers every table on the metadata)
from noventiq_panel.config import get_settings
from noventiq_panel.services.core.schema import context_options, ensure_sqlite_dir

config = context.config
target_metadata = models.metadata


def _url() -> str:
    return config.attributes.get("url") or get_settings().db_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(url.split(":", 1)[0].split("+", 1)[0]),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, **context_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = _url()
    ensure_sqlite_dir(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
