"""Members of an organisation: list, invite, change role, deactivate/reactivate; the own profile.

Rules (DESIGN, Roles):
- Any member reads the list; Owner and Administrator change it; a Financial manager changes
  nothing (Forbidden ``error.read_only``).
- Only an Owner grants or takes away the Owner role, or deactivates/reactivates an Owner
  (Forbidden ``error.owner_only``).
- The last active Owner can be neither demoted nor deactivated (Conflict ``users.last_owner``);
  nobody deactivates themselves (Conflict ``users.cannot_deactivate_self``).
- A membership id of another organisation is NotFound, like a missing one.
- Invitations are not a relay: at most ``INVITES_PER_ORG`` per organisation and
  ``INVITES_PER_INVITER`` per inviter within ``INVITE_WINDOW`` (Throttled); the subject is fixed
  text, the organisation's and the inviter's names are data in the body; an address that declined
  this organisation's invitation is not invited again for ``DECLINE_BLOCK`` (Conflict
  ``users.invitation_declined``); every pending invitee is listed the same way (no name: the
  list never tells whether the address already had an account).
Every change is audited and commits its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from noventiq_panel.models import AuditEvent, AuthSession, Membership, Organisation, Role, User
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import audit
from noventiq_panel.services.identity import auth
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core.authz import Access, Actor, can_manage_owners, can_read, can_write, own
from noventiq_panel.services.identity import validation
from noventiq_panel.services.core.errors import Conflict, DomainError, InvalidInput, NotFound, Throttled
from noventiq_panel.services.core.ledger import lock_organisation

ROLES = (Role.OWNER, Role.ADMIN, Role.FINANCE)
INVITE_WINDOW = timedelta(hours=1)
INVITES_PER_ORG = 20
INVITES_PER_INVITER = 10
DECLINE_BLOCK = timedelta(days=30)


@dataclass(frozen=True)
class MemberView:
    membership_id: int
    user_id: int
    email: str
    name: str
    role: str
    is_active: bool
    pending: bool  # invited: has not set a password, or not yet accepted the invitation
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class Profile:
    user_id: int
    email: str
    name: str
    locale: str


def _view(m: Membership, u: User, last_seen: datetime | None = None) -> MemberView:
    """``last_login_at`` is the member's last activity in THIS organisation: a user may belong to
    several, and one organisation must not learn when its members work for another."""
    if m.awaiting_consent or not u.password_hash:
        # An invitation not yet accepted (an existing account's consent, or a new user's password):
        # listed alike, so the organisation learns nothing of whether the address had an account.
        return MemberView(membership_id=m.id, user_id=u.id, email=u.email, name="", role=m.role,
                          is_active=m.is_active, pending=True, created_at=m.created_at, last_login_at=None)
    return MemberView(membership_id=m.id, user_id=u.id, email=u.email, name=u.name, role=m.role,
                      is_active=m.is_active, pending=not u.password_hash, created_at=m.created_at,
                      last_login_at=last_seen)


def _last_seen_in(session: Session, org_id: int) -> dict[int, datetime]:
    return dict(session.exec(
        select(AuthSession.user_id, func.max(AuthSession.last_seen_at))
        .where(AuthSession.org_id == org_id).group_by(AuthSession.user_id)
    ).all())


def _role(value) -> str:
    if not isinstance(value, str) or value not in {r.value for r in ROLES}:
        raise InvalidInput("unknown role", field="role", key="users.role_invalid")
    return value


def _active_owner_count(session: Session, org_id: int) -> int:
    return session.exec(
        select(func.count()).select_from(Membership).join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id, Membership.role == Role.OWNER, Membership.in_force(),  # noqa: E712
               User.is_active == True)  # noqa: E712
    ).one()


def _target(session: Session, access: Access, membership_id) -> Membership:
    if not isinstance(membership_id, int) or isinstance(membership_id, bool):
        membership = None
    else:
        membership = session.get(Membership, membership_id)
    return own(membership, access, "member")


def _guard_last_owner(session: Session, target: Membership) -> None:
    """Refuse when ``target`` is the organisation's last active Owner (the org row is locked so two
    owners cannot demote each other at the same moment)."""
    lock_organisation(session, target.org_id)
    if target.role == Role.OWNER and target.is_active and _active_owner_count(session, target.org_id) <= 1:
        raise Conflict("the last owner cannot lose the owner role", key="users.last_owner")


def list_members(session: Session, actor: Actor, *, include_inactive: bool = True) -> list[MemberView]:
    """Members of the actor's organisation: active first, then by name."""
    access = can_read(session, actor)
    query = select(Membership, User).join(User, User.id == Membership.user_id).where(Membership.org_id == access.org_id)
    if not include_inactive:
        query = query.where(Membership.in_force())  # noqa: E712
    seen = _last_seen_in(session, access.org_id)
    rows = [_view(m, u, seen.get(u.id)) for m, u in session.exec(query).all()]
    return sorted(rows, key=lambda v: (not v.is_active, (v.name or v.email).lower(), v.membership_id))


def invite(session: Session, actor: Actor, *, email: str, name: str, role: str, locale: str | None = None,
           now: datetime | None = None) -> MemberView:
    """Add a member. A known e-mail gets a new membership (and a mail saying so); an unknown one
    becomes a user without a password who gets a 72-hour set-password link (kind ``invite``).
    Every invitation waits for its answer; inviting an address whose invitation is still
    unanswered sends it again (with a fresh link when the user has no password yet)."""
    now = now or utcnow()
    try:
        access = can_write(session, actor)
        role = _role(role)
        if role == Role.OWNER:
            can_manage_owners(session, actor)
        email = validation.normalize_email(email)
        name = validation.validate_name(name)
        inviter = session.get(User, actor.user_id) if actor.user_id else None
        locale = validation.validate_locale(locale) if locale else (inviter.locale if inviter else "ru")
        _throttle_invitations(session, access.org_id, actor.user_id, now)
        user = session.exec(select(User).where(User.email == email)).first()
        existing = None
        if user is not None:
            existing = session.exec(select(Membership).where(Membership.user_id == user.id,
                                                             Membership.org_id == access.org_id)).first()
            if existing is not None and existing.is_active and existing.awaiting_consent:
                pass  # an invitation still unanswered: sent again (a fresh link: the first may have expired)
            elif existing is not None:
                key = "users.already_member" if existing.is_active else "users.member_inactive"
                raise Conflict("already a member of this organisation", key=key, field="email")
            if _declined_recently(session, access.org_id, user.id, now):
                raise Conflict("this address declined an invitation recently", key="users.invitation_declined",
                               field="email")
    except DomainError:
        session.rollback()
        raise
    try:
        # Every invitation waits for its answer before the membership gives access (and before
        # this organisation sees anything of the invitee): a user with an account accepts it in
        # the panel, a new one by setting a password through this invitation's own link.
        if user is None:
            user = User(email=email, name=name, locale=locale, created_at=now)
            session.add(user)
            session.flush()
        membership = existing or Membership(user_id=user.id, org_id=access.org_id, created_at=now,
                                            awaiting_consent=True)
        membership.role = role
        session.add(membership)
        session.flush()
        org = session.get(Organisation, access.org_id)
        context = {"org_name": org.name, "inviter_name": (inviter.name or inviter.email) if inviter else "Noventiq",
                   "role": role}
        secret = None
        if not user.password_hash or not auth.active_memberships(session, user.id):
            # no way into the panel to answer there: the mail's own link answers it (and sets a password)
            mail = auth.set_password_mail(session, user, now=now, membership_id=membership.id)
            context, secret = {**context, **mail.context}, mail.secret
        notifications.notify_user(session, user, "invite", context, org_id=access.org_id, secret=secret, now=now)
        audit.record(session, actor, "user.invited", email=email, role=role, member_user_id=user.id)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("already a member of this organisation", key="users.already_member", field="email") from None
    return _view(membership, user, _last_seen_in(session, membership.org_id).get(user.id))


def _throttle_invitations(session: Session, org_id: int, inviter_id: int | None, now: datetime) -> None:
    since = now - INVITE_WINDOW
    sent = select(AuditEvent.created_at).where(AuditEvent.action == "user.invited", AuditEvent.created_at > since)
    for query, limit in ((sent.where(AuditEvent.org_id == org_id), INVITES_PER_ORG),
                         (sent.where(AuditEvent.user_id == inviter_id), INVITES_PER_INVITER)):
        if inviter_id is None and limit == INVITES_PER_INVITER:
            continue
        times = sorted(session.exec(query).all())
        if len(times) >= limit:
            wait = times[len(times) - limit] + INVITE_WINDOW - now
            raise Throttled("too many invitations", key="auth.throttled",
                            minutes=max(1, int(wait.total_seconds() // 60) + 1))


def _declined_recently(session: Session, org_id: int, user_id: int, now: datetime) -> bool:
    events = session.exec(select(AuditEvent.details).where(
        AuditEvent.org_id == org_id, AuditEvent.action == "user.invitation_declined",
        AuditEvent.created_at > now - DECLINE_BLOCK)).all()
    return any((d or {}).get("member_user_id") == user_id for d in events)


@dataclass(frozen=True)
class Invitation:
    membership_id: int
    org_name: str
    role: str
    created_at: datetime


def pending_invitations(session: Session, user_id: int) -> list[Invitation]:
    """Invitations of this user that wait for their answer."""
    rows = session.exec(
        select(Membership, Organisation).join(Organisation, Organisation.id == Membership.org_id)
        .where(Membership.user_id == user_id, Membership.is_active == True,  # noqa: E712
               Membership.awaiting_consent == True)  # noqa: E712
        .order_by(Membership.id)
    ).all()
    return [Invitation(m.id, o.name, m.role, m.created_at) for m, o in rows]


def _own_invitation(session: Session, user_id: int, membership_id) -> Membership:
    if not isinstance(membership_id, int) or isinstance(membership_id, bool):
        raise NotFound("invitation not found", key="users.invitation_not_found")
    m = session.get(Membership, membership_id)
    if m is None or m.user_id != user_id or not m.awaiting_consent or not m.is_active:
        raise NotFound("invitation not found", key="users.invitation_not_found")
    return m


def accept_invitation(session: Session, user_id: int, membership_id: int) -> None:
    """The invited user joins the organisation."""
    try:
        m = _own_invitation(session, user_id, membership_id)
    except DomainError:
        session.rollback()
        raise
    m.awaiting_consent = False
    session.add(m)
    audit.record(session, Actor(user_id=user_id, org_id=m.org_id), "user.invitation_accepted", role=m.role)
    session.commit()


def decline_invitation(session: Session, user_id: int, membership_id: int) -> None:
    """The invited user refuses: the invitation is removed, and the organisation cannot invite the
    address again for ``DECLINE_BLOCK``."""
    try:
        m = _own_invitation(session, user_id, membership_id)
    except DomainError:
        session.rollback()
        raise
    audit.record(session, Actor(user_id=None, org_id=m.org_id), "user.invitation_declined", member_user_id=user_id)
    session.delete(m)
    session.commit()


def change_role(session: Session, actor: Actor, membership_id: int, role: str) -> MemberView:
    try:
        access = can_write(session, actor)
        role = _role(role)
        target = _target(session, access, membership_id)
        old = target.role
        if role != old:
            if Role.OWNER in (role, old):
                can_manage_owners(session, actor)
            if old == Role.OWNER:
                _guard_last_owner(session, target)
    except DomainError:
        session.rollback()
        raise
    if role != old:
        target.role = role
        audit.record(session, actor, "user.role_changed", membership_id=target.id, member_user_id=target.user_id,
                     old_role=old, new_role=role)
    user = session.get(User, target.user_id)
    session.commit()
    return _view(target, user, _last_seen_in(session, target.org_id).get(user.id))


def deactivate(session: Session, actor: Actor, membership_id: int) -> MemberView:
    """Take away a member's access to the organisation (their sessions fall back to another
    organisation of theirs, or end, at the next request)."""
    try:
        access = can_write(session, actor)
        target = _target(session, access, membership_id)
        if actor.user_id is not None and target.user_id == actor.user_id:
            raise Conflict("you cannot deactivate yourself", key="users.cannot_deactivate_self")
        if target.role == Role.OWNER:
            can_manage_owners(session, actor)
            _guard_last_owner(session, target)
    except DomainError:
        session.rollback()
        raise
    if target.is_active:
        target.is_active = False
        audit.record(session, actor, "user.deactivated", membership_id=target.id, member_user_id=target.user_id)
    user = session.get(User, target.user_id)
    session.commit()
    return _view(target, user, _last_seen_in(session, target.org_id).get(user.id))


def reactivate(session: Session, actor: Actor, membership_id: int) -> MemberView:
    try:
        access = can_write(session, actor)
        target = _target(session, access, membership_id)
        if target.role == Role.OWNER:
            can_manage_owners(session, actor)
    except DomainError:
        session.rollback()
        raise
    if not target.is_active:
        target.is_active = True
        audit.record(session, actor, "user.reactivated", membership_id=target.id, member_user_id=target.user_id)
    user = session.get(User, target.user_id)
    session.commit()
    return _view(target, user, _last_seen_in(session, target.org_id).get(user.id))


def get_profile(session: Session, user_id: int) -> Profile:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return Profile(user_id=user.id, email=user.email, name=user.name, locale=user.locale)


def update_profile(session: Session, user_id: int, *, name: str, locale: str) -> Profile:
    """The signed-in user's own name and language (``user_id`` comes from ``auth.resolve``)."""
    try:
        name = validation.validate_name(name)
        locale = validation.validate_locale(locale)
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise NotFound("user not found")
    except DomainError:
        session.rollback()
        raise
    user.name = name
    user.locale = locale
    session.commit()
    return Profile(user_id=user.id, email=user.email, name=user.name, locale=user.locale)


__all__ = [
    "MemberView",
    "Profile",
    "ROLES",
    "change_role",
    "deactivate",
    "get_profile",
    "invite",
    "list_members",
    "reactivate",
    "update_profile",
]
