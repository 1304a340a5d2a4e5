"""Who may do what. Every service that reads or changes a customer's data calls one of these
with the acting user; the role is always read from the database, never trusted from the caller.

Roles: Owner (everything, users included), Administrator (everything but ownership), Financial
manager (reads everything of the organisation, changes nothing). ``PERMISSIONS`` is the one table
of which role may do what; ``load_owned`` is the one way to turn a raw id from a request into a row
of the caller's organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from sqlmodel import Session, select

from noventiq_panel.db import keep_loaded, session_memo
from noventiq_panel.models import Membership, Organisation, Role, User
from noventiq_panel.services.core.errors import Forbidden, NotAuthenticated, NotFound


MAX_ID = 2**31 - 1  # ids are INTEGER columns: a larger number is simply not found
T = TypeVar("T")


class Permission(StrEnum):
    READ = "read"  # see the organisation's data
    WRITE = "write"  # order, change, pay, manage budgets and members
    MANAGE_OWNERS = "manage_owners"  # grant or take away ownership
    # take the tax documents prepared for the accountant (the electronic invoice and act files of the
    # closing documents, services/billing/esf.py): the roles the closing documents are mailed to
    TAX_DOCUMENTS = "tax_documents"


# The one table of which role may do what. The system (jobs, CLI) may do everything.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset({Permission.READ, Permission.WRITE}),
    Role.FINANCE: frozenset({Permission.READ, Permission.TAX_DOCUMENTS}),
}


def allows(role: str | None, permission: Permission) -> bool:
    """Whether ``role`` (None: the system) has ``permission``."""
    return role is None or permission in PERMISSIONS.get(Role(role), frozenset())


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
        return allows(self.role, Permission.WRITE)

    @property
    def is_owner(self) -> bool:
        return allows(self.role, Permission.MANAGE_OWNERS)


def _access(session: Session, actor: Actor | None) -> Access:
    """The caller's access to the organisation; remembered by the unit of work until it writes
    (a page asks several services, each of which checks)."""
    if actor is None:
        raise NotAuthenticated("sign-in required")
    memo = session_memo(session, "authz.access")
    key = (actor.user_id, actor.org_id, actor.is_system)
    if key not in memo:
        memo[key] = _check_access(session, actor)
    return memo[key]


def _check_access(session: Session, actor: Actor) -> Access:
    if actor.is_system:
        if session.get(Organisation, actor.org_id) is None:
            raise NotFound("organisation not found")
        return Access(actor, None)
    membership = session.exec(
        select(Membership).where(Membership.user_id == actor.user_id, Membership.org_id == actor.org_id)
    ).first()
    user = session.get(User, actor.user_id)
    needs_org = user is not None and user.totp_enabled_at is None
    return member_access(actor, membership, user, session.get(Organisation, actor.org_id) if needs_org else None)


def member_access(actor: Actor, membership: Membership | None, user: User | None,
                  org: Organisation | None) -> Access:
    """The rule of a user's access to an organisation, from the rows: an active membership they
    accepted, an active user with a proven mailbox (identity/verification), and two-factor sign-in
    where the organisation requires it (``org`` is needed only for a user without it)."""
    if (membership is None or not membership.gives_access or user is None or not user.is_active
            or user.email_verified_at is None):
        raise Forbidden("not a member of this organisation", key="error.forbidden")
    if user.totp_enabled_at is None and (org is None or org.require_two_factor):
        raise Forbidden("the organisation requires two-factor sign-in", key="error.two_factor_required")
    return Access(actor, membership.role)


def remember_access(session: Session, actor: Actor, membership: Membership, user: User,
                    org: Organisation) -> None:
    """Take the caller's access from rows this unit of work has just read and not changed
    (``identity.auth.resolve`` reads all of them), so that the services' first check asks the
    database nothing again. The same rule as every check (``member_access``); a refusal is not
    remembered: the check proper raises it."""
    try:
        access = member_access(actor, membership, user, org)
    except Forbidden:
        return
    session_memo(session, "authz.access")[(actor.user_id, actor.org_id, actor.is_system)] = access


def can_read(session: Session, actor: Actor | None) -> Access:
    """Any active member (or the system) may read the organisation's data."""
    return _access(session, actor)


def can_write(session: Session, actor: Actor | None) -> Access:
    """Owner or Administrator (or the system) may change the organisation's data."""
    access = _access(session, actor)
    if not access.can_write:
        raise Forbidden("read-only role", key="error.read_only")
    return access


def can_take_tax_documents(session: Session, actor: Actor | None) -> Access:
    """Owner or Financial manager (or the system) may download the electronic invoice files."""
    access = _access(session, actor)
    if not allows(access.role, Permission.TAX_DOCUMENTS):
        raise Forbidden("only an owner or a financial manager may do this", key="error.esf.roles")
    return access


def can_manage_owners(session: Session, actor: Actor | None) -> Access:
    """Only an Owner may grant or take away ownership."""
    access = _access(session, actor)
    if not access.is_owner:
        raise Forbidden("only an owner may do this", key="error.owner_only")
    return access


def parse_id(value, what: str = "object", *, key: str | None = None) -> int:
    """A positive row id from request input; anything else is the NotFound of a missing row."""
    if isinstance(value, bool) or value is None:
        raise NotFound(f"{what} not found", **({"key": key} if key else {}))
    try:
        result = int(str(value).strip())
    except (TypeError, ValueError):
        raise NotFound(f"{what} not found", **({"key": key} if key else {})) from None
    if not 0 < result <= MAX_ID:
        raise NotFound(f"{what} not found", **({"key": key} if key else {}))
    return result


def own(obj: T | None, access: Access, what: str = "object", *, key: str | None = None) -> T:
    """Return ``obj`` if it belongs to the actor's organisation; otherwise the same NotFound as a
    missing id, so a foreign id reveals nothing."""
    if obj is None or getattr(obj, "org_id", None) != access.org_id:
        raise NotFound(f"{what} not found", **({"key": key} if key else {}))
    return obj


def load_owned(session: Session, access: Access, model: type[T], raw_id, what: str = "object", *,
               key: str | None = None, fresh: bool = False) -> T:
    """The row of ``model`` with the id ``raw_id`` (request input, parsed here) if it belongs to the
    caller's organisation; NotFound (with ``key``) for a malformed, missing or foreign id alike.
    ``fresh`` reads the row again from the database (after a lock was taken)."""
    row_id = parse_id(raw_id, what, key=key)
    row = own(session.get(model, row_id, populate_existing=fresh), access, what, key=key)
    keep_loaded(session, row)  # a page asks several services about the same row
    return row
