"""Two-factor sign-in with time-based one-time codes (TOTP, RFC 6238, through ``pyotp``).

- **Enrolment** (the user's own, from the profile): :func:`start` keeps a new secret on the user
  (not yet in force) and gives the ``otpauth://`` URI as a QR code to scan; :func:`confirm` with a
  code from the app puts it in force and returns ``RECOVERY_CODES`` recovery codes — shown once,
  only their SHA-256 is kept.
- **Sign-in** (``auth.sign_in``): after the right password an enrolled user also gives a code
  (:func:`check`): a current code of the app (the step before and after are accepted for clock
  drift), each time step at most once (a replayed or older code is refused), or an unused
  recovery code, which is used up. A wrong code counts as a failed sign-in.
- **Turning it off** (:func:`disable`) needs a valid code, and is refused while an organisation of
  the user requires it.
- **The organisation's rule** (:func:`set_required`, Owners only, who must use it themselves): every
  member must sign in with a code; until a member enrols, the organisation gives them no access
  (``authz``) and the panel sends them to their profile to enrol.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from noventiq_panel.models import Membership, Organisation, RecoveryCode, User
from noventiq_panel.services.core import audit, authz, clock
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, DomainError, InvalidInput, NotFound

ISSUER = "Noventiq"
RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


@dataclass(frozen=True)
class Enrolment:
    secret: str  # to type in by hand
    uri: str  # otpauth://totp/...
    qr_svg: str  # a data: URI of the QR code of ``uri``


def _now(now: datetime | None) -> datetime:
    return now if now is not None else clock.utcnow()


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or not user.is_active or user.email_verified_at is None:
        raise NotFound("user not found", key="error.not_found")
    return user


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _clean(code) -> str:
    if not isinstance(code, str):
        return ""
    return "".join(code.split()).replace("-", "").lower()[:32]


def start(session: Session, user_id: int, *, now: datetime | None = None) -> Enrolment:
    """Begin enrolment: a new secret (replacing one not yet confirmed). Conflict when already on."""
    try:
        user = _user(session, user_id)
        if user.totp_enabled_at is not None:
            raise Conflict("two-factor sign-in is already on", key="two_factor.already_on")
    except DomainError:
        session.rollback()
        raise
    user.totp_secret = pyotp.random_base32(32)
    session.add(user)
    uri = _totp(user.totp_secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    enrolment = Enrolment(user.totp_secret, uri, segno.make(uri, error="m").svg_data_uri(scale=5, border=2))
    session.commit()
    return enrolment


def confirm(session: Session, user_id: int, code, *, now: datetime | None = None) -> list[str]:
    """Put the pending secret in force with a code from the app; returns the recovery codes (shown
    once). InvalidInput ``two_factor.code_wrong`` for a wrong code (nothing changes)."""
    now = _now(now)
    try:
        user = _user(session, user_id)
        if user.totp_enabled_at is not None:
            raise Conflict("two-factor sign-in is already on", key="two_factor.already_on")
        if not user.totp_secret:
            raise Conflict("start the enrolment first", key="two_factor.not_started")
        step = _matching_step(user.totp_secret, _clean(code), now, after=None)
        if step is None:
            raise InvalidInput("the code is not right", field="code", key="two_factor.code_wrong")
    except DomainError:
        session.rollback()
        raise
    user.totp_enabled_at, user.totp_last_step = now, step
    session.add(user)
    codes = _new_recovery_codes(session, user)
    for membership in session.exec(select(Membership).where(Membership.user_id == user.id,
                                                             Membership.in_force())).all():
        audit.record(session, Actor(user_id=user.id, org_id=membership.org_id), "user.two_factor_enabled")
    session.commit()
    return codes


def _new_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = ["".join(secrets.choice(_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def _matching_step(secret: str, code: str, now: datetime, *, after: int | None) -> int | None:
    """The time step (of now, the one before or after) whose code is ``code`` and is later than
    ``after``; None if none."""
    if len(code) != 6 or not code.isdigit():
        return None
    totp = _totp(secret)
    current = int(now.timestamp()) // totp.interval
    for step in (current - 1, current, current + 1):
        if (after is None or step > after) and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check(session: Session, user: User, code, now: datetime) -> bool:
    """Whether ``code`` signs ``user`` in: an app code of a step not used before (recorded), or an
    unused recovery code (used up). Flushes only; False for anything else."""
    code = _clean(code)
    if not user.totp_secret or user.totp_enabled_at is None or not code:
        return False
    step = _matching_step(user.totp_secret, code, now, after=user.totp_last_step)
    if step is not None:
        moved = session.execute(update(User).where(User.id == user.id, (col(User.totp_last_step).is_(None))
                                                   | (col(User.totp_last_step) < step))
                                .values(totp_last_step=step).execution_options(synchronize_session=False))
        if moved.rowcount == 1:  # two sign-ins with one code at once: only one wins
            user.totp_last_step = step
            return True
        return False
    used = session.execute(update(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                      RecoveryCode.code_hash == _code_hash(code),
                                                      col(RecoveryCode.used_at).is_(None))
                           .values(used_at=now).execution_options(synchronize_session=False))
    return used.rowcount == 1


def disable(session: Session, user_id: int, code, *, now: datetime | None = None) -> None:
    """Turn two-factor sign-in off with a valid code; refused while an organisation of the user
    requires it."""
    now = _now(now)
    try:
        user = _user(session, user_id)
        if user.totp_enabled_at is None:
            raise Conflict("two-factor sign-in is off", key="two_factor.already_off")
        required = session.exec(
            select(Organisation.name).join(Membership, Membership.org_id == Organisation.id)
            .where(Membership.user_id == user.id, Membership.in_force(),
                   Organisation.require_two_factor == True)).first()  # noqa: E712
        if required is not None:
            raise Conflict("an organisation requires two-factor sign-in", key="two_factor.required_by_org",
                           org=required)
        if not check(session, user, code, now):
            raise InvalidInput("the code is not right", field="code", key="two_factor.code_wrong")
    except DomainError:
        session.rollback()
        raise
    user.totp_secret, user.totp_enabled_at, user.totp_last_step = None, None, None
    session.add(user)
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    for membership in session.exec(select(Membership).where(Membership.user_id == user.id,
                                                             Membership.in_force())).all():
        audit.record(session, Actor(user_id=user.id, org_id=membership.org_id), "user.two_factor_disabled")
    session.commit()


def status(session: Session, user_id: int) -> tuple[bool, int]:
    """(on, recovery codes left) of the user."""
    user = session.get(User, user_id)
    left = 0
    if user is not None and user.totp_enabled_at is not None:
        left = len(session.exec(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id,
                                                               col(RecoveryCode.used_at).is_(None))).all())
    on = user is not None and user.totp_enabled_at is not None
    session.rollback()
    return on, left


def set_required(session: Session, actor: Actor | None, required) -> bool:
    """An Owner requires (or stops requiring) two-factor sign-in of every member; an Owner who does
    not use it cannot require it (Conflict ``two_factor.enrol_first``). Audited."""
    try:
        access = authz.can_manage_owners(session, actor)
        if not isinstance(required, bool):
            raise InvalidInput("on or off", field="required", key="error.invalid_flag")
        org = session.get(Organisation, access.org_id)
        user = session.get(User, actor.user_id) if actor.user_id else None
        if required and (user is None or user.totp_enabled_at is None):
            raise Conflict("turn two-factor sign-in on for yourself first", key="two_factor.enrol_first")
    except DomainError:
        session.rollback()
        raise
    if org.require_two_factor != required:
        org.require_two_factor = required
        session.add(org)
        audit.record(session, actor, "organisation.two_factor_required", required=required)
    session.commit()
    return required
