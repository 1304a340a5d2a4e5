"""E-mail verification: an account gives access only once its owner proved they read its mailbox.

- A self-registered account starts unverified (``User.email_verified_at`` None) and gets a
  ``verify_email`` mail with a single-use ``/verify/<token>`` link valid ``VERIFY_TOKEN_HOURS``.
- Until verified it cannot sign in (``auth.sign_in`` answers ``auth.email_unverified`` after the
  right password, and the page offers to send the link again), its sessions end
  (``auth.resolve``), and every membership it holds is inert (``authz``): one granted by someone
  else too — an Owner's invitation, or the reseller's ``create-customer`` (which also drops the
  password someone chose for the unproven account and mails the set-password link instead).
- Confirming on the link's page with the account's password (opening it only shows the address:
  a mail scanner that follows links verifies nothing, and the owner of an address that someone
  else signed up with cannot prove that stranger's account), or setting a password through a
  mailed link (``auth.reset_password``), verifies the account and ends every session it had.
- Sending the link again is throttled per address and per IP, and says the same for unknown,
  verified or unverified addresses (nobody learns which addresses have accounts).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from noventiq_panel.models import Organisation, TokenPurpose, User
from noventiq_panel.services.core import audit
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import DomainError, InvalidInput
from noventiq_panel.services.identity import auth, validation
from noventiq_panel.services.notify import notifications

VERIFY_TOKEN_HOURS = 48
VERIFY_PATH = "/verify/"
RESEND_PREFIX = "verify:"  # LoginAttempt rows of resend requests
RESEND_MAX_PER_EMAIL = 3  # per login window


def send_link(session: Session, user: User, *, org_id: int | None = None, now: datetime | None = None) -> None:
    """Queue the verification mail of ``user`` (flush only)."""
    mail = auth.link_mail(session, user, TokenPurpose.VERIFY, VERIFY_TOKEN_HOURS, now, path=VERIFY_PATH)
    org = session.get(Organisation, org_id) if org_id is not None else None
    org_name = org.name if org is not None else ""
    notifications.notify_user(session, user, "verify_email", {"org_name": org_name, **mail.context}, org_id=org_id,
                              secret=mail.secret, now=now)


def resend(session: Session, email: str, ip: str = "", now: datetime | None = None) -> None:
    """Send the link again to an unverified account (silently nothing for any other address).
    Throttled ``auth.throttled`` after ``RESEND_MAX_PER_EMAIL`` requests per address, and as many
    as the reset requests per IP, within the login window. Commits."""
    now = auth.now_or(now)
    try:
        email = validation.normalize_email(email)
    except DomainError as exc:
        raise auth.fail(session, exc) from None
    auth.mail_request(session, RESEND_PREFIX, email, ip, RESEND_MAX_PER_EMAIL, now)
    user = session.exec(select(User).where(User.email == email)).first()
    if user is not None and user.is_active and user.email_verified_at is None and user.password_hash:
        org_id = next((m.org_id for m, _o in auth.active_memberships(session, user.id)), None)
        send_link(session, user, org_id=org_id, now=now)
    session.commit()


def check(session: Session, raw_token: str, now: datetime | None = None) -> str:
    """What the ``/verify/<token>`` page shows before the visitor confirms: the address the link
    would verify. Nothing changes (opening a link is not confirming it: a mail scanner that
    follows links must not verify an address someone else signed up with). NotFound as
    :func:`verify`."""
    now = auth.now_or(now)
    try:
        _row, user = auth.valid_token(session, raw_token, now, purposes=(TokenPurpose.VERIFY.value,))
    except DomainError as exc:
        raise auth.fail(session, exc) from None
    session.rollback()
    return user.email


def verify(session: Session, raw_token: str, password: str, *, ip: str = "", now: datetime | None = None) -> User:
    """Confirm a verification link with the account's password: the account is verified, the link
    used up, and every session the account had ends. The password binds the proof to whoever chose
    it: someone who signed up with another person's address cannot have that person's click prove
    it (the person does not know the password), so the account stays unproven and the reseller's
    ``create-customer`` drops its password. NotFound ``auth.reset_invalid``/``auth.reset_expired``
    for a bad, used, expired or other kind of link; a wrong password is InvalidInput
    ``auth.wrong_password`` and counts as a failed sign-in (throttled like one). Commits."""
    now = auth.now_or(now)
    try:
        _row, user = auth.valid_token(session, raw_token, now, purposes=(TokenPurpose.VERIFY.value,))
        auth.check_login_throttle(session, user.email, ip, now)
    except DomainError as exc:
        raise auth.fail(session, exc) from None
    if not isinstance(password, str) or not user.password_hash or not auth.verify_password(user.password_hash, password):
        auth.record_attempt(session, user.email, ip, False, now)
        session.commit()
        raise InvalidInput("wrong password", field="password", key="auth.wrong_password")
    try:
        _row, user = auth.use_token(session, raw_token, now, purposes=(TokenPurpose.VERIFY.value,))
    except DomainError as exc:
        raise auth.fail(session, exc) from None
    if user.email_verified_at is None:
        user.email_verified_at = now
    auth.end_sessions(session, user.id, now=now)
    for membership, _org in auth.active_memberships(session, user.id):
        audit.record(session, Actor(user_id=user.id, org_id=membership.org_id), "user.email_verified")
    session.commit()
    return user
