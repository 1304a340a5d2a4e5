"""Gap-free counters (``models.Sequence``): invoice numbers, closing-document numbers.

A number is taken inside the caller's transaction: the counter row is created if missing, then
locked (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the whole transaction already holds the
write lock, ``BEGIN IMMEDIATE``) and incremented. A second transaction that wants a number waits
for the first to commit or roll back, so a rolled-back transaction gives its number back and the
sequence has no gaps. Helpers here only flush; the caller commits.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from noventiq_panel.models import Sequence


def _ensure(session: Session, name: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(Sequence).values(name=name, value=0).on_conflict_do_nothing(index_elements=["name"]))


def lock(session: Session, name: str) -> int:
    """Create the counter if missing and lock it for the rest of the transaction; its current value."""
    _ensure(session, name)
    row = session.exec(
        select(Sequence.value).where(Sequence.name == name).with_for_update()
    ).one()
    return int(row)


def next_value(session: Session, name: str) -> int:
    """Lock the counter and take the next number (flushed with the caller's transaction)."""
    current = lock(session, name)
    session.execute(
        update(Sequence).where(Sequence.name == name).values(value=Sequence.value + 1)
        .execution_options(synchronize_session=False)
    )
    # Anything already loaded for the row must not shadow the new value.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Sequence) and obj.name == name:
            session.expire(obj)
    return current + 1


def current_value(session: Session, name: str) -> int:
    row = session.get(Sequence, name)
    return row.value if row is not None else 0
