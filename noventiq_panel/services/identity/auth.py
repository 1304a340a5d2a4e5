"""Identity: passwords, sign-in with throttling, browser sessions, password recovery.

- Passwords: argon2id (argon2-cffi ``PasswordHasher``); a hash made with older parameters is
  re-hashed at the next successful sign-in.
- Sessions: the browser keeps a random secret (``secrets.token_urlsafe(32)``); only its SHA-256 is
  stored (``AuthSession.token_hash``). A session ends after ``session_idle_minutes`` without use,
  and ``session_max_hours`` after sign-in however busy; ``last_seen_at`` is written at most once a
  minute.
- Throttling: after ``login_max_failures`` failed sign-ins of one account from one address within
  ``login_window_minutes`` (counted since its last successful sign-in), after ``IP_LIMIT_FACTOR``
  times as many from one address, and ``ACCOUNT_LIMIT_FACTOR`` times as many of one account from
  anywhere, sign-in raises ``Throttled``
  (params: ``minutes`` to wait) without checking the password. Every checked attempt is a
  ``LoginAttempt`` row.
- Password recovery and set-password links: a random token, its SHA-256 stored in
  ``PasswordResetToken``, single use, the link is ``<base_url>/reset/<token>`` for both purposes
  (``check_reset_token`` tells the page which one: ``"reset"`` or ``"invite"``).
  Reset requests are throttled per e-mail and per IP; they are recorded as ``LoginAttempt`` rows
  whose email is ``"reset:<email>"`` (so they never count as sign-in failures).

Public operations commit their own transaction. ``link_mail`` only flushes (it is
called inside the transaction that creates the user or the membership).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, func, update
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.db import keep_loaded
from noventiq_panel.i18n.format import normalize_locale
from noventiq_panel.models import (
    AuthSession,
    LoginAttempt,
    Membership,
    Organisation,
    PasswordResetToken,
    Role,
    TokenPurpose,
    User,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import audit
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.identity import two_factor, validation
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core.errors import (
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Throttled,
)

HASHER = PasswordHasher()  # tests may replace it with cheaper parameters

IP_LIMIT_FACTOR = 4  # one IP may fail this many times more than one account (offices share an IP)
ACCOUNT_LIMIT_FACTOR = 10  # one account from all addresses together
RESET_MAX_PER_EMAIL = 3  # reset mails per address per login window
RESET_TOKEN_HOURS = 1
INVITE_TOKEN_HOURS = 72
TOUCH_INTERVAL = timedelta(minutes=1)
RESET_PREFIX = "reset:"
RESET_PATH = "/reset/"



# --- small helpers ---------------------------------------------------------------------------

def token_hash(raw: str) -> str:
    """The stored form of a session or reset secret."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash or not isinstance(password, str):
        return False
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy_hash: str | None = None


def _burn_time(password: str) -> None:
    """Verify against a dummy hash so an unknown e-mail takes as long as a wrong password."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = HASHER.hash(secrets.token_urlsafe(16))
    verify_password(_dummy_hash, password if isinstance(password, str) else "")


def now_or(now: datetime | None) -> datetime:
    """``now``, or the current time when None (a naive ``now`` is a programming error)."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def fail(session: Session, exc: DomainError) -> DomainError:
    """Roll back whatever the failed operation did (and release the SQLite write lock)."""
    session.rollback()
    return exc


# --- throttling ------------------------------------------------------------------------------

def window(now: datetime) -> datetime:
    return now - timedelta(minutes=get_settings().login_window_minutes)


def retry_minutes(times: list[datetime], limit: int, now: datetime) -> int:
    """Minutes until fewer than ``limit`` of ``times`` (ascending) lie inside the window."""
    window = timedelta(minutes=get_settings().login_window_minutes)
    index = max(0, len(times) - limit)
    unlock = times[index] + window
    return max(1, math.ceil((unlock - now).total_seconds() / 60))


def _account_failures(session: Session, email: str, now: datetime, ip: str | None = None) -> list[datetime]:
    """Failed sign-ins of the account within the window since its last success; with ``ip``,
    only those from that address."""
    since = window(now)
    last_success = session.exec(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.email == email, LoginAttempt.success == True)  # noqa: E712
    ).one()
    if last_success is not None:  # a successful sign-in (or password reset) starts the count again
        since = max(since, last_success)
    query = select(LoginAttempt.at).where(LoginAttempt.email == email, LoginAttempt.success == False,  # noqa: E712
                                          LoginAttempt.at > since)
    if ip is not None:
        query = query.where(LoginAttempt.ip == ip[:64])
    return list(session.exec(query.order_by(LoginAttempt.at)).all())


def _ip_failures(session: Session, ip: str, now: datetime) -> list[datetime]:
    return list(session.exec(
        select(LoginAttempt.at).where(LoginAttempt.ip == ip, LoginAttempt.success == False,  # noqa: E712
                                      LoginAttempt.at > window(now),
                                      ~col(LoginAttempt.email).startswith(RESET_PREFIX))
        .order_by(LoginAttempt.at)
    ).all())


def check_login_throttle(session: Session, email: str, ip: str, now: datetime) -> None:
    """Three counts, each within the login window: the account from this address
    (``login_max_failures``: a stranger elsewhere cannot lock a known account out), the address
    across accounts (``IP_LIMIT_FACTOR`` times as many: offices share an address), and the account
    from everywhere (``ACCOUNT_LIMIT_FACTOR`` times as many: a guess spread over many addresses)."""
    limit = get_settings().login_max_failures
    for failures, allowed, what in (
            (_account_failures(session, email, now, ip), limit, "this account from this address"),
            (_ip_failures(session, ip, now) if ip else [], limit * IP_LIMIT_FACTOR, "this address"),
            (_account_failures(session, email, now), limit * ACCOUNT_LIMIT_FACTOR, "this account")):
        if len(failures) >= allowed:
            raise Throttled(f"too many failed sign-ins for {what}", key="auth.throttled",
                            minutes=retry_minutes(failures, allowed, now))


def record_attempt(session: Session, email: str, ip: str, success: bool, now: datetime) -> None:
    session.add(LoginAttempt(email=email[:254], ip=(ip or "")[:64], success=success, at=now))


# --- sessions --------------------------------------------------------------------------------

@dataclass
class SessionInfo:
    """Who is signed in, in which organisation, with which role (read from the database)."""

    user_id: int
    email: str
    name: str
    locale: str
    org_id: int
    org_name: str
    role: str
    orgs: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name", "role"}] by name
    # the organisation requires two-factor sign-in and the user has not enrolled: no access to
    # its data until they do (authz); the panel sends them to their profile
    two_factor_needed: bool = False

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, org_id=self.org_id)

    @property
    def can_write(self) -> bool:
        """For showing or hiding buttons only; the services check again."""
        return self.role in (Role.OWNER, Role.ADMIN)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


# The two statements of every event of a signed-in tab (``resolve``), built once: SQLAlchemy then
# neither builds them nor computes their cache keys again.
_MEMBERSHIPS = (select(Membership, Organisation).join(Organisation, Organisation.id == Membership.org_id)
                .where(Membership.user_id == bindparam("user_id"), Membership.in_force()).order_by(Membership.id))
_SESSION_AND_USER = (select(AuthSession, User).join(User, User.id == AuthSession.user_id, isouter=True)
                     .where(AuthSession.token_hash == bindparam("token_hash")))


def active_memberships(session: Session, user_id: int) -> list[tuple[Membership, Organisation]]:
    return [(m, o) for m, o in session.exec(_MEMBERSHIPS, params={"user_id": user_id}).all()]


def _pick_org(session: Session, user: User, memberships: list[tuple[Membership, Organisation]]) -> int:
    """The organisation of the user's most recent session if still allowed, else the first one."""
    allowed = {m.org_id for m, _ in memberships}
    last = session.exec(
        select(AuthSession.org_id).where(AuthSession.user_id == user.id, col(AuthSession.org_id).is_not(None))
        .order_by(col(AuthSession.last_seen_at).desc(), col(AuthSession.id).desc()).limit(1)
    ).first()
    if last in allowed:
        return last
    return memberships[0][0].org_id


def _start_session(session: Session, user: User, org_id: int, ip: str, now: datetime) -> str:
    raw = secrets.token_urlsafe(32)
    session.add(AuthSession(user_id=user.id, token_hash=token_hash(raw), org_id=org_id, created_at=now,
                            last_seen_at=now, ip=(ip or "")[:64]))
    return raw


def _find_session(session: Session, raw_token: Any) -> AuthSession | None:
    found = _find_session_and_user(session, raw_token)
    return found[0] if found is not None else None


def _find_session_and_user(session: Session, raw_token: Any) -> tuple[AuthSession, User | None] | None:
    """The session of a browser secret and its user, in one query."""
    if not isinstance(raw_token, str) or not raw_token or len(raw_token) > 200:
        return None
    return session.exec(_SESSION_AND_USER, params={"token_hash": token_hash(raw_token)}).first()


def _info(user: User, row: AuthSession, memberships: list[tuple[Membership, Organisation]]) -> SessionInfo:
    current = next((m, o) for m, o in memberships if m.org_id == row.org_id)
    orgs = sorted(({"id": o.id, "name": o.name, "role": m.role} for m, o in memberships),
                  key=lambda d: (d["name"].lower(), d["id"]))
    return SessionInfo(user_id=user.id, email=user.email, name=user.name, locale=normalize_locale(user.locale),
                       org_id=current[1].id, org_name=current[1].name, role=current[0].role, orgs=orgs,
                       two_factor_needed=bool(current[1].require_two_factor and user.totp_enabled_at is None))


def sign_in(session: Session, email: str, password: str, ip: str = "", now: datetime | None = None,
            code: str | None = None) -> tuple[str, User]:
    """Check the password and open a session. Returns (raw session secret for the browser, user).

    Raises NotAuthenticated ``auth.bad_credentials`` for an unknown e-mail, a wrong password, a user
    without a password (invited, not yet set) or a deactivated user alike; ``auth.no_organisation``
    when the password is right but no active membership is left; Throttled ``error.throttled``.
    """
    now = now_or(now)
    try:
        email = validation.normalize_email(email)
    except InvalidInput:
        raise fail(session, NotAuthenticated("bad credentials", key="auth.bad_credentials")) from None
    try:
        check_login_throttle(session, email, ip, now)
    except Throttled as exc:
        raise fail(session, exc) from None
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None or not user.password_hash:
        _burn_time(password)
        ok = False
    else:
        ok = verify_password(user.password_hash, password)
    if not ok or user is None or not user.is_active:
        record_attempt(session, email, ip, False, now)
        session.commit()
        raise NotAuthenticated("bad credentials", key="auth.bad_credentials")
    if user.email_verified_at is None:  # the right password, but the mailbox is not proven yet
        session.rollback()
        raise NotAuthenticated("e-mail not confirmed", key="auth.email_unverified")
    if user.totp_enabled_at is not None:  # two-factor sign-in: the code of the app, or a recovery code
        if not code:
            session.rollback()
            raise NotAuthenticated("a one-time code is needed", key="auth.code_required")
        if not two_factor.check(session, user, code, now):
            record_attempt(session, email, ip, False, now)
            session.commit()
            raise NotAuthenticated("wrong one-time code", key="auth.code_wrong")
    memberships = active_memberships(session, user.id)
    if not memberships:
        waiting = session.exec(select(Membership.id).where(Membership.user_id == user.id, Membership.is_active == True,  # noqa: E712
                                                           Membership.awaiting_consent == True).limit(1)).first()  # noqa: E712
        session.rollback()
        if waiting is not None:  # joined through the invitation's own link only (reset_password)
            raise NotAuthenticated("an invitation waits for its answer", key="auth.invitation_waiting")
        raise NotAuthenticated("no active organisation", key="auth.no_organisation")
    record_attempt(session, email, ip, True, now)
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    for membership, _org in memberships:  # each organisation's trail shows its members' sign-ins
        audit.record(session, Actor(user_id=user.id, org_id=membership.org_id), "user.signed_in",
                     created_at=now, ip=(ip or "")[:64])
    raw = _start_session(session, user, _pick_org(session, user, memberships), ip, now)
    session.commit()
    return raw, user


def resolve(session: Session, raw_token: str, now: datetime | None = None) -> SessionInfo:
    """The signed-in user of a browser secret, or NotAuthenticated (unknown, signed out, idle too
    long, user deactivated, no active membership left). Falls back to another organisation when the
    session's one was taken away."""
    now = now_or(now)
    found = _find_session_and_user(session, raw_token)
    row, user = found if found is not None else (None, None)
    if row is None or row.revoked_at is not None:
        raise fail(session, NotAuthenticated("not signed in", key="auth.session_expired"))
    idle = timedelta(minutes=get_settings().session_idle_minutes)
    reason = None
    if now - row.last_seen_at > idle or now - row.created_at > timedelta(hours=get_settings().session_max_hours):
        reason = "auth.session_expired"
    elif user is None or not user.is_active:
        reason = "auth.session_expired"
    elif user.email_verified_at is None:
        reason = "auth.email_unverified"
    memberships = active_memberships(session, row.user_id) if reason is None else []
    if reason is None and not memberships:
        reason = "auth.no_organisation"
    if reason is not None:
        row.revoked_at = now
        session.commit()
        raise NotAuthenticated("session ended", key=reason)
    if row.org_id not in {m.org_id for m, _ in memberships}:
        row.org_id = _pick_org(session, user, memberships)
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
    info = _info(user, row, memberships)
    if session.dirty:  # touched or moved to another organisation; else the caller's work goes on
        session.commit()  # in the same transaction (one BEGIN per page load, not two)
    else:  # the caller's work goes on in this transaction, with the rows just read
        keep_loaded(session, row, user, *(x for pair in memberships for x in pair))
        membership, org = next((m, o) for m, o in memberships if m.org_id == row.org_id)
        authz.remember_access(session, Actor(user_id=user.id, org_id=org.id), membership, user, org)
    return info


def sign_out(session: Session, raw_token: str, now: datetime | None = None) -> None:
    """End the browser's session (nothing happens for an unknown or ended one)."""
    now = now_or(now)
    row = _find_session(session, raw_token)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
    session.commit()


def switch_organisation(session: Session, raw_token: str, org_id: int, now: datetime | None = None) -> SessionInfo:
    """Work in another organisation of the user (an active membership is required, else NotFound)."""
    now = now_or(now)
    info = resolve(session, raw_token, now)
    if not isinstance(org_id, int) or isinstance(org_id, bool) or org_id not in {o["id"] for o in info.orgs}:
        raise fail(session, NotFound("organisation not found", key="auth.not_a_member"))
    row = _find_session(session, raw_token)
    row.org_id = org_id
    session.commit()
    return resolve(session, raw_token, now)


def end_sessions(session: Session, user_id: int, *, except_hash: str | None = None,
                 now: datetime | None = None) -> int:
    """Revoke the user's open sessions (except one). Flushes, does not commit. Returns how many."""
    now = now_or(now)
    stmt = update(AuthSession).where(AuthSession.user_id == user_id, col(AuthSession.revoked_at).is_(None))
    if except_hash:
        stmt = stmt.where(AuthSession.token_hash != except_hash)
    result = session.execute(stmt.values(revoked_at=now).execution_options(synchronize_session="fetch"))
    return result.rowcount or 0


# --- reset and set-password links ------------------------------------------------------------

@dataclass(frozen=True)
class ResetTokenInfo:
    user_id: int
    email: str
    name: str
    purpose: str  # "reset" or "invite"
    expires_at: datetime


def issue_token(session: Session, user: User, purpose: str, hours: int, now: datetime,
                membership_id: int | None = None) -> tuple[str, PasswordResetToken]:
    raw = secrets.token_urlsafe(32)
    row = PasswordResetToken(user_id=user.id, token_hash=token_hash(raw), purpose=purpose, created_at=now,
                             expires_at=now + timedelta(hours=hours), membership_id=membership_id)
    session.add(row)
    session.flush()
    return raw, row


@dataclass(frozen=True)
class LinkMail:
    """What a mail with a single-use link needs: its ``link`` and ``expires_at`` for the template
    (the link ends in the secret's mark) and the ``secret`` for ``notify_user``."""

    context: dict[str, Any]
    secret: notifications.Secret


def link_mail(session: Session, user: User, purpose: str, hours: int, now: datetime | None = None,
              path: str = RESET_PATH, membership_id: int | None = None) -> LinkMail:
    """Issue a single-use ``<base_url><path><token>`` link of ``purpose`` for ``user`` valid ``hours``
    (flush only: the caller commits it with what it creates, and mails it). The raw token is never
    stored with the mail: the outbox keeps the mark, the mailer puts the token in when it sends.
    ``membership_id``: the invitation the link answers (:func:`reset_password` accepts it)."""
    if purpose not in {p.value for p in TokenPurpose}:
        raise ValueError(f"unknown token purpose {purpose!r}")
    raw, row = issue_token(session, user, str(purpose), hours, now_or(now), membership_id)
    secret = notifications.Secret(raw, row.expires_at)
    return LinkMail({"link": notifications.secret_link(path, secret), "expires_at": row.expires_at}, secret)


def set_password_mail(session: Session, user: User, now: datetime | None = None,
                      membership_id: int | None = None) -> LinkMail:
    """The 72-hour set-password link of an invited user (``membership_id``: the invitation it
    answers) or a new customer's owner."""
    return link_mail(session, user, TokenPurpose.INVITE, INVITE_TOKEN_HOURS, now, membership_id=membership_id)


def _requests(session: Session, prefix: str, *, email: str | None = None, ip: str | None = None,
              now: datetime) -> list[datetime]:
    query = select(LoginAttempt.at).where(LoginAttempt.at > window(now))
    if email is not None:
        query = query.where(LoginAttempt.email == (prefix + email)[:254])
    if ip is not None:
        query = query.where(LoginAttempt.ip == ip, col(LoginAttempt.email).startswith(prefix))
    return list(session.exec(query.order_by(LoginAttempt.at)).all())


def mail_request(session: Session, prefix: str, email: str, ip: str, per_email: int, now: datetime) -> None:
    """Throttle and record a request that mails a link (a reset, a verification sent again): at
    most ``per_email`` per address and ``login_max_failures * IP_LIMIT_FACTOR`` per IP within the
    login window, counted for known and unknown addresses alike (recorded as ``LoginAttempt``
    rows ``<prefix><email>``, never sign-in failures). Throttled, with the session rolled back."""
    try:
        requests = _requests(session, prefix, email=email, now=now)
        if len(requests) >= per_email:
            raise Throttled("too many requests", key="auth.throttled",
                            minutes=retry_minutes(requests, per_email, now))
        if ip:
            ip_limit = get_settings().login_max_failures * IP_LIMIT_FACTOR
            requests = _requests(session, prefix, ip=ip, now=now)
            if len(requests) >= ip_limit:
                raise Throttled("too many requests", key="auth.throttled",
                                minutes=retry_minutes(requests, ip_limit, now))
    except DomainError as exc:
        raise fail(session, exc) from None
    record_attempt(session, prefix + email, ip, False, now)


def request_password_reset(session: Session, email: str, ip: str = "", now: datetime | None = None) -> None:
    """E-mail a one-hour, single-use reset link if ``email`` belongs to an active user.

    The outcome is the same for an unknown e-mail (nothing is sent, nothing is said). Throttled
    after ``RESET_MAX_PER_EMAIL`` requests per address, and ``login_max_failures * IP_LIMIT_FACTOR``
    per IP, within the login window — counted for known and unknown addresses alike.
    """

    now = now_or(now)
    try:
        email = validation.normalize_email(email)
    except DomainError as exc:
        raise fail(session, exc) from None
    mail_request(session, RESET_PREFIX, email, ip, RESET_MAX_PER_EMAIL, now)
    user = session.exec(select(User).where(User.email == email)).first()
    if user is not None and user.is_active:
        mail = link_mail(session, user, TokenPurpose.RESET, RESET_TOKEN_HOURS, now)
        notifications.notify_user(session, user, "password_reset", mail.context, secret=mail.secret, now=now)
    session.commit()


SET_PASSWORD_PURPOSES = (TokenPurpose.RESET.value, TokenPurpose.INVITE.value)


def valid_token(session: Session, raw_token: Any, now: datetime,
                purposes: tuple[str, ...] = SET_PASSWORD_PURPOSES) -> tuple[PasswordResetToken, User]:
    """The unused, unexpired token ``raw_token`` of one of ``purposes`` and its active user, else
    NotFound ``auth.reset_invalid``/``auth.reset_expired`` (a link of another purpose is invalid)."""
    row = None
    if isinstance(raw_token, str) and 0 < len(raw_token) <= 200:
        row = session.exec(select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash(raw_token))).first()
    if row is None or row.used_at is not None or row.purpose not in purposes:
        raise NotFound("the link is not valid", key="auth.reset_invalid")
    if now >= row.expires_at:
        raise NotFound("the link has expired", key="auth.reset_expired")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise NotFound("the link is not valid", key="auth.reset_invalid")
    return row, user


def use_token(session: Session, raw_token: Any, now: datetime,
              purposes: tuple[str, ...] = SET_PASSWORD_PURPOSES) -> tuple[PasswordResetToken, User]:
    """Use up the link ``raw_token`` (once, also when two requests race) and void every other open
    link of its user; returns the link and its user. Flushes only; NotFound as :func:`valid_token`."""
    row, user = valid_token(session, raw_token, now, purposes)
    used = session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == row.id, col(PasswordResetToken.used_at).is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:
        raise NotFound("the link is not valid", key="auth.reset_invalid")
    session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, col(PasswordResetToken.used_at).is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    return row, user


def check_reset_token(session: Session, raw_token: str, now: datetime | None = None) -> ResetTokenInfo:
    """What a ``/reset/<token>`` page shows before asking for the new password. NotFound
    ``auth.reset_invalid`` (unknown or used) or ``auth.reset_expired``."""
    now = now_or(now)
    try:
        row, user = valid_token(session, raw_token, now)
    except DomainError as exc:
        raise fail(session, exc) from None
    return ResetTokenInfo(user_id=user.id, email=user.email, name=user.name, purpose=row.purpose,
                          expires_at=row.expires_at)


def reset_password(session: Session, raw_token: str, new_password: str, now: datetime | None = None) -> User:
    """Set the password through a reset/set-password link: the link is used up (also when two
    requests race), every other open link of the user is voided and all the user's sessions end.
    The link of an invitation accepts that invitation, and only that one: any other invitation of
    the address waits for its own answer (a reset link or the reseller's welcome link accepts
    nothing, so an organisation that invited an address first cannot catch its owner)."""
    now = now_or(now)
    try:
        validation.validate_password(new_password)
        row, user = use_token(session, raw_token, now)
    except DomainError as exc:
        raise fail(session, exc) from None
    user.password_hash = hash_password(new_password)
    if user.email_verified_at is None:  # the link came by mail: the mailbox is the user's
        user.email_verified_at = now
    invitation = session.get(Membership, row.membership_id) if row.membership_id else None
    if invitation is not None and invitation.user_id == user.id and invitation.is_active and invitation.awaiting_consent:
        invitation.awaiting_consent = False
        session.add(invitation)
        audit.record(session, Actor(user_id=user.id, org_id=invitation.org_id), "user.invitation_accepted",
                     role=invitation.role)
    end_sessions(session, user.id, now=now)
    # Proving control of the mailbox lifts a lock-out of the account.
    record_attempt(session, user.email, "", True, now)
    session.commit()
    return user


def change_password(session: Session, raw_session_token: str, old_password: str, new_password: str,
                    now: datetime | None = None) -> None:
    """Change the signed-in user's password; the user's OTHER sessions end. A wrong old password is
    InvalidInput ``auth.wrong_password`` (field ``old_password``) and counts as a failed sign-in."""
    now = now_or(now)
    info = resolve(session, raw_session_token, now)
    user = session.get(User, info.user_id)
    try:
        check_login_throttle(session, user.email, "", now)
    except Throttled as exc:
        raise fail(session, exc) from None
    if not verify_password(user.password_hash, old_password):
        record_attempt(session, user.email, "", False, now)
        session.commit()
        raise InvalidInput("wrong password", field="old_password", key="auth.wrong_password")
    try:
        validation.validate_password(new_password, field="new_password")
    except DomainError as exc:
        raise fail(session, exc) from None
    user.password_hash = hash_password(new_password)
    end_sessions(session, user.id, except_hash=token_hash(raw_session_token), now=now)
    session.commit()


__all__ = [
    "HASHER",
    "ResetTokenInfo",
    "SessionInfo",
    "change_password",
    "check_reset_token",
    "end_sessions",
    "hash_password",
    "link_mail",
    "set_password_mail",
    "request_password_reset",
    "reset_password",
    "resolve",
    "sign_in",
    "sign_out",
    "switch_organisation",
    "token_hash",
    "verify_password",
]
