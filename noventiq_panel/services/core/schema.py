"""The database schema: Alembic migrations shipped inside the package.

The panel never calls ``create_all`` at run time: ``noventiq-panel init`` (and ``scripts/run.sh``)
upgrade the database to the head revision. The Alembic environment lives in
``noventiq_panel/migrations`` and is driven here through a programmatic ``Config``, so no
``alembic.ini`` is needed (keep none at the project root: Reflex would then run its own
``reflex db`` autogenerate check at every start).

    upgrade(url)          migrate to head (or a given revision)
    current(url)          the revision the database is at (None when empty)
    head()                the newest revision of the scripts
    differences(url)      what autogenerate sees between the database and the models
    revision(message)     write a new migration script (autogenerate by default; for developers)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from noventiq_panel.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
TYPES_MODULE = "noventiq_panel.models.types"


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of an SQLite file (the default ``data/panel.db`` may not exist yet)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _render_item(type_: str, obj: Any, autogen_context) -> str | bool:
    """Render the panel's column types importably in migration scripts.

    ``Money``/``Price``/``UTCDateTime`` come from ``noventiq_panel.models.types`` (the script
    template imports that module); SQLModel's ``AutoString`` is written as a plain ``sa.String``.
    """
    if type_ != "type":
        return False
    from sqlmodel.sql.sqltypes import AutoString

    from noventiq_panel.models import types as t

    if isinstance(obj, (t.Money, t.Price, t.UTCDateTime)):
        return f"{TYPES_MODULE}.{type(obj).__name__}()"
    if isinstance(obj, t.ScaledDecimal):
        return f"{TYPES_MODULE}.ScaledDecimal({obj.scale})"
    if isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def context_options(dialect_name: str) -> dict[str, Any]:
    """Options of the migration context, shared by env.py and ``differences``."""
    from noventiq_panel import models

    return {
        "target_metadata": models.metadata,
        "render_as_batch": dialect_name == "sqlite",  # SQLite alters tables by copying them
        "compare_type": True,
        "compare_server_default": False,
        "render_item": _render_item,
        "user_module_prefix": f"{TYPES_MODULE}.",
    }


def make_config(url: str | None = None, connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("truncate_slug_length", "40")
    cfg.attributes["url"] = url or get_settings().db_url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(make_config("sqlite://"))


def head() -> str | None:
    return script_directory().get_current_head()


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (head by default); returns the revision reached."""
    url = url or get_settings().db_url
    ensure_sqlite_dir(url)
    command.upgrade(make_config(url), revision)
    return current(url)


def downgrade(url: str | None, revision: str) -> str | None:
    url = url or get_settings().db_url
    command.downgrade(make_config(url), revision)
    return current(url)


def _engine(url: str):
    ensure_sqlite_dir(url)
    return create_engine(url, poolclass=pool.NullPool)


def current(url: str | None = None) -> str | None:
    """The revision the database is at; None for a database that was never migrated."""
    engine = _engine(url or get_settings().db_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def is_up_to_date(url: str | None = None) -> bool:
    return current(url) == head()


def differences(url: str | None = None) -> list:
    """Autogenerate's differences between the database and ``models.metadata`` (empty: in step)."""
    from noventiq_panel import models

    engine = _engine(url or get_settings().db_url)
    try:
        with engine.connect() as conn:
            opts = context_options(conn.dialect.name)
            opts.pop("target_metadata")
            ctx = MigrationContext.configure(conn, opts=opts)
            return compare_metadata(ctx, models.metadata)
    finally:
        engine.dispose()


def _next_rev_id() -> str:
    numbers = [int(m.group(1)) for rev in script_directory().walk_revisions()
               if (m := re.fullmatch(r"(\d+)", rev.revision))]
    return f"{max(numbers, default=0) + 1:04d}"


def revision(message: str, *, autogenerate: bool = True, url: str | None = None) -> str:
    """Write a new migration script against the database at ``url`` (which must be at head).

    Developers only: ``noventiq-panel db revision -m "..."``. Review the script it writes
    (autogenerate misses renames and some type changes).
    """
    rev_id = _next_rev_id()
    cfg = make_config(url)
    script = command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
    scripts = script if isinstance(script, list) else [script]
    return ", ".join(s.path for s in scripts if s is not None)
