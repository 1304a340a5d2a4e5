"""Who may do what. Every service that reads or changes a customer's data calls one of these
with the acting user; the role is always read from the database, never trusted from the caller.

Roles: Owner (everything, users included), Administrator (everything but ownership), Financial
manager (reads everything of the organisation, changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from ..models import Membership, Organisation, Role, User
from .errors import Forbidden, NotAuthenticated, NotFound


@dataclass(frozen=True)
class Actor:
    """The acting user in the organisation they are working in. ``user_id=None`` is the system
    (jobs, CLI), which may act in any organisation."""

    user_id: int | None
    org_id: int

    @classmethod
    def system(cls, org_id: int) -> "Actor":
        return cls(user_id=None, org_id=org_id)

    @property
    def is_system(self) -> bool:
        return self.user_id is None


@dataclass(frozen=True)
class Access:
    """The checked access of an actor: the membership's role, or the system."""

    actor: Actor
    role: str | None  # None for the system

    @property
    def org_id(self) -> int:
        return self.actor.org_id

    @property
    def user_id(self) -> int | None:
        return self.actor.user_id

    @property
    def can_write(self) -> bool:
        return self.role is None or self.role in (Role.OWNER, Role.ADMIN)

    @property
    def is_owner(self) -> bool:
        return self.role is None or self.role == Role.OWNER


def _access(session: Session, actor: Actor | None) -> Access:
    if actor is None:
        raise NotAuthenticated("sign-in required")
    if actor.is_system:
        if session.get(Organisation, actor.org_id) is None:
            raise NotFound("organisation not found")
        return Access(actor, None)
    membership = session.exec(
        select(Membership).where(Membership.user_id == actor.user_id, Membership.org_id == actor.org_id)
    ).first()
    user = session.get(User, actor.user_id)
    if membership is None or not membership.gives_access or user is None or not user.is_active:
        raise Forbidden("not a member of this organisation", key="error.forbidden")
    return Access(actor, membership.role)


def can_read(session: Session, actor: Actor | None) -> Access:
    """Any active member (or the system) may read the organisation's data."""
    return _access(session, actor)


def can_write(session: Session, actor: Actor | None) -> Access:
    """Owner or Administrator (or the system) may change the organisation's data."""
    access = _access(session, actor)
    if not access.can_write:
        raise Forbidden("read-only role", key="error.read_only")
    return access


def can_manage_owners(session: Session, actor: Actor | None) -> Access:
    """Only an Owner may grant or take away ownership."""
    access = _access(session, actor)
    if not access.is_owner:
        raise Forbidden("only an owner may do this", key="error.owner_only")
    return access


def own(obj, access: Access, what: str = "object"):
    """Return ``obj`` if it belongs to the actor's organisation; otherwise the same NotFound as a
    missing id, so a foreign id reveals nothing."""
    if obj is None or getattr(obj, "org_id", None) != access.org_id:
        raise NotFound(f"{what} not found")
    return obj
