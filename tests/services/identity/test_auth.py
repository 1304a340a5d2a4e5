"""Sign-in, throttling, sessions, registration, password recovery and change."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlmodel import Session, func, select

from noventiq_panel.models import (
    AuthSession,
    LoginAttempt,
    Membership,
    Notification,
    Organisation,
    PasswordResetToken,
    Role,
    User,
)
from noventiq_panel.services.identity import auth, registration
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, Throttled

from tests import factories as f

T0 = datetime(2025, 9, 24, 9, 0, tzinfo=timezone.utc)
PW = "correct horse 1"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    """argon2 with tiny parameters: the tests check the flow, not the hash's cost."""
    monkeypatch.setattr(auth, "HASHER", CHEAP)
    monkeypatch.setattr(auth, "_dummy_hash", None)


@pytest.fixture
def lite(sqlite_engine):
    """SQLite only: input validation that never reaches backend-specific SQL."""
    with Session(sqlite_engine, expire_on_commit=False) as s:
        yield s


def member(session, o=None, role=Role.OWNER, password=PW, **kw) -> User:
    o = o or f.org(session)
    return f.user(session, o, role, password_hash=auth.hash_password(password) if password else None, **kw)


def count(session, model, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def reset_link_token(session, user: User) -> str:
    row = session.exec(select(Notification).where(Notification.user_id == user.id,
                                                  Notification.kind == "password_reset")
                       .order_by(Notification.id.desc())).first()
    return f.mailed_token(session, row)


# --- sign-in ---------------------------------------------------------------------------------

def test_sign_in_opens_a_session_and_only_the_hash_of_the_secret_is_stored(session):
    o = f.org(session, name="ООО «Альфа»")
    u = member(session, o, email="Anna@Example.com".lower())
    raw, user = auth.sign_in(session, "  ANNA@example.com ", PW, ip="10.0.0.1", now=T0)
    assert user.id == u.id and len(raw) >= 40
    row = session.exec(select(AuthSession)).one()
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest() != raw
    info = auth.resolve(session, raw, now=T0)
    assert (info.user_id, info.org_id, info.org_name, info.role) == (u.id, o.id, "ООО «Альфа»", Role.OWNER)
    assert info.orgs == [{"id": o.id, "name": "ООО «Альфа»", "role": Role.OWNER}]
    assert info.actor.org_id == o.id and info.can_write and info.is_owner
    assert session.get(User, u.id).last_login_at == T0


@pytest.mark.parametrize("email, password", [
    ("known@example.com", "wrong password"),
    ("unknown@example.com", PW),
    ("not an email", PW),
])
def test_wrong_password_and_unknown_email_give_the_same_generic_error(session, email, password):
    member(session, email="known@example.com")
    with pytest.raises(NotAuthenticated) as exc:
        auth.sign_in(session, email, password, now=T0)
    assert exc.value.key == "auth.bad_credentials"
    assert count(session, AuthSession) == 0


def test_a_failed_sign_in_is_recorded(session):
    member(session, email="known@example.com")
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "known@example.com", "nope-nope", ip="1.2.3.4", now=T0)
    row = session.exec(select(LoginAttempt)).one()
    assert (row.email, row.ip, row.success) == ("known@example.com", "1.2.3.4", False)


def test_an_inactive_user_or_one_without_password_cannot_sign_in(session):
    u = member(session, email="off@example.com")
    u.is_active = False
    session.commit()
    member(session, email="invited@example.com", password=None)
    for email, password in (("off@example.com", PW), ("invited@example.com", ""), ("invited@example.com", PW)):
        with pytest.raises(NotAuthenticated) as exc:
            auth.sign_in(session, email, password, now=T0)
        assert exc.value.key == "auth.bad_credentials"


def test_a_user_whose_memberships_are_all_deactivated_cannot_sign_in(session):
    u = member(session, email="left@example.com")
    m = session.exec(select(Membership).where(Membership.user_id == u.id)).one()
    m.is_active = False
    session.commit()
    with pytest.raises(NotAuthenticated) as exc:
        auth.sign_in(session, "left@example.com", PW, now=T0)
    assert exc.value.key == "auth.no_organisation"


def test_an_old_hash_is_upgraded_at_sign_in(session, monkeypatch):
    u = member(session, email="old@example.com")
    old_hash = u.password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    monkeypatch.setattr(auth, "HASHER", stronger)
    assert stronger.check_needs_rehash(old_hash)
    auth.sign_in(session, "old@example.com", PW, now=T0)
    new_hash = session.get(User, u.id).password_hash
    assert new_hash != old_hash and not stronger.check_needs_rehash(new_hash)
    assert stronger.verify(new_hash, PW)


# --- throttling ------------------------------------------------------------------------------

def test_an_account_is_throttled_after_max_failures_from_one_address_even_for_the_right_password(session):
    member(session, email="victim@example.com")
    for i in range(5):  # login_max_failures
        with pytest.raises(NotAuthenticated):
            auth.sign_in(session, "victim@example.com", f"guess-{i}xx", ip="10.0.0.1", now=T0 + timedelta(minutes=i))
    with pytest.raises(Throttled) as exc:
        auth.sign_in(session, "victim@example.com", PW, ip="10.0.0.1", now=T0 + timedelta(minutes=5))
    assert exc.value.key == "auth.throttled"
    assert exc.value.params["minutes"] == 10  # the first failure leaves the 15-minute window at T0+15
    # a throttled attempt is not even recorded, and opens nothing
    assert count(session, LoginAttempt) == 5 and count(session, AuthSession) == 0
    # once the window has passed, the right password works again
    auth.sign_in(session, "victim@example.com", PW, ip="10.0.0.1", now=T0 + timedelta(minutes=15, seconds=1))


def test_a_stranger_elsewhere_cannot_lock_a_known_account_out(session):
    """Issue 14: the count is per account and address together."""
    member(session, email="boss@example.com")
    for i in range(5):
        with pytest.raises(NotAuthenticated):
            auth.sign_in(session, "boss@example.com", f"guess-{i}xx", ip="198.51.100.66", now=T0 + timedelta(minutes=i))
    with pytest.raises(Throttled):
        auth.sign_in(session, "boss@example.com", PW, ip="198.51.100.66", now=T0 + timedelta(minutes=5))
    auth.sign_in(session, "boss@example.com", PW, ip="10.0.0.5", now=T0 + timedelta(minutes=5))  # the owner, at work


def test_guesses_at_one_account_spread_over_many_addresses_are_throttled_too(session):
    member(session, email="target@example.com")
    for i in range(5 * auth.ACCOUNT_LIMIT_FACTOR):
        with pytest.raises(NotAuthenticated):
            auth.sign_in(session, "target@example.com", "wrong-guess", ip=f"10.1.{i // 4}.{i % 4}",
                         now=T0 + timedelta(seconds=i))
    with pytest.raises(Throttled):
        auth.sign_in(session, "target@example.com", PW, ip="10.200.0.1", now=T0 + timedelta(minutes=2))


def test_a_session_ends_after_its_absolute_lifetime_however_busy(session):
    member(session, email="busy@example.com")
    raw, _ = auth.sign_in(session, "busy@example.com", PW, now=T0)
    for minutes in range(0, 12 * 60, 60):  # used every hour: never idle
        auth.resolve(session, raw, now=T0 + timedelta(minutes=minutes))
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, raw, now=T0 + timedelta(hours=12, minutes=1))


def test_a_successful_sign_in_starts_the_account_count_again(session):
    member(session, email="typo@example.com")
    for round_ in range(3):
        for i in range(4):
            with pytest.raises(NotAuthenticated):
                auth.sign_in(session, "typo@example.com", "typo-typo", now=T0 + timedelta(seconds=round_ * 10 + i))
        auth.sign_in(session, "typo@example.com", PW, now=T0 + timedelta(seconds=round_ * 10 + 5))


def test_one_ip_is_throttled_across_accounts_at_a_higher_limit(session):
    o = f.org(session)
    for i in range(6):
        member(session, o, email=f"user{i}@example.com")
    now = T0
    # 20 failures (4 per account, below the account limit of 5) from one address
    for i in range(5):
        for _ in range(4):
            now += timedelta(seconds=10)
            with pytest.raises(NotAuthenticated):
                auth.sign_in(session, f"user{i}@example.com", "wrong-pass", ip="203.0.113.7", now=now)
    with pytest.raises(Throttled):
        auth.sign_in(session, "user5@example.com", PW, ip="203.0.113.7", now=now)
    # another address is not affected
    auth.sign_in(session, "user5@example.com", PW, ip="198.51.100.1", now=now)


# --- sessions --------------------------------------------------------------------------------

def test_a_session_expires_after_idle_minutes_but_use_keeps_it_alive(session):
    member(session, email="idle@example.com")
    raw, _ = auth.sign_in(session, "idle@example.com", PW, now=T0)
    t = T0
    for _ in range(3):  # in use every 119 minutes: stays alive
        t += timedelta(minutes=119)
        auth.resolve(session, raw, now=t)
    with pytest.raises(NotAuthenticated) as exc:
        auth.resolve(session, raw, now=t + timedelta(minutes=120, seconds=1))
    assert exc.value.key == "auth.session_expired"
    # expired means ended: coming back "earlier" does not revive it
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, raw, now=t + timedelta(minutes=1))


def test_last_seen_is_written_at_most_once_a_minute(session):
    member(session, email="busy@example.com")
    raw, _ = auth.sign_in(session, "busy@example.com", PW, now=T0)
    auth.resolve(session, raw, now=T0 + timedelta(seconds=59))
    assert session.exec(select(AuthSession)).one().last_seen_at == T0
    auth.resolve(session, raw, now=T0 + timedelta(seconds=61))
    assert session.exec(select(AuthSession)).one().last_seen_at == T0 + timedelta(seconds=61)


@pytest.mark.parametrize("token", ["", "nonsense", "x" * 5000, None, 42])
def test_an_unknown_secret_is_not_authenticated(lite, token):
    with pytest.raises(NotAuthenticated):
        auth.resolve(lite, token, now=T0)


def test_sign_out_ends_only_that_session(session):
    member(session, email="two@example.com")
    a, _ = auth.sign_in(session, "two@example.com", PW, now=T0)
    b, _ = auth.sign_in(session, "two@example.com", PW, now=T0)
    auth.sign_out(session, a, now=T0)
    auth.sign_out(session, a, now=T0)  # twice is harmless
    auth.sign_out(session, "unknown", now=T0)
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, a, now=T0)
    assert auth.resolve(session, b, now=T0).email == "two@example.com"


def test_deactivating_a_user_ends_their_sessions(session):
    u = member(session, email="fired@example.com")
    raw, _ = auth.sign_in(session, "fired@example.com", PW, now=T0)
    u.is_active = False
    session.commit()
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, raw, now=T0)


def test_switching_organisation_needs_a_membership(session):
    a = f.org(session, name="A")
    b = f.org(session, name="B")
    stranger = f.org(session, name="C")
    u = member(session, a, email="multi@example.com")
    session.add(Membership(user_id=u.id, org_id=b.id, role=Role.FINANCE))
    session.commit()
    raw, _ = auth.sign_in(session, "multi@example.com", PW, now=T0)
    info = auth.resolve(session, raw, now=T0)
    assert info.org_id == a.id and [o["name"] for o in info.orgs] == ["A", "B"]
    info = auth.switch_organisation(session, raw, b.id, now=T0)
    assert (info.org_id, info.role, info.can_write) == (b.id, Role.FINANCE, False)
    assert auth.resolve(session, raw, now=T0).org_id == b.id
    for bad in (stranger.id, 999999, "1", None):
        with pytest.raises(NotFound):
            auth.switch_organisation(session, raw, bad, now=T0)
    assert auth.resolve(session, raw, now=T0).org_id == b.id
    # the next sign-in opens the organisation used last
    raw2, _ = auth.sign_in(session, "multi@example.com", PW, now=T0 + timedelta(minutes=5))
    assert auth.resolve(session, raw2, now=T0 + timedelta(minutes=5)).org_id == b.id


def test_a_taken_away_membership_falls_back_to_another_or_ends_the_session(session):
    a = f.org(session, name="A")
    b = f.org(session, name="B")
    u = member(session, a, email="fall@example.com")
    session.add(Membership(user_id=u.id, org_id=b.id, role=Role.ADMIN))
    session.commit()
    raw, _ = auth.sign_in(session, "fall@example.com", PW, now=T0)
    assert auth.resolve(session, raw, now=T0).org_id == a.id
    ma = session.exec(select(Membership).where(Membership.user_id == u.id, Membership.org_id == a.id)).one()
    ma.is_active = False
    session.commit()
    info = auth.resolve(session, raw, now=T0)
    assert (info.org_id, info.role, [o["id"] for o in info.orgs]) == (b.id, Role.ADMIN, [b.id])
    mb = session.exec(select(Membership).where(Membership.user_id == u.id, Membership.org_id == b.id)).one()
    mb.is_active = False
    session.commit()
    with pytest.raises(NotAuthenticated) as exc:
        auth.resolve(session, raw, now=T0)
    assert exc.value.key == "auth.no_organisation"


# --- registration ----------------------------------------------------------------------------

def test_registration_creates_the_organisation_its_owner_and_a_verification_mail_but_no_session(session):
    user = registration.register(session, email="New@Example.com", password="long enough", name="  Нодира  Каримова ",
                         org_name="ООО «Новая»", tax_id="305 123 456", locale="en", now=T0)
    org = session.exec(select(Organisation)).one()
    assert (org.name, org.tax_id, org.billing_currency, org.timezone, org.billing_mode) == (
        "ООО «Новая»", "305123456", "UZS", "Asia/Tashkent", "prepaid")
    assert (user.email, user.name, user.locale, user.email_verified_at) == (
        "new@example.com", "Нодира Каримова", "en", None)
    m = session.exec(select(Membership)).one()
    assert (m.user_id, m.org_id, m.role, m.is_active) == (user.id, org.id, Role.OWNER, True)
    mail = session.exec(select(Notification)).one()
    assert (mail.kind, mail.to_email, mail.locale, mail.org_id) == ("verify_email", "new@example.com", "en", org.id)
    assert count(session, AuthSession) == 0
    with pytest.raises(NotAuthenticated) as exc:  # the right password, the mailbox not proven yet
        auth.sign_in(session, "new@example.com", "long enough", now=T0)
    assert exc.value.key == "auth.email_unverified" and count(session, AuthSession) == 0


@pytest.mark.parametrize("field, value, key", [
    ("password", "short", "auth.password_too_short"),
    ("password", "        ", "auth.password_too_short"),
    ("password", "x" * 257, "auth.password_too_long"),
    ("email", "no-at-sign", "auth.email_invalid"),
    ("email", "", "auth.email_required"),
    ("name", "  ", "auth.name_required"),
    ("org_name", "", "organisations.name_required"),
    ("tax_id", "12345", "organisations.tax_id_invalid"),
    ("tax_id", "12345678X", "organisations.tax_id_invalid"),
    ("locale", "de", "auth.locale_invalid"),
])
def test_registration_refuses_bad_input_and_changes_nothing(lite, field, value, key):
    session = lite
    data = dict(email="ok@example.com", password="long enough", name="Name", org_name="Org", tax_id="", locale="ru")
    data[field] = value
    with pytest.raises(InvalidInput) as exc:
        registration.register(session, **data, now=T0)
    assert exc.value.key == key
    for model in (Organisation, User, Membership, Notification, AuthSession):
        assert count(session, model) == 0


def test_registration_with_a_known_email_is_a_conflict_and_changes_nothing(session):
    member(session, email="taken@example.com")
    before = {m: count(session, m) for m in (Organisation, User, Membership, Notification, AuthSession)}
    with pytest.raises(Conflict) as exc:
        registration.register(session, email="TAKEN@example.com", password="long enough", name="N", org_name="O",
                      tax_id="", now=T0)
    assert exc.value.key == "auth.email_taken"
    assert before == {m: count(session, m) for m in before}


# --- password recovery -----------------------------------------------------------------------

def test_reset_link_is_mailed_single_use_and_ends_all_sessions(session):
    u = member(session, email="forgot@example.com")
    s1, _ = auth.sign_in(session, "forgot@example.com", PW, now=T0)
    assert auth.request_password_reset(session, "Forgot@example.com", ip="1.1.1.1", now=T0) is None
    mail = session.exec(select(Notification).where(Notification.kind == "password_reset")).one()
    assert mail.to_email == "forgot@example.com" and "/reset/" in mail.body_text
    token = reset_link_token(session, u)
    info = auth.check_reset_token(session, token, now=T0 + timedelta(minutes=5))
    assert (info.user_id, info.purpose, info.expires_at) == (u.id, "reset", T0 + timedelta(hours=1))
    auth.reset_password(session, token, "brand new pass", now=T0 + timedelta(minutes=10))
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, s1, now=T0 + timedelta(minutes=10))
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "forgot@example.com", PW, now=T0 + timedelta(minutes=11))
    auth.sign_in(session, "forgot@example.com", "brand new pass", now=T0 + timedelta(minutes=11))
    for call in (lambda: auth.check_reset_token(session, token, now=T0 + timedelta(minutes=12)),
                 lambda: auth.reset_password(session, token, "another pass 2", now=T0 + timedelta(minutes=12))):
        with pytest.raises(NotFound) as exc:
            call()
        assert exc.value.key == "auth.reset_invalid"


def test_a_used_reset_voids_the_users_other_open_links(session):
    u = member(session, email="twice@example.com")
    auth.request_password_reset(session, "twice@example.com", now=T0)
    first = reset_link_token(session, u)
    auth.request_password_reset(session, "twice@example.com", now=T0 + timedelta(minutes=1))
    second = reset_link_token(session, u)
    assert first != second
    auth.reset_password(session, second, "brand new pass", now=T0 + timedelta(minutes=2))
    with pytest.raises(NotFound):
        auth.reset_password(session, first, "evil new pass", now=T0 + timedelta(minutes=3))


def test_reset_link_expires_after_one_hour(session):
    u = member(session, email="slow@example.com")
    auth.request_password_reset(session, "slow@example.com", now=T0)
    token = reset_link_token(session, u)
    auth.check_reset_token(session, token, now=T0 + timedelta(minutes=59))
    with pytest.raises(NotFound) as exc:
        auth.reset_password(session, token, "brand new pass", now=T0 + timedelta(hours=1))
    assert exc.value.key == "auth.reset_expired"
    assert auth.verify_password(session.get(User, u.id).password_hash, PW)


def test_a_too_short_new_password_does_not_use_up_the_link(session):
    u = member(session, email="short@example.com")
    auth.request_password_reset(session, "short@example.com", now=T0)
    token = reset_link_token(session, u)
    with pytest.raises(InvalidInput):
        auth.reset_password(session, token, "short", now=T0)
    auth.reset_password(session, token, "long enough now", now=T0)


def test_reset_for_an_unknown_email_looks_the_same_and_sends_nothing(session):
    member(session, email="known@example.com")
    assert auth.request_password_reset(session, "ghost@example.com", ip="5.5.5.5", now=T0) is None
    assert count(session, Notification) == 0 and count(session, PasswordResetToken) == 0
    assert auth.request_password_reset(session, "known@example.com", ip="5.5.5.5", now=T0) is None
    assert count(session, Notification) == 1
    # both requests are recorded alike, so the throttle treats both addresses the same
    rows = session.exec(select(LoginAttempt).order_by(LoginAttempt.id)).all()
    assert [r.email for r in rows] == ["reset:ghost@example.com", "reset:known@example.com"]


@pytest.mark.parametrize("email", ["known@example.com", "ghost@example.com"])
def test_reset_requests_are_throttled_per_email_whether_it_exists_or_not(session, email):
    member(session, email="known@example.com")
    for i in range(3):
        auth.request_password_reset(session, email, ip=f"9.9.9.{i}", now=T0 + timedelta(minutes=i))
    with pytest.raises(Throttled):
        auth.request_password_reset(session, email, ip="9.9.9.99", now=T0 + timedelta(minutes=3))
    auth.request_password_reset(session, email, now=T0 + timedelta(minutes=16))


def test_reset_requests_are_throttled_per_ip(session):
    for i in range(20):
        auth.request_password_reset(session, f"spray{i}@example.com", ip="203.0.113.9", now=T0)
    with pytest.raises(Throttled):
        auth.request_password_reset(session, "spray99@example.com", ip="203.0.113.9", now=T0)
    auth.request_password_reset(session, "spray99@example.com", ip="203.0.113.10", now=T0)


def test_reset_requests_do_not_count_as_failed_sign_ins(session):
    member(session, email="mine@example.com")
    for i in range(3):
        auth.request_password_reset(session, "mine@example.com", ip="7.7.7.7", now=T0)
    for i in range(4):
        with pytest.raises(NotAuthenticated):
            auth.sign_in(session, "mine@example.com", "wrong-pass", ip="7.7.7.7", now=T0)
    auth.sign_in(session, "mine@example.com", PW, ip="7.7.7.7", now=T0)


def test_the_same_link_used_twice_at_once_sets_the_password_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        u = member(s, email="race@example.com")
        auth.request_password_reset(s, "race@example.com", now=T0)
        token = reset_link_token(s, u)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def worker(password):
        with Session(engine) as s:
            barrier.wait()
            try:
                auth.reset_password(s, token, password, now=T0)
                results.append("ok")
            except NotFound:
                results.append("refused")

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("first password", "second password")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused"]


def test_set_password_link_for_an_invited_user(session):
    u = member(session, email="invited@example.com", password=None)
    mail = auth.set_password_mail(session, u, now=T0)
    session.commit()
    assert mail.context["link"] == "http://localhost:3000/reset/" + mail.secret.mark
    assert notifications.MARK_PATTERN.fullmatch(mail.secret.mark) and mail.secret.mark != "__link_secret__"
    token = mail.secret.value
    info = auth.check_reset_token(session, token, now=T0 + timedelta(hours=71))
    assert info.purpose == "invite"
    with pytest.raises(NotFound):
        auth.check_reset_token(session, token, now=T0 + timedelta(hours=72))
    auth.reset_password(session, token, "my first password", now=T0 + timedelta(hours=1))
    auth.sign_in(session, "invited@example.com", "my first password", now=T0 + timedelta(hours=1))


# --- change password -------------------------------------------------------------------------

def test_change_password_ends_the_other_sessions_only(session):
    member(session, email="change@example.com")
    here, _ = auth.sign_in(session, "change@example.com", PW, now=T0)
    there, _ = auth.sign_in(session, "change@example.com", PW, now=T0)
    auth.change_password(session, here, PW, "a new password", now=T0)
    assert auth.resolve(session, here, now=T0).email == "change@example.com"
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, there, now=T0)
    auth.sign_in(session, "change@example.com", "a new password", now=T0)


def test_change_password_with_a_wrong_old_one_changes_nothing(session):
    u = member(session, email="guard@example.com")
    here, _ = auth.sign_in(session, "guard@example.com", PW, now=T0)
    there, _ = auth.sign_in(session, "guard@example.com", PW, now=T0)
    with pytest.raises(InvalidInput) as exc:
        auth.change_password(session, here, "not my password", "a new password", now=T0)
    assert exc.value.key == "auth.wrong_password" and exc.value.field == "old_password"
    with pytest.raises(InvalidInput) as exc:
        auth.change_password(session, here, PW, "short", now=T0)
    assert exc.value.field == "new_password"
    assert auth.verify_password(session.get(User, u.id).password_hash, PW)
    auth.resolve(session, there, now=T0)


def test_change_password_needs_a_live_session(session):
    member(session, email="gone@example.com")
    raw, _ = auth.sign_in(session, "gone@example.com", PW, now=T0)
    auth.sign_out(session, raw, now=T0)
    with pytest.raises(NotAuthenticated):
        auth.change_password(session, raw, PW, "a new password", now=T0)


# --- catalogs --------------------------------------------------------------------------------

def test_every_error_key_of_the_identity_services_has_ru_and_en_text():
    from noventiq_panel.services.identity import organisations, users, validation
    from noventiq_panel.services.notify import notifications

    keys = set()
    for module in (auth, users, organisations, validation, notifications):
        keys |= set(re.findall(r'key[=:] ?"((?:auth|users|organisations|notifications)\.[a-z_.]+)"',
                               Path(module.__file__).read_text(encoding="utf-8")))
    keys |= {"users.member_inactive", "auth.name_required"}  # passed through variables / defaults
    assert len(keys) > 20
    i18n = Path(auth.__file__).resolve().parents[2] / "i18n"
    for locale in ("ru", "en"):
        catalog = json.loads((i18n / locale / "auth.json").read_text(encoding="utf-8"))
        assert keys <= set(catalog), (locale, sorted(keys - set(catalog)))
    ru = json.loads((i18n / "ru" / "auth.json").read_text(encoding="utf-8"))
    en = json.loads((i18n / "en" / "auth.json").read_text(encoding="utf-8"))
    assert set(ru) == set(en)


def test_sign_ups_from_one_address_are_throttled_successful_or_not(session):
    from noventiq_panel.services.core.errors import Throttled

    ip = "203.0.113.9"
    for i in range(registration.REGISTER_MAX_PER_IP - 1):
        registration.register(session, email=f"new{i}@example.com", password="long-enough-1", name="Имя",
                      org_name=f"ООО «Новая {i}»", tax_id="", ip=ip)
    with pytest.raises(Conflict):  # a refused try (known e-mail) counts too
        registration.register(session, email="new0@example.com", password="long-enough-1", name="Имя",
                      org_name="ООО «Ещё»", tax_id="", ip=ip)
    orgs_before = len(session.exec(select(Organisation)).all())
    with pytest.raises(Throttled):
        registration.register(session, email="another@example.com", password="long-enough-1", name="Имя",
                      org_name="ООО «Другая»", tax_id="", ip=ip)
    assert len(session.exec(select(Organisation)).all()) == orgs_before
    # another address is not affected
    registration.register(session, email="other-ip@example.com", password="long-enough-1", name="Имя",
                  org_name="ООО «Другой адрес»", tax_id="", ip="198.51.100.7")
