"""Licence batches: the seats added at one moment (purchase, renewal, increase) and their
cancellation window.

A batch's window ends ``plan.cancellation_window_hours`` (168 h by default) after it was added
(:func:`proration.window_end`); seats still inside their window may be removed at once with a pro
rata refund, newest first, the others only at the next renewal. A new term gives all seats one new
batch (the old ones are emptied). :func:`batch_row` is the one place a batch's columns are made:
the operations add one ORM row (:func:`add`), the jobs many rows in one bulk insert
(:func:`add_many`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from noventiq_panel.db import insert_rows
from noventiq_panel.models import LicenceBatch
from noventiq_panel.services.core import proration


def batch_row(subscription_id: int, quantity: int, added_at: datetime, window_hours: int,
              source: str) -> dict[str, Any]:
    """The columns of one batch of ``quantity`` seats added at ``added_at`` (source: purchase,
    renewal or increase) whose cancellation window lasts ``window_hours``."""
    return dict(subscription_id=subscription_id, quantity=quantity, added_at=added_at,
                window_ends_at=proration.window_end(added_at, window_hours), source=source)


def add(session: Session, subscription_id: int, quantity: int, added_at: datetime, window_hours: int,
        source: str) -> LicenceBatch:
    """Add one batch (to the session; flushed with it)."""
    batch = LicenceBatch(**batch_row(subscription_id, quantity, added_at, window_hours, source))
    session.add(batch)
    return batch


def add_many(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows made by :func:`batch_row` in one bulk insert; returns how many."""
    return insert_rows(session, LicenceBatch.__table__, rows)


def empty(session: Session, subscription_ids: list[int]) -> None:
    """Take every seat out of the subscriptions' batches (a new term, a cancellation)."""
    if subscription_ids:
        session.exec(update(LicenceBatch).where(col(LicenceBatch.subscription_id).in_(subscription_ids))
                     .values(quantity=0))


def held(session: Session, subscription_id: int) -> list[LicenceBatch]:
    """The batches still holding seats, newest first (the order a decrease takes them back)."""
    return list(session.exec(
        select(LicenceBatch).where(LicenceBatch.subscription_id == subscription_id, LicenceBatch.quantity > 0)
        .order_by(col(LicenceBatch.added_at).desc(), col(LicenceBatch.id).desc())
    ).all())


def in_window(batches: list[LicenceBatch], now: datetime) -> int:
    """Seats of ``batches`` whose cancellation window is still open at ``now``."""
    return sum(b.quantity for b in batches if b.window_ends_at > now)


def take_back(session: Session, subscription_id: int, seats: int, now: datetime) -> None:
    """Remove ``seats`` from the batches still inside their window, newest first."""
    left = seats
    for batch in held(session, subscription_id):
        if left == 0 or batch.window_ends_at <= now:
            continue
        take = min(left, batch.quantity)
        batch.quantity -= take
        left -= take
        session.add(batch)
