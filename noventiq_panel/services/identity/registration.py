"""Self-service sign-up: a new organisation, its Owner, and the mail that verifies the address.

The account signs in only once the mailed link was opened (:mod:`verification`). Sign-ups are
throttled per IP (successful or not: each creates an organisation and an argon2 hash, and a
refusal tells whether an e-mail is known).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.models import BillingMode, LoginAttempt, Membership, Organisation, Role, User
from noventiq_panel.services.core.errors import Conflict, DomainError, Throttled
from noventiq_panel.services.identity import auth, organisations, validation, verification

REGISTER_PREFIX = "register:"  # LoginAttempt rows of sign-ups, counted per IP
REGISTER_MAX_PER_IP = 10


def register(session: Session, *, email: str, password: str, name: str, org_name: str, tax_id: str = "",
             locale: str = "ru", ip: str = "", now: datetime | None = None) -> User:
    """Self-service sign-up: a new Organisation (UZS, Asia/Tashkent, prepaid) with the user as its
    Owner and a verification e-mail; no session: the account signs in once its mailbox link was
    opened (:mod:`verification`). Conflict ``auth.email_taken`` for a known e-mail."""

    now = auth.now_or(now)
    throttle(session, ip, email, now)
    try:
        email = validation.normalize_email(email)
        validation.validate_password(password)
        name = validation.validate_name(name)
        org_name = validation.validate_org_name(org_name)
        tax_id = validation.validate_tax_id(tax_id)
        locale = validation.validate_locale(locale)
        if session.exec(select(User.id).where(User.email == email)).first() is not None:
            raise Conflict("this e-mail is already registered", key="auth.email_taken", field="email")
        organisations.claim_tax_id(session, tax_id)
    except DomainError as exc:
        raise auth.fail(session, exc) from None
    try:
        org = Organisation(name=org_name, tax_id=tax_id, billing_currency="UZS", timezone="Asia/Tashkent",
                           billing_mode=BillingMode.PREPAID, self_service=True, created_at=now)
        user = User(email=email, name=name, password_hash=auth.hash_password(password), locale=locale, created_at=now)
        session.add(org)
        session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, org_id=org.id, role=Role.OWNER, created_at=now))
        verification.send_link(session, user, org_id=org.id, now=now)
        session.commit()
    except IntegrityError:  # the e-mail or the tax id registered at the same moment
        session.rollback()
        organisations.require_tax_id_free(session, tax_id)
        raise Conflict("this e-mail is already registered", key="auth.email_taken", field="email") from None
    return user


def throttle(session: Session, ip: str, email: str, now: datetime) -> None:
    """At most ``REGISTER_MAX_PER_IP`` sign-ups tried per IP within the login window, successful or
    not: each creates an organisation and an argon2 hash, and a refusal tells whether an e-mail is
    known, so neither may be repeated without limit. The try is recorded (and committed) first."""
    if not ip:
        return
    times = list(session.exec(
        select(LoginAttempt.at).where(LoginAttempt.ip == ip[:64], LoginAttempt.at > auth.window(now),
                                      col(LoginAttempt.email).startswith(REGISTER_PREFIX))
        .order_by(LoginAttempt.at)).all())
    if len(times) >= REGISTER_MAX_PER_IP:
        session.rollback()
        raise Throttled("too many sign-ups from this address", key="auth.throttled",
                        minutes=auth.retry_minutes(times, REGISTER_MAX_PER_IP, now))
    auth.record_attempt(session, REGISTER_PREFIX + str(email).strip().lower()[:240], ip, True, now)
    session.commit()
