"""Forged events against /account: the handlers refuse what the role or the organisation does not
allow, whatever the browser sends (the controls being hidden is not the guard)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from noventiq_panel.models import Membership, Organisation, Role, User
from noventiq_panel.services.identity import auth
from noventiq_panel.state.account import AccountState
from noventiq_panel.state.base import BaseState
from tests import factories

from tests.state.conftest import events, is_redirect_to_login, new_state, signed_in

PW = "correct-horse-1"


@pytest.fixture
def world(session):
    """Two organisations; the first has an owner, an admin, a financial manager and a colleague."""
    a = factories.org(session, "ООО «Альфа»", tax_id="300000011")
    b = factories.org(session, "ООО «Бета»", tax_id="300000022")
    h = auth.hash_password(PW)
    owner = factories.user(session, a, Role.OWNER, email="owner@a.example", password_hash=h)
    admin = factories.user(session, a, Role.ADMIN, email="admin@a.example", password_hash=h)
    finance = factories.user(session, a, Role.FINANCE, email="finance@a.example", password_hash=h)
    colleague = factories.user(session, a, Role.ADMIN, email="colleague@a.example", password_hash=h)
    other = factories.user(session, b, Role.OWNER, email="owner@b.example", password_hash=h)
    b_admin = factories.user(session, b, Role.ADMIN, email="admin@b.example", password_hash=h)
    return dict(a=a, b=b, owner=owner, admin=admin, finance=finance, colleague=colleague, other=other,
                b_admin=b_admin)


def membership(session, user, org) -> Membership:
    """Read fresh, then end the read transaction: on SQLite an open transaction of the test would
    hold the write lock (BEGIN IMMEDIATE) that the handler's own session waits for."""
    session.expire_all()
    row = session.exec(select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)).one()
    session.commit()
    return row


def org_name(session, org) -> str:
    session.expire_all()
    name = session.get(Organisation, org.id).name
    session.commit()
    return name


def toast_text(result) -> str:
    return " ".join(repr(e) for e in events(result))


async def test_financial_manager_cannot_edit_the_organisation_details(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "finance@a.example", PW)
    result = await AccountState.save_details.fn(state, {"name": "Захвачено", "tax_id": "", "address": "",
                                                         "phone": "", "bank_details": ""})
    assert "toast" in toast_text(result)
    assert org_name(session, world["a"]) == "ООО «Альфа»"


async def test_financial_manager_cannot_invite(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "finance@a.example", PW)
    await AccountState.invite.fn(state, {"email": "intruder@x.example", "name": "Intruder", "role": "owner"})
    assert session.exec(select(User).where(User.email == "intruder@x.example")).first() is None
    session.commit()


async def test_financial_manager_cannot_change_roles_or_deactivate(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "finance@a.example", PW)
    target = membership(session, world["colleague"], world["a"])
    await AccountState.change_role.fn(state, str(target.id), "finance")
    await AccountState.deactivate.fn(state, str(target.id))
    own = membership(session, world["finance"], world["a"])
    await AccountState.change_role.fn(state, str(own.id), "owner")  # promote oneself
    target = membership(session, world["colleague"], world["a"])
    own = membership(session, world["finance"], world["a"])
    assert (target.role, target.is_active) == (Role.ADMIN, True)
    assert own.role == Role.FINANCE


async def test_financial_manager_sees_the_data_read_only(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "finance@a.example", PW)
    await AccountState.load.fn(state)
    assert state.loaded and state.details["name"] == "ООО «Альфа»"
    assert {m["email"] for m in state.members} == {"owner@a.example", "admin@a.example", "finance@a.example",
                                                  "colleague@a.example"}
    assert state.role == "finance" and state.can_write is False


async def test_admin_cannot_touch_a_membership_of_another_organisation(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "admin@a.example", PW)
    foreign = membership(session, world["b_admin"], world["b"])
    result = await AccountState.deactivate.fn(state, str(foreign.id))
    assert "toast" in toast_text(result)
    await AccountState.change_role.fn(state, str(foreign.id), "finance")
    foreign = membership(session, world["b_admin"], world["b"])
    assert (foreign.role, foreign.is_active) == (Role.ADMIN, True)


async def test_account_data_never_shows_another_organisation(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "owner@b.example", PW)
    await AccountState.load.fn(state)
    assert state.details["name"] == "ООО «Бета»"
    assert {m["email"] for m in state.members} == {"owner@b.example", "admin@b.example"}
    # View rows carry what the page shows, nothing like hashes or user ids.
    assert all("password" not in key and "hash" not in key for m in state.members for key in m)


@pytest.mark.parametrize("bad", ["abc", "", "-1", "1.5", "9" * 40, {"id": 1}, ["1"], None, True])
async def test_garbage_ids_are_refused_without_a_crash(session, world, bad):
    state = new_state(AccountState)
    signed_in(state, session, "owner@a.example", PW)
    result = await AccountState.deactivate.fn(state, bad)
    assert "toast" in toast_text(result)
    assert all(m.is_active for m in session.exec(select(Membership)).all())
    session.commit()


async def test_unknown_role_is_refused(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "owner@a.example", PW)
    target = membership(session, world["colleague"], world["a"])
    await AccountState.change_role.fn(state, str(target.id), "superuser")
    assert membership(session, world["colleague"], world["a"]).role == Role.ADMIN


async def test_signed_out_events_change_nothing_and_go_to_sign_in(session, world):
    state = new_state(AccountState)
    state.session_secret = "forged-secret"
    target = membership(session, world["colleague"], world["a"])
    result = await AccountState.deactivate.fn(state, str(target.id))
    assert is_redirect_to_login(result)
    assert membership(session, world["colleague"], world["a"]).is_active


async def test_owner_can_edit_and_deactivate(session, world):
    """The positive control: the same handlers do work for a role that may."""
    state = new_state(AccountState)
    signed_in(state, session, "owner@a.example", PW)
    await AccountState.save_details.fn(state, {"name": "ООО «Альфа Плюс»", "tax_id": "300000011",
                                               "address": "Ташкент", "phone": "", "bank_details": ""})
    assert org_name(session, world["a"]) == "ООО «Альфа Плюс»"
    target = membership(session, world["colleague"], world["a"])
    await AccountState.deactivate.fn(state, str(target.id))
    assert membership(session, world["colleague"], world["a"]).is_active is False


async def test_sign_out_forgets_every_page_state(session, world):
    state = new_state(AccountState)
    signed_in(state, session, "owner@a.example", PW)
    await AccountState.load.fn(state)
    assert state.members
    base = state.parent_state
    result = await BaseState.sign_out.fn(base)
    assert is_redirect_to_login(result)
    assert state.members == [] and state.details == {} and state.loaded is False
    assert base.session_secret == "" and base.signed_in is False and base.user_email == ""
    assert base._user_id is None and base._org_id is None


async def test_the_owner_enters_the_e_invoice_details_on_the_account_page(session, world):
    """The ЭСФ requisites are the customer's to enter (checked formats; the contract is support's)."""
    state = new_state(AccountState)
    signed_in(state, session, "owner@a.example", PW)
    await AccountState.load.fn(state)
    form = {"name": "ООО «Альфа»", "tax_id": state.details["tax_id"], "address": "Ташкент", "phone": "",
            "bank_details": "", "vat_reg_code": "326060012345", "bank_mfo": "00873",
            "bank_account": "20208000900123456001", "oked": "62010", "director": "Каримов А."}

    def stored():
        session.expire_all()
        org = session.get(Organisation, world["a"].id)
        values = (org.vat_reg_code, org.bank_mfo, org.bank_account, org.oked, org.director, org.contract_no)
        session.rollback()  # no transaction left open to block the handler's (SQLite)
        return values

    bad = await AccountState.save_details.fn(state, {**form, "bank_mfo": "８７３"})  # fullwidth digits
    assert "toast" in toast_text(bad)
    assert stored() == ("", "", "", "", "", "")  # nothing changed
    await AccountState.save_details.fn(state, form)
    assert stored() == ("326060012345", "00873", "20208000900123456001", "62010", "Каримов А.", "")
    assert state.details["bank_account"] == "20208000900123456001"
    # a contract number in a forged form is not taken: the form has no such field
    await AccountState.save_details.fn(state, {**form, "contract_no": "FAKE-1"})
    assert stored()[-1] == ""
