"""Audit events: who changed what, when. Written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from ..models import AuditEvent
from .authz import Actor, can_read


def record(session: Session, actor: Actor, action: str, *, subscription_id: int | None = None, **details: Any) -> AuditEvent:
    event = AuditEvent(
        org_id=actor.org_id,
        user_id=actor.user_id,
        subscription_id=subscription_id,
        action=action,
        details={k: (str(v) if not isinstance(v, (int, str, bool, type(None), list, dict)) else v) for k, v in details.items()},
    )
    session.add(event)
    return event


def list_events(session: Session, actor: Actor, *, subscription_id: int | None = None, limit: int = 100,
                offset: int = 0) -> list[AuditEvent]:
    access = can_read(session, actor)
    query = select(AuditEvent).where(AuditEvent.org_id == access.org_id)
    if subscription_id is not None:
        query = query.where(AuditEvent.subscription_id == subscription_id)
    query = query.order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc()).offset(offset).limit(limit)
    return list(session.exec(query).all())
