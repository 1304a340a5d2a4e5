"""Issue 14: identities that cannot be squatted — e-mail verification, and no secret at rest in
the outbox. Each attack as the attacker would run it through the services."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher
from sqlmodel import func, select

from noventiq_panel.models import AuthSession, MailSecret, Membership, Notification, Role, User
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Forbidden, NotAuthenticated, NotFound, Throttled
from noventiq_panel.services.identity import auth, organisations, registration, users, verification
from noventiq_panel.services.notify import notifications

from tests import factories as f

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
SQUAT_PW = "squatters-password-1"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def count(session, model, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def last_mail(session, email: str, kind: str) -> Notification:
    return session.exec(select(Notification).where(Notification.to_email == email, Notification.kind == kind)
                        .order_by(Notification.id.desc())).first()


def squat(session, email="boss@real-company.uz") -> User:
    return registration.register(session, email=email, password=SQUAT_PW, name="Squatter", org_name="ООО «Пустышка»",
                         now=T0)


def test_a_pre_registered_address_gives_the_squatter_nothing_when_the_reseller_creates_the_customer(session):
    squatter = squat(session)
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "boss@real-company.uz", SQUAT_PW, now=T0)
    org, owner = organisations.create_customer(session, org_name="ООО «Настоящая»", tax_id="301111111",
                                               owner_email="boss@real-company.uz", owner_name="Настоящий Директор",
                                               now=T0 + timedelta(hours=1))
    assert owner.id == squatter.id
    session.refresh(owner)
    assert owner.password_hash is None  # the squatter's password is gone
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "boss@real-company.uz", SQUAT_PW, now=T0 + timedelta(hours=2))
    with pytest.raises(Forbidden):  # nor does the membership give the unproven account any right
        authz.can_read(session, Actor(user_id=owner.id, org_id=org.id))
    # the real owner reads the mailbox: the welcome mail carries the set-password link
    mail = last_mail(session, "boss@real-company.uz", "welcome")
    auth.reset_password(session, f.mailed_token(session, mail), "the-real-owner-1", now=T0 + timedelta(hours=3))
    raw, _ = auth.sign_in(session, "boss@real-company.uz", "the-real-owner-1", now=T0 + timedelta(hours=3))
    info = auth.resolve(session, raw, now=T0 + timedelta(hours=3))
    assert info.org_id in {o["id"] for o in info.orgs} and org.id in {o["id"] for o in info.orgs}


def test_an_old_session_of_an_unverified_account_ends_and_the_reseller_ends_every_session(session):
    """Sessions opened before verification existed (an account migrated unverified) end at once."""
    user = f.user(session, f.org(session), Role.OWNER, email="old@example.com", email_verified_at=None,
                  password_hash=auth.hash_password("old-password-1"))
    row = AuthSession(user_id=user.id, token_hash=auth.token_hash("old-browser"), org_id=None, created_at=T0,
                      last_seen_at=T0)
    session.add(row)
    session.commit()
    with pytest.raises(NotAuthenticated) as exc:
        auth.resolve(session, "old-browser", now=T0 + timedelta(minutes=1))
    assert exc.value.key in ("auth.email_unverified", "auth.session_expired")
    verified = f.user(session, f.org(session), Role.OWNER, email="v@example.com",
                      password_hash=auth.hash_password("v-password-1"))
    raw, _ = auth.sign_in(session, "v@example.com", "v-password-1", now=T0)
    organisations.create_customer(session, org_name="ООО «Вторая»", owner_email="v@example.com",
                                  owner_name="V", now=T0 + timedelta(minutes=5))
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, raw, now=T0 + timedelta(minutes=6))
    session.refresh(verified)
    assert verified.password_hash  # a proven account keeps its password


def test_the_verification_link_verifies_once_and_ends_every_session(session):
    user = squat(session, "me@example.com")
    mail = last_mail(session, "me@example.com", "verify_email")
    assert notifications.MARK_PATTERN.search(mail.body_text) and "/verify/" in mail.body_text
    token = f.mailed_token(session, mail)
    assert token not in mail.body_text and token not in mail.body_html
    with pytest.raises(NotFound):  # a verification link does not set a password
        auth.check_reset_token(session, token, now=T0)
    verification.verify(session, token, SQUAT_PW, now=T0 + timedelta(minutes=1))
    session.refresh(user)
    assert user.email_verified_at == T0 + timedelta(minutes=1)
    with pytest.raises(NotFound):
        verification.verify(session, token, SQUAT_PW, now=T0 + timedelta(minutes=2))
    raw, _ = auth.sign_in(session, "me@example.com", SQUAT_PW, now=T0 + timedelta(minutes=3))
    assert auth.resolve(session, raw, now=T0 + timedelta(minutes=3)).role == Role.OWNER


def test_a_reset_link_is_not_a_verification_link_and_an_expired_one_verifies_nothing(session):
    squat(session, "me@example.com")
    auth.request_password_reset(session, "me@example.com", now=T0)
    reset = f.mailed_token(session, last_mail(session, "me@example.com", "password_reset"))
    with pytest.raises(NotFound):
        verification.verify(session, reset, SQUAT_PW, now=T0)
    token = f.mailed_token(session, last_mail(session, "me@example.com", "verify_email"))
    with pytest.raises(NotFound):
        verification.verify(session, token, SQUAT_PW, now=T0 + timedelta(hours=verification.VERIFY_TOKEN_HOURS))
    assert session.exec(select(User).where(User.email == "me@example.com")).one().email_verified_at is None


def test_setting_a_password_through_a_mailed_link_proves_the_mailbox(session):
    squat(session, "me@example.com")
    auth.request_password_reset(session, "me@example.com", now=T0)
    reset = f.mailed_token(session, last_mail(session, "me@example.com", "password_reset"))
    auth.reset_password(session, reset, "a-new-password-1", now=T0 + timedelta(minutes=1))
    raw, _ = auth.sign_in(session, "me@example.com", "a-new-password-1", now=T0 + timedelta(minutes=2))
    assert auth.resolve(session, raw, now=T0 + timedelta(minutes=2))


def test_sending_the_link_again_is_throttled_and_says_nothing_about_the_address(session):
    squat(session, "me@example.com")
    before = count(session, Notification)
    verification.resend(session, "nobody@example.com", ip="203.0.113.1", now=T0)  # unknown: same answer
    assert count(session, Notification) == before
    for _ in range(verification.RESEND_MAX_PER_EMAIL):
        verification.resend(session, "me@example.com", ip="203.0.113.1", now=T0)
    assert count(session, Notification, Notification.kind == "verify_email") == 1 + verification.RESEND_MAX_PER_EMAIL
    with pytest.raises(Throttled):
        verification.resend(session, "me@example.com", ip="203.0.113.2", now=T0)
    assert count(session, Notification, Notification.kind == "verify_email") == 1 + verification.RESEND_MAX_PER_EMAIL


def test_an_invitation_to_an_unverified_account_stays_inert(session):
    squatter = squat(session, "colleague@example.com")
    owner = f.user(session, f.org(session, name="ООО «Команда»"), Role.OWNER)
    org_id = session.exec(select(Membership.org_id).where(Membership.user_id == owner.id)).one()
    users.invite(session, Actor(user_id=owner.id, org_id=org_id), email="colleague@example.com", name="Коллега",
                 role=Role.ADMIN, now=T0)
    m = session.exec(select(Membership).where(Membership.user_id == squatter.id, Membership.org_id == org_id)).one()
    users.accept_invitation(session, squatter.id, m.id)  # even accepted (a forged call) ...
    with pytest.raises(Forbidden):  # ... it gives nothing until the mailbox is proven
        authz.can_read(session, Actor(user_id=squatter.id, org_id=org_id))


def test_the_outbox_keeps_no_secret_and_the_mailer_puts_it_in_then_forgets_it(engine, session):
    from noventiq_panel.services.notify import mailer

    squat(session, "me@example.com")
    mail = last_mail(session, "me@example.com", "verify_email")
    token = f.mailed_token(session, mail)
    stored = session.get(Notification, mail.id)
    assert token not in stored.body_text + stored.body_html + stored.subject
    message = mailer.build_message(stored, [], mailer.get_settings(), notifications.mail_secret(session, mail.id))
    assert "/verify/" + token in message.get_body(("plain",)).get_content()
    shown = notifications.get_for_user(session, stored.user_id, stored.id)
    assert token not in shown.body_text and "/verify/…" in shown.body_text
    session.commit()
    # after sending (recorded by the mailer) the secret is gone; expired ones are purged
    mailer._record(lambda: type(session)(engine, expire_on_commit=False), T0, [(mail.id, 0, None, False)], 5,
                   mailer.SendSummary())
    session.expire_all()
    assert session.get(MailSecret, mail.id) is None
    auth.request_password_reset(session, "me@example.com", now=T0)
    assert count(session, MailSecret) == 1
    assert notifications.purge_secrets(session, T0 + timedelta(hours=auth.RESET_TOKEN_HOURS)) == 1


def test_a_queued_mail_whose_link_expired_is_never_sent(engine, session):
    from noventiq_panel.services.notify import mailer

    squat(session, "me@example.com")
    mail = last_mail(session, "me@example.com", "verify_email")
    notifications.purge_secrets(session, T0 + timedelta(days=3))
    session.commit()
    claimed = mailer.claim(lambda: type(session)(engine, expire_on_commit=False), T0 + timedelta(days=3), 10)
    assert mail.id not in [nid for _m, nid, _a in claimed]
    session.expire_all()
    assert session.get(Notification, mail.id).status == "failed"


@pytest.mark.parametrize("email", ["victim@bank.uz, me@evil.uz", "Name <victim@bank.uz>", '"victim@bank.uz"@evil.uz',
                                   "me@[10.0.0.1]", "me@localhost", "victim@bank.uz\n"
                                   "Bcc: all@bank.uz"])
def test_an_address_is_one_plain_address_no_comma_or_header_tricks(session, email):
    from noventiq_panel.services.core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        registration.register(session, email=email, password="long enough 1", name="N", org_name="O", now=T0)
    assert count(session, User) == 0


@pytest.mark.parametrize("name", ["Ив\u202eан", "Bank\u2066 security\u2069", "a\x00b", "zero\u200bwidth", "bell\x07"])
def test_free_text_names_refuse_control_and_direction_override_characters(session, name):
    from noventiq_panel.services.core.errors import InvalidInput

    for fields in ({"name": name, "org_name": "O"}, {"name": "N", "org_name": name}):
        with pytest.raises(InvalidInput) as exc:
            registration.register(session, email="ok@example.com", password="long enough 1", now=T0, **fields)
        assert exc.value.key == "error.hidden_characters"
    assert count(session, User) == 0


# --- review findings: a link mark typed into a name (each failed before the per-mail mark) -----------

BAITS = ["__link_secret__", "__link_" + "0" * 32 + "__"]


def _sent_bodies(engine, mail_id: int) -> list[str]:
    from sqlmodel import Session

    from noventiq_panel.services.notify import mailer

    claimed = mailer.claim(lambda: Session(engine, expire_on_commit=False), T0, 100)
    [message] = [m for m, nid, _a in claimed if nid == mail_id]
    return [message.get_body((kind,)).get_content() for kind in ("plain", "html")]


@pytest.mark.parametrize("bait", BAITS)
def test_a_name_holding_a_link_mark_never_receives_the_link_secret(engine, session, bait):
    """An attacker names the organisation (or themselves) after the mark: the victim's token must
    go into the panel's link only, never into the attacker's URL."""
    evil = "Подтвердите: https://evil.example/v/" + bait
    organisations.create_customer(session, org_name=evil, owner_email="victim@bank.uz", owner_name=evil, now=T0)
    mail = last_mail(session, "victim@bank.uz", "welcome")
    token = f.mailed_token(session, mail)
    session.commit()
    for body in _sent_bodies(engine, mail.id):
        # every occurrence of the token is the panel's own link (the HTML shows it twice)
        assert body.count(token) == body.count("http://localhost:3000/reset/" + token) >= 1, body
        assert "evil.example/v/" + token not in body


@pytest.mark.parametrize("bait", BAITS)
def test_a_sign_up_named_after_the_mark_gets_its_own_link_and_nothing_more(engine, session, bait):
    registration.register(session, email="me@example.com", password=SQUAT_PW, name=bait, org_name="O " + bait, now=T0)
    mail = last_mail(session, "me@example.com", "verify_email")
    token = f.mailed_token(session, mail)
    session.commit()
    for body in _sent_bodies(engine, mail.id):
        assert body.count(token) == body.count("http://localhost:3000/verify/" + token) >= 1, body


@pytest.mark.parametrize("bait", BAITS)
def test_a_name_holding_a_link_mark_does_not_stop_mail_to_it(session, bait):
    """Mail without a link to a user (or organisation) named after the mark is queued like any
    other: no error stops the work that sends it."""
    o = f.org(session, name="ООО " + bait)
    u = f.user(session, o, Role.OWNER, name=bait, email="named@example.com")
    row = notifications.notify_user(session, u, "low_balance", {"balance": "0", "threshold": "1", "currency": "UZS"},
                                   org_id=o.id, now=T0)
    session.commit()
    assert row.id and row.status == "queued"


def test_a_mail_that_failed_for_good_keeps_no_secret(engine, session):
    from sqlmodel import Session

    from noventiq_panel.services.notify import mailer

    squat(session, "me@example.com")
    mail = last_mail(session, "me@example.com", "verify_email")
    session.commit()
    mailer._record(lambda: Session(engine, expire_on_commit=False), T0, [(mail.id, 0, "550 no such user", False)], 0,
                   mailer.SendSummary())
    session.expire_all()
    assert session.get(Notification, mail.id).status == "failed"
    assert session.get(MailSecret, mail.id) is None


def test_opening_the_link_shows_the_address_and_verifies_nothing(session):
    """A mail scanner that follows links must not prove an address someone else signed up with."""
    user = squat(session, "victim@bank.uz")
    token = f.mailed_token(session, last_mail(session, "victim@bank.uz", "verify_email"))
    assert verification.check(session, token, now=T0) == "victim@bank.uz"
    assert verification.check(session, token, now=T0) == "victim@bank.uz"
    session.expire_all()
    assert session.get(User, user.id).email_verified_at is None
    with pytest.raises(NotFound):
        verification.check(session, token, now=T0 + timedelta(hours=verification.VERIFY_TOKEN_HOURS))
    for forged in ("", "x" * 300, None, 5):
        with pytest.raises(NotFound):
            verification.check(session, forged, now=T0)
    verification.verify(session, token, SQUAT_PW, now=T0)
    with pytest.raises(NotFound):  # used
        verification.check(session, token, now=T0)
