"""Issue 14: two-factor sign-in with time-based one-time codes (pyotp): enrolment, a wrong code,
a replayed code, a recovery code used twice, an organisation that requires it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlmodel import func, select

from noventiq_panel.models import AuthSession, RecoveryCode, Role, User
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated
from noventiq_panel.services.identity import auth, two_factor

from tests import factories as f

T0 = datetime(2026, 3, 10, 9, 0, 10, tzinfo=timezone.utc)
PW = "correct horse 1"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def enrolled(session, email="tf@example.com", org=None):
    org = org or f.org(session)
    user = f.user(session, org, Role.OWNER, email=email, password_hash=auth.hash_password(PW))
    enrolment = two_factor.start(session, user.id, now=T0)
    assert enrolment.uri.startswith("otpauth://totp/") and enrolment.qr_svg.startswith("data:image/svg+xml")
    codes = two_factor.confirm(session, user.id, code_at(enrolment.secret, T0), now=T0)
    return user, enrolment.secret, codes, org


def sessions(session) -> int:
    return session.exec(select(func.count()).select_from(AuthSession)).one()


def test_enrolment_needs_a_right_code_and_gives_ten_recovery_codes_kept_hashed(session):
    org = f.org(session)
    user = f.user(session, org, Role.OWNER, password_hash=auth.hash_password(PW))
    enrolment = two_factor.start(session, user.id, now=T0)
    with pytest.raises(InvalidInput):
        two_factor.confirm(session, user.id, "000000" if code_at(enrolment.secret, T0) != "000000" else "111111",
                           now=T0)
    session.refresh(user)
    assert user.totp_enabled_at is None
    codes = two_factor.confirm(session, user.id, code_at(enrolment.secret, T0), now=T0)
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = session.exec(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()
    assert len(stored) == 10 and not set(c.replace("-", "") for c in codes) & set(stored)
    assert two_factor.status(session, user.id) == (True, 10)


def test_sign_in_asks_for_the_code_refuses_a_wrong_one_and_a_replayed_one(session):
    user, secret, _codes, _org = enrolled(session)
    with pytest.raises(NotAuthenticated) as exc:
        auth.sign_in(session, "tf@example.com", PW, now=T0 + timedelta(minutes=1))
    assert exc.value.key == "auth.code_required" and sessions(session) == 0
    with pytest.raises(NotAuthenticated) as exc:
        auth.sign_in(session, "tf@example.com", PW, now=T0 + timedelta(minutes=1), code="12345x")
    assert exc.value.key == "auth.code_wrong" and sessions(session) == 0
    moment = T0 + timedelta(minutes=2)
    auth.sign_in(session, "tf@example.com", PW, now=moment, code=code_at(secret, moment))
    with pytest.raises(NotAuthenticated):  # the same code again (a replay, or a shoulder-surfer)
        auth.sign_in(session, "tf@example.com", PW, now=moment + timedelta(seconds=5), code=code_at(secret, moment))
    with pytest.raises(NotAuthenticated):  # an older code than the last used one
        auth.sign_in(session, "tf@example.com", PW, now=moment, code=code_at(secret, moment - timedelta(seconds=30)))
    assert sessions(session) == 1
    later = moment + timedelta(minutes=1)
    auth.sign_in(session, "tf@example.com", PW, now=later, code=code_at(secret, later))


def test_a_recovery_code_signs_in_once(session):
    _user, _secret, codes, _org = enrolled(session)
    auth.sign_in(session, "tf@example.com", PW, now=T0 + timedelta(minutes=1), code=codes[0].upper())
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "tf@example.com", PW, now=T0 + timedelta(minutes=2), code=codes[0])
    assert two_factor.status(session, _user.id) == (True, 9)


def test_wrong_codes_count_as_failed_sign_ins(session):
    enrolled(session)
    for i in range(5):
        with pytest.raises(NotAuthenticated):
            auth.sign_in(session, "tf@example.com", PW, ip="10.0.0.1", now=T0 + timedelta(seconds=i), code="000001")
    from noventiq_panel.services.core.errors import Throttled

    with pytest.raises(Throttled):
        auth.sign_in(session, "tf@example.com", PW, ip="10.0.0.1", now=T0 + timedelta(seconds=9), code="000002")


def test_an_organisation_that_requires_it_gives_no_access_until_a_member_enrols(session):
    owner, _secret, _codes, org = enrolled(session, "owner@example.com")
    member = f.user(session, org, Role.ADMIN, email="member@example.com", password_hash=auth.hash_password(PW))
    two_factor.set_required(session, Actor(user_id=owner.id, org_id=org.id), True)
    with pytest.raises(Forbidden) as exc:
        authz.can_read(session, Actor(user_id=member.id, org_id=org.id))
    assert exc.value.key == "error.two_factor_required"
    raw, _ = auth.sign_in(session, "member@example.com", PW, now=T0)
    assert auth.resolve(session, raw, now=T0).two_factor_needed
    e = two_factor.start(session, member.id, now=T0)
    two_factor.confirm(session, member.id, code_at(e.secret, T0), now=T0)
    assert authz.can_read(session, Actor(user_id=member.id, org_id=org.id)).role == Role.ADMIN
    with pytest.raises(Conflict):  # while the organisation requires it, it stays on
        two_factor.disable(session, member.id, code_at(e.secret, T0 + timedelta(minutes=1)),
                           now=T0 + timedelta(minutes=1))


def test_only_an_owner_who_uses_it_may_require_it(session):
    org = f.org(session)
    owner = f.user(session, org, Role.OWNER, password_hash=auth.hash_password(PW))
    admin = f.user(session, org, Role.ADMIN)
    with pytest.raises(Forbidden):
        two_factor.set_required(session, Actor(user_id=admin.id, org_id=org.id), True)
    with pytest.raises(Conflict) as exc:  # the Owner would lock themselves out
        two_factor.set_required(session, Actor(user_id=owner.id, org_id=org.id), True)
    assert exc.value.key == "two_factor.enrol_first"
    with pytest.raises(InvalidInput):
        two_factor.set_required(session, Actor(user_id=owner.id, org_id=org.id), "yes")


def test_turning_it_off_needs_a_code(session):
    user, secret, codes, _org = enrolled(session)
    with pytest.raises(InvalidInput):
        two_factor.disable(session, user.id, "000000" if code_at(secret, T0 + timedelta(minutes=3)) != "000000"
                           else "111111", now=T0 + timedelta(minutes=3))
    assert two_factor.status(session, user.id)[0]
    two_factor.disable(session, user.id, codes[1], now=T0 + timedelta(minutes=3))
    assert two_factor.status(session, user.id) == (False, 0)
    session.expire_all()
    assert session.get(User, user.id).totp_secret is None
    auth.sign_in(session, "tf@example.com", PW, now=T0 + timedelta(minutes=4))
