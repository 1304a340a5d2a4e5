"""The base state: who is signed in, where a sign-in may return to, what a signed-out tab sees."""

from __future__ import annotations

import pytest

from noventiq_panel.models import Role
from noventiq_panel.services.identity import auth
from noventiq_panel.state.base import BaseState, safe_next
from noventiq_panel.state.home import HomeState
from tests import factories

from tests.state.conftest import events, is_redirect_to_login, new_state, signed_in

PW = "correct-horse-1"


@pytest.mark.parametrize("target,expected", [
    (None, "/"), ("", "/"), ("/billing", "/billing"), ("/billing?tab=documents", "/billing?tab=documents"),
    ("%2Fprofile", "/profile"), ("https://evil.example/", "/"), ("//evil.example/x", "/"),
    ("/\\evil.example", "/"), ("javascript:alert(1)", "/"), ("/login", "/"), ("/reset/abc", "/"),
    ("/%2F%2Fevil.example", "/"),
])
def test_sign_in_returns_only_to_a_page_of_the_panel(target, expected):
    assert safe_next(target) == expected


async def test_guard_sends_a_signed_out_tab_to_the_sign_in_page(session):
    state = new_state(BaseState)
    assert is_redirect_to_login(await BaseState.guard.fn(state))
    state.session_secret = "made-up"
    assert is_redirect_to_login(await BaseState.guard.fn(state))
    assert state.signed_in is False


async def test_guard_fills_the_frame_from_the_session_not_from_the_browser(session):
    org = factories.org(session, "ООО «Гамма»", tax_id="300000033")
    factories.user(session, org, Role.FINANCE, email="fm@g.example", name="Фин Менеджер",
                   password_hash=auth.hash_password(PW))
    state = new_state(BaseState)
    signed_in(state, session, "fm@g.example", PW)
    state.role = "owner"  # a forged view var changes nothing server-side
    assert events(await BaseState.guard.fn(state)) == []
    assert (state.user_email, state.org_name, state.role, state._role) == ("fm@g.example", "ООО «Гамма»", "finance",
                                                                           "finance")
    assert state.can_write is False


async def test_switching_to_an_organisation_of_someone_else_is_refused(session):
    mine = factories.org(session, "ООО «Моя»", tax_id="300000044")
    theirs = factories.org(session, "ООО «Чужая»", tax_id="300000055")
    factories.user(session, mine, Role.OWNER, email="me@m.example", password_hash=auth.hash_password(PW))
    state = new_state(BaseState)
    signed_in(state, session, "me@m.example", PW)
    result = await BaseState.switch_org.fn(state, str(theirs.id))
    assert "toast" in repr(events(result))
    await BaseState.guard.fn(state)
    assert state.org_name == "ООО «Моя»"
    for bad in ("x", None, {"id": theirs.id}, "1e3"):
        assert "toast" in repr(events(await BaseState.switch_org.fn(state, bad)))


async def test_home_handler_refuses_a_forged_session(session):
    state = new_state(HomeState)
    state.session_secret = "forged"
    assert is_redirect_to_login(await HomeState.load.fn(state))
    assert state.loaded is False and state.balance == ""


async def test_pages_send_a_user_who_must_enrol_in_two_factor_to_the_profile(session):
    """Pages with a load of their own run no separate guard: the load's refusal (the services
    refuse the organisation's data until the user enrols) becomes the redirect to the profile."""
    from noventiq_panel.state.analytics import AnalyticsState
    from noventiq_panel.state.help import HelpState
    from noventiq_panel.state.subscriptions import SubscriptionsState

    org = factories.org(session, "ООО «Дельта»", tax_id="300000066")
    factories.user(session, org, Role.OWNER, email="tf@d.example", password_hash=auth.hash_password(PW))
    org.require_two_factor = True
    session.commit()
    for cls in (HomeState, SubscriptionsState, AnalyticsState, HelpState):
        state = new_state(cls)
        signed_in(state, session, "tf@d.example", PW)
        assert "/profile?two_factor=required" in repr(events(await cls.load.fn(state))), cls


def test_a_table_given_the_same_rows_again_is_not_sent_again_but_a_flag_always_is():
    """A page load that finds the same data assigns the same lists and dicts: they stay out of the
    event's answer (they are what makes it large). A scalar assigned again is sent again: the
    browser may have changed it on its own (a dialog closed with Esc)."""
    state = new_state(HomeState)
    state.invitations = [{"id": "1", "org": "A"}]
    state.loaded = True
    state._clean()
    state.invitations = [{"id": "1", "org": "A"}]  # equal, a new list
    state.loaded = True
    assert "invitations" not in state.dirty_vars and "loaded" in state.dirty_vars
    state.invitations = [{"id": "1", "org": "B"}]
    assert "invitations" in state.dirty_vars
    state._clean()
    state.invitations.append({"id": "2", "org": "C"})  # changed in place: Reflex's proxy marks it
    assert "invitations" in state.dirty_vars and len(state.invitations) == 2
