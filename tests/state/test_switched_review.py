"""Review of b7b9551 (a tab acts only as the user and organisation it shows): sequences in which a
form sent from a page of one organisation still acts in the organisation switched to in another tab."""

from __future__ import annotations

import pytest
from reflex.istate.data import ReflexURL, RouterData
from sqlmodel import select

from noventiq_panel import i18n
from noventiq_panel.models import Membership, MicrosoftTenant, Organisation, Role, User
from noventiq_panel.services.identity import auth
from noventiq_panel.state.account import AccountState
from noventiq_panel.state.base import BaseState
from tests import factories

from tests.state.conftest import events, new_state, signed_in

PW = "correct-horse-1"
SWITCHED = i18n.t("error.switched_elsewhere", "ru")


@pytest.fixture
def world(session):
    """The owner of A is also an administrator of B (a reseller's accountant with two clients)."""
    a = factories.org(session, "ООО «Альфа»", tax_id="300000011")
    b = factories.org(session, "ООО «Бета»", tax_id="300000022")
    h = auth.hash_password(PW)
    owner = factories.user(session, a, Role.OWNER, email="owner@a.example", password_hash=h)
    factories.user(session, b, Role.OWNER, email="owner@b.example", password_hash=h)
    session.add(Membership(user_id=owner.id, org_id=b.id, role=Role.ADMIN))
    session.commit()
    return dict(a=a.id, b=b.id, owner=owner.id)


def at(state, path: str):
    state.router = RouterData(url=ReflexURL(f"http://localhost:3000{path}"))
    return state


def text(result) -> str:
    return " ".join(repr(e) for e in events(result))


def org(session, org_id) -> Organisation:
    session.expire_all()
    row = session.get(Organisation, org_id)
    session.commit()
    return row


async def _account_of_a_then_switch_to_b(session, world):
    """Tab 1 shows /account of A; tab 2 (same browser, same cookie) switches the session to B."""
    tab = at(new_state(AccountState), "/account")
    signed_in(tab, session, "owner@a.example", PW)
    await AccountState.load.fn(tab)
    assert tab.loaded and tab.details["name"] == "ООО «Альфа»"
    other_tab = new_state(BaseState)
    other_tab.session_secret = tab.session_secret
    await BaseState.switch_org.fn(other_tab, str(world["b"]))
    return tab


async def test_a_double_submitted_invitation_of_a_does_not_let_the_person_into_b(session, world):
    """The same with the invitation form: the person invited to A (twice submitted) becomes an
    administrator of B, a customer they were never meant to see."""
    tab = await _account_of_a_then_switch_to_b(session, world)
    form = {"email": "new.admin@a.example", "name": "Новый", "role": "admin"}
    first = await AccountState.invite.fn(tab, dict(form))
    assert SWITCHED in text(first)
    await AccountState.invite.fn(tab, dict(form))
    session.expire_all()
    invited = session.exec(select(Membership).join(User, User.id == Membership.user_id)
                           .where(User.email == "new.admin@a.example")).all()
    session.commit()
    assert [m.org_id for m in invited if m.org_id == world["b"]] == [], "invited into B from A's page"


async def run(gen) -> list:
    return [e async for e in gen]


async def test_a_tenant_form_refused_as_switched_elsewhere_says_so_and_reloads(session, world):
    """``submit_tenant`` catches every DomainError as an inline form error, SwitchedElsewhere too:
    no toast, no reload, and the page states were reset (``loaded`` False), so the tab is left on
    a spinner in the organisation it was moved to."""
    tab = await _account_of_a_then_switch_to_b(session, world)
    out = await run(AccountState.submit_tenant.fn(tab, {"tenant": "alfa.onmicrosoft.com", "accepted": "on"}))
    assert any("reload" in repr(e) for e in out), (tab.tenant_error, tab.loaded)


async def test_a_second_tenant_form_of_a_does_not_claim_the_tenant_for_b(session, world):
    """A's tenant form sent again (double click, or after the inline "switched elsewhere" message,
    since no reload follows): the first refusal moved the tab to B, so the second links A's tenant
    to B and accepts the Microsoft Customer Agreement in B's name."""
    tab = await _account_of_a_then_switch_to_b(session, world)
    form = {"tenant": "alfa.onmicrosoft.com", "accepted": "on"}
    await run(AccountState.submit_tenant.fn(tab, dict(form)))
    await run(AccountState.submit_tenant.fn(tab, dict(form)))
    session.expire_all()
    claims = session.exec(select(MicrosoftTenant).where(MicrosoftTenant.org_id == world["b"])).all()
    session.commit()
    assert claims == [], "A's tenant claimed for B from A's page"
