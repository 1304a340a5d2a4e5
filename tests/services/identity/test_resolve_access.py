"""``auth.resolve`` hands the caller's access to the unit of work it runs in (``authz.remember_access``),
so that a page's services do not read the membership, the user and the organisation a second time.
What it hands over must be exactly what the check proper would answer, for every combination of
membership, user and organisation; and nothing it vouched for may outlive a change."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlmodel import Session, select

from noventiq_panel.models import Membership, Role
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.errors import DomainError, Forbidden
from noventiq_panel.services.identity import auth

from tests.factories import org, user

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _outcome(session: Session, actor: authz.Actor, check) -> str:
    try:
        return f"ok:{check(session, actor).role}"
    except DomainError as exc:
        return f"{type(exc).__name__}:{exc.key}"


class _Queries:
    def __init__(self, session: Session):
        self.n = 0
        self._engine = session.get_bind()

    def _count(self, *_args) -> None:
        self.n += 1

    def __enter__(self):
        event.listen(self._engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc):
        event.remove(self._engine, "before_cursor_execute", self._count)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.sampled_from(list(Role)), active=st.booleans(), awaiting=st.booleans(), totp=st.booleans(),
       org_2fa=st.booleans(), check=st.sampled_from(["can_read", "can_write", "can_manage_owners"]))
def test_resolve_hands_over_exactly_the_access_the_check_would_give(engine, role, active, awaiting, totp, org_2fa,
                                                                     check):
    fn = getattr(authz, check)
    with Session(engine, expire_on_commit=False) as s:
        a = org(s, "A", require_two_factor=org_2fa)
        b = org(s, "B")
        u = user(s, None, totp_enabled_at=NOW if totp else None)
        s.add(Membership(user_id=u.id, org_id=a.id, role=role, is_active=active, awaiting_consent=awaiting))
        s.add(Membership(user_id=u.id, org_id=b.id, role=Role.ADMIN))  # resolve succeeds either way
        raw = auth._start_session(s, u, a.id, "", NOW)
        s.commit()
        actor = authz.Actor(user_id=u.id, org_id=a.id)
    with Session(engine, expire_on_commit=False) as fresh:
        expected = _outcome(fresh, actor, fn)
        fresh.rollback()
    with Session(engine, expire_on_commit=False) as s:
        auth.resolve(s, raw, now=NOW)
        with _Queries(s) as queries:
            got = _outcome(s, actor, fn)
        s.rollback()
    assert got == expected
    if active and not awaiting and (totp or not org_2fa):
        assert queries.n == 0  # answered from what resolve read


def test_what_resolve_vouched_for_is_forgotten_when_the_unit_of_work_changes_it(session):
    a = org(session, "A")
    u = user(session, a, Role.OWNER)
    raw = auth._start_session(session, u, a.id, "", NOW)
    session.commit()
    actor = authz.Actor(user_id=u.id, org_id=a.id)
    auth.resolve(session, raw, now=NOW)
    membership = session.exec(select(Membership).where(Membership.user_id == u.id)).one()
    membership.role = Role.FINANCE  # not yet flushed: the check must see it as the query would
    with pytest.raises(Forbidden) as err:
        authz.can_write(session, actor)
    assert err.value.key == "error.read_only"
    session.rollback()


def test_a_touched_session_hands_over_nothing(session):
    """resolve commits when it touches the session row: the access is checked again afterwards, in
    the caller's own transaction, not taken from the one that ended."""
    a = org(session, "A")
    u = user(session, a, Role.OWNER)
    raw = auth._start_session(session, u, a.id, "", NOW)
    session.commit()
    auth.resolve(session, raw, now=NOW + auth.TOUCH_INTERVAL)
    with _Queries(session) as queries:
        assert authz.can_write(session, authz.Actor(user_id=u.id, org_id=a.id)).role == Role.OWNER
    assert queries.n > 0
    session.rollback()
