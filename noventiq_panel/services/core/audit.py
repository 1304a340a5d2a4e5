"""Audit events: who changed what, when. Written in the same transaction as the change.

``event_row`` is the one place an event's columns are made (how details are stored); ``record``
adds one, ``record_many`` writes many in one bulk insert (jobs)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from noventiq_panel.db import insert_rows
from noventiq_panel.models.types import utcnow

from noventiq_panel.models import AuditEvent
from noventiq_panel.services.core.authz import Actor, can_read


def _stored(value: Any) -> Any:
    """A detail as it is stored: JSON's own types as they are, anything else (Decimal, dates) as text."""
    return value if isinstance(value, (int, str, bool, type(None), list, dict)) else str(value)


def event_row(*, org_id: int, user_id: int | None, action: str, subscription_id: int | None = None,
              created_at: datetime | None = None, **details: Any) -> dict[str, Any]:
    """The columns of one audit event."""
    return dict(org_id=org_id, user_id=user_id, subscription_id=subscription_id, action=action,
                details={k: _stored(v) for k, v in details.items()}, created_at=created_at or utcnow())


def record(session: Session, actor: Actor, action: str, *, subscription_id: int | None = None,
           created_at: datetime | None = None, **details: Any) -> AuditEvent:
    event = AuditEvent(**event_row(org_id=actor.org_id, user_id=actor.user_id, action=action,
                                   subscription_id=subscription_id, created_at=created_at, **details))
    session.add(event)
    return event


def record_many(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows made by :func:`event_row` in one bulk insert; returns how many."""
    return insert_rows(session, AuditEvent.__table__, rows)


def list_events(session: Session, actor: Actor, *, subscription_id: int | None = None, limit: int = 100,
                offset: int = 0) -> list[AuditEvent]:
    access = can_read(session, actor)
    query = select(AuditEvent).where(AuditEvent.org_id == access.org_id)
    if subscription_id is not None:
        query = query.where(AuditEvent.subscription_id == subscription_id)
    query = query.order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc()).offset(offset).limit(limit)
    return list(session.exec(query).all())
