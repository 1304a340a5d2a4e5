"""Issue 14, sequences an attacker review found against the first fixes (each failed before its
fix): invitations that an unrelated password link accepted, a tax id released from an invoiced
organisation, a verification that proved a stranger's password, a link typed into a name shown as
the set-password link, and an invitee's name leaking through two-factor events."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlmodel import select

from noventiq_panel.models import Membership, Notification, Organisation, Payment, Role, User
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated
from noventiq_panel.services.identity import auth, organisations, registration, two_factor, users, verification
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.reporting import activity
from noventiq_panel.services.subscriptions import guest_orders

from tests import factories as f

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
VICTIM = "306512874"
VICTIM_PW = "victim password 1"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def last_mail(session, email, kind):
    return session.exec(select(Notification).where(Notification.to_email == email, Notification.kind == kind)
                        .order_by(Notification.id.desc())).first()


def attacker_invites(session, role="admin"):
    a_org = f.org(session, name="ООО «Жертва»")  # named like the victim's company
    attacker = f.user(session, a_org, Role.OWNER)
    users.invite(session, f.actor(attacker, a_org), email="boss@victim.uz", name="Boss", role=role, now=T0)
    return a_org, attacker


# --- an invitation is accepted through its own link only ------------------------------------

def test_a_password_reset_does_not_accept_an_invitation_the_user_never_answered(session):
    a_org, _ = attacker_invites(session, role="owner")
    auth.request_password_reset(session, "boss@victim.uz", now=T0 + timedelta(days=5))
    token = f.mailed_token(session, last_mail(session, "boss@victim.uz", "password_reset"))
    user = auth.reset_password(session, token, VICTIM_PW, now=T0 + timedelta(days=5))
    with pytest.raises(NotAuthenticated) as exc:
        auth.sign_in(session, "boss@victim.uz", VICTIM_PW, now=T0 + timedelta(days=5))
    assert exc.value.key == "auth.invitation_waiting"
    with pytest.raises(Forbidden):
        authz.can_read(session, Actor(user_id=user.id, org_id=a_org.id))


def test_the_resellers_welcome_link_opens_the_customers_own_organisation_not_an_earlier_invitation(session):
    a_org, attacker = attacker_invites(session)
    v_org, _ = organisations.create_customer(session, org_name="ООО «Жертва»", tax_id=VICTIM,
                                             owner_email="boss@victim.uz", owner_name="Boss", now=T0)
    token = f.mailed_token(session, last_mail(session, "boss@victim.uz", "welcome"))
    auth.reset_password(session, token, VICTIM_PW, now=T0)
    raw, _ = auth.sign_in(session, "boss@victim.uz", VICTIM_PW, ip="203.0.113.7", now=T0)
    info = auth.resolve(session, raw, now=T0)
    assert info.org_id == v_org.id and [o["id"] for o in info.orgs] == [v_org.id]
    rows, _ = activity.list_activity(session, f.actor(attacker, a_org))  # nothing of the victim
    assert not any(r.ip == "203.0.113.7" for r in rows)


def test_the_invitations_own_link_accepts_it(session):
    a_org, _ = attacker_invites(session)
    mail = last_mail(session, "boss@victim.uz", "invite")
    user = auth.reset_password(session, f.mailed_token(session, mail), VICTIM_PW, now=T0)
    authz.can_read(session, Actor(user_id=user.id, org_id=a_org.id))
    m = session.exec(select(Membership).where(Membership.user_id == user.id)).one()
    assert not m.awaiting_consent


def test_a_pending_invitee_appears_in_no_trail_of_the_inviting_organisation(session):
    a_org, attacker = attacker_invites(session)
    v_org = f.org(session, name="V")
    victim = f.user(session, v_org, Role.OWNER, email="boss2@victim.uz", name="Secret Name")
    users.invite(session, f.actor(attacker, a_org), email="boss2@victim.uz", name="x", role="admin", now=T0)
    enrolment = two_factor.start(session, victim.id)
    two_factor.confirm(session, victim.id, pyotp.TOTP(enrolment.secret).now())
    rows, _ = activity.list_activity(session, f.actor(attacker, a_org))
    assert not any(r.user_name == "Secret Name" for r in rows)


# --- a tax id on an issued invoice stays where it is ----------------------------------------

@pytest.fixture
def plans(session):
    p = f.catalog(session)
    f.usd_rate(session, date(2020, 1, 1))
    return p


def test_an_unpaid_guest_invoice_holds_no_tax_id_and_is_void_once_the_tax_id_is_claimed(session, plans):
    """Re-review finding: an unproven guest order with an invoice nobody paid held a real
    company's tax id for ever. It holds nothing; its unpaid invoice is cancelled when the tax id
    goes to a claimant, and the first to prove a mailbox can take it back by editing details."""
    res = guest_orders.guest_order(session, email="x@evil.example", name="X", org_name="ООО «Жертва»",
                                   tax_id=VICTIM, plan_id=plans["basic-m"].id, quantity=1, ip="1.1.1.1", now=T0)
    real = registration.register(session, email="boss@victim.uz", password=VICTIM_PW, name="Boss",
                                 org_name="ООО «Жертва»", tax_id=VICTIM, now=T0 + timedelta(days=60))
    session.expire_all()
    assert session.get(Organisation, res.org_id).tax_id == ""
    invoice = session.exec(select(Payment).where(Payment.number == res.invoice_number)).one()
    assert invoice.status == "cancelled"
    verification.verify(session, f.mailed_token(session, last_mail(session, "boss@victim.uz", "verify_email")),
                        VICTIM_PW, now=T0 + timedelta(days=60))
    with pytest.raises(Conflict):  # the proven holder keeps it against the guest
        guest_orders.guest_order(session, email="y@evil.example", name="Y", org_name="ООО «Жертва»", tax_id=VICTIM,
                                 plan_id=plans["basic-m"].id, quantity=1, ip="1.1.1.2", now=T0 + timedelta(days=61))
    assert real.id


def test_a_tax_id_on_a_paid_invoice_is_held(session, plans):
    from noventiq_panel.services.billing import payments

    res = guest_orders.guest_order(session, email="boss@victim.uz", name="Boss", org_name="ООО «Жертва»",
                                   tax_id=VICTIM, plan_id=plans["basic-m"].id, quantity=1, ip="1.1.1.1", now=T0)
    payments.confirm_payment(session, res.invoice_number, now=T0)
    with pytest.raises(Conflict) as exc:
        registration.register(session, email="sq@evil.example", password="long enough 1", name="S",
                              org_name="ООО «Жертва»", tax_id=VICTIM, now=T0)
    assert exc.value.key == "organisations.tax_id_taken"


# --- verification proves the password's owner read the mailbox -------------------------------

def test_the_owner_of_an_address_cannot_prove_a_strangers_account_of_it(session):
    """The attacker signs up with the victim's address; the victim, asked to confirm, does not
    know the attacker's password: the account stays unproven and the reseller's create-customer
    drops the attacker's password."""
    registration.register(session, email="boss@victim.uz", password="attacker pass 1", name="Boss",
                          org_name="ООО «Жертва» — подтвердите", now=T0)
    token = f.mailed_token(session, last_mail(session, "boss@victim.uz", "verify_email"))
    for guess in ("", "victim's own password", None):
        with pytest.raises(InvalidInput):
            verification.verify(session, token, guess, now=T0)
    assert session.exec(select(User).where(User.email == "boss@victim.uz")).one().email_verified_at is None
    v_org, _ = organisations.create_customer(session, org_name="ООО «Жертва»", tax_id=VICTIM,
                                             owner_email="boss@victim.uz", owner_name="Boss", now=T0)
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "boss@victim.uz", "attacker pass 1", now=T0 + timedelta(hours=1))


def test_wrong_passwords_at_verification_count_as_failed_sign_ins(session):
    registration.register(session, email="me@example.com", password="my password 1", name="Me", org_name="O", now=T0)
    token = f.mailed_token(session, last_mail(session, "me@example.com", "verify_email"))
    from noventiq_panel.config import get_settings
    from noventiq_panel.services.core.errors import Throttled

    for _ in range(get_settings().login_max_failures):
        with pytest.raises(InvalidInput):
            verification.verify(session, token, "wrong guess 1", ip="198.51.100.1", now=T0)
    with pytest.raises(Throttled):
        verification.verify(session, token, "my password 1", ip="198.51.100.1", now=T0)


# --- the operator's CLI prints the panel's own link only ---------------------------------------

def test_a_link_typed_into_a_name_never_passes_for_the_set_password_link(session):
    registration.register(session, email="boss@victim.uz", password="long enough 1",
                          name="Boss https://evil.example/reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAA", org_name="X", now=T0)
    organisations.create_customer(session, org_name="ООО «Жертва»", tax_id=VICTIM, owner_email="boss@victim.uz",
                                  owner_name="Boss", now=T0)
    mail = last_mail(session, "boss@victim.uz", "welcome")
    token = f.mailed_token(session, mail)
    assert notifications.link_to_send(session, mail) == "http://localhost:3000/reset/" + token


def test_an_invitee_who_missed_the_link_gets_a_fresh_one_and_joins_through_it(session):
    """Re-review finding: a new invitee whose link expired (or who reset the password first) could
    neither join nor be invited again. Inviting again sends a fresh link bound to the invitation."""
    a_org, owner = attacker_invites(session)
    auth.request_password_reset(session, "boss@victim.uz", now=T0 + timedelta(days=5))
    token = f.mailed_token(session, last_mail(session, "boss@victim.uz", "password_reset"))
    auth.reset_password(session, token, VICTIM_PW, now=T0 + timedelta(days=5))
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "boss@victim.uz", VICTIM_PW, now=T0 + timedelta(days=5))
    users.invite(session, f.actor(owner, a_org), email="boss@victim.uz", name="Boss", role="admin",
                 now=T0 + timedelta(days=6))
    assert len(session.exec(select(Membership).where(Membership.org_id == a_org.id,
                                                     Membership.awaiting_consent == True)).all()) == 1  # noqa: E712
    fresh = f.mailed_token(session, last_mail(session, "boss@victim.uz", "invite"))
    auth.reset_password(session, fresh, "new password 22", now=T0 + timedelta(days=6))
    raw, _ = auth.sign_in(session, "boss@victim.uz", "new password 22", now=T0 + timedelta(days=6))
    assert auth.resolve(session, raw, now=T0 + timedelta(days=6)).org_id == a_org.id
