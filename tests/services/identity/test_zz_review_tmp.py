from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from argon2 import PasswordHasher
from sqlmodel import select

from noventiq_panel.models import Membership, Notification, Organisation, Payment, Role, User, StatementLine
from noventiq_panel.services.billing import invoices, payments, statement_import
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import Conflict, Forbidden
from noventiq_panel.services.identity import auth, organisations, registration, users, verification
from noventiq_panel.services.subscriptions import guest_orders

from tests import factories as f

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
VICTIM = "306512874"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def last_mail(session, email, kind):
    return session.exec(select(Notification).where(Notification.to_email == email, Notification.kind == kind)
                        .order_by(Notification.id.desc())).first()


# 1. A new-user invitation is "accepted" by ANY password set: a reset, or the reseller's welcome link
def test_invitation_is_accepted_by_an_unrelated_password_reset(session):
    a_org = f.org(session, name="ООО «Жертва»")           # attacker's org, named like the victim's company
    attacker = f.user(session, a_org, Role.OWNER)
    users.invite(session, f.actor(attacker, a_org), email="boss@victim.uz", name="Boss", role="owner", now=T0)
    # victim never opens the invite; later tries to sign up -> "email taken" -> forgot password
    auth.request_password_reset(session, "boss@victim.uz", now=T0 + timedelta(days=5))
    tok = f.mailed_token(session, last_mail(session, "boss@victim.uz", "password_reset"))
    auth.reset_password(session, tok, "victim password 1", now=T0 + timedelta(days=5))
    raw, victim = auth.sign_in(session, "boss@victim.uz", "victim password 1", now=T0 + timedelta(days=5))
    info = auth.resolve(session, raw, now=T0 + timedelta(days=5))
    # the victim never consented to the invitation, yet works as Owner in the attacker's org
    assert info.org_id != a_org.id, "victim landed in attacker's organisation without consenting"


def test_reseller_welcome_lands_invited_user_in_attackers_org(session):
    a_org = f.org(session, name="ООО «Жертва»")
    attacker = f.user(session, a_org, Role.OWNER)
    users.invite(session, f.actor(attacker, a_org), email="boss@victim.uz", name="Boss", role="admin", now=T0)
    v_org, v_user = organisations.create_customer(session, org_name="ООО «Жертва»", tax_id=VICTIM,
                                                  owner_email="boss@victim.uz", owner_name="Boss", now=T0)
    tok = f.mailed_token(session, last_mail(session, "boss@victim.uz", "welcome"))
    auth.reset_password(session, tok, "victim password 1", now=T0)
    raw, _ = auth.sign_in(session, "boss@victim.uz", "victim password 1", now=T0)
    info = auth.resolve(session, raw, now=T0)
    assert info.org_id == v_org.id, "first sign-in opens the attacker's org"


# 2. Tax id released from an unproven guest-order org that has an invoice carrying it: the victim
#    can never take it back (requisites locked), the squatter keeps it
@pytest.fixture
def plans(session):
    p = f.catalog(session)
    f.usd_rate(session, date(2020, 1, 1))
    return p


def test_release_from_invoiced_guest_org_is_permanent(session, plans):
    res = guest_orders.guest_order(session, email="boss@victim.uz", name="Boss", org_name="ООО «Жертва»",
                                   tax_id=VICTIM, plan_id=plans["basic-m"].id, quantity=5, ip="1.1.1.1", now=T0)
    assert res.invoice_number
    # the squatter signs up with the victim's tax id and verifies their own mailbox
    sq = registration.register(session, email="sq@evil.example", password="long enough 1", name="S",
                               org_name="ООО «Жертва»", tax_id=VICTIM, now=T0)
    verification.verify(session, f.mailed_token(session, last_mail(session, "sq@evil.example", "verify_email")), now=T0)
    # the victim sets the password from the welcome mail (mailbox proven) and asks for its tax id back
    tok = f.mailed_token(session, last_mail(session, "boss@victim.uz", "welcome"))
    v = auth.reset_password(session, tok, "victim password 1", now=T0)
    v_org = session.get(Organisation, res.org_id)
    assert v_org.tax_id == VICTIM, "the victim's invoiced org lost its tax id to a later sign-up"


def test_victim_payment_of_own_invoice_not_matched_after_release(session, plans):
    res = guest_orders.guest_order(session, email="boss@victim.uz", name="Boss", org_name="ООО «Жертва»",
                                   tax_id=VICTIM, plan_id=plans["basic-m"].id, quantity=5, ip="1.1.1.1", now=T0)
    registration.register(session, email="sq@evil.example", password="long enough 1", name="S",
                          org_name="ООО «Жертва»", tax_id=VICTIM, now=T0)
    csv = (f"date,amount,payer_tax_id,purpose\n2026-03-11,{res.invoice_amount},{VICTIM},Оплата {res.invoice_number}\n").encode()
    report = statement_import.import_statement(session, csv, now=T0)
    assert [l.status for l in report.lines] == ["imported"], report.lines


# 3. Same money credited twice: operator confirms a partial payment by hand, then assigns its statement line
def test_operator_partial_confirm_then_assign_same_line_double_credits(session):
    o = f.org(session, name="ООО «Ромашка»", tax_id="300000001")
    u = f.user(session, o, Role.OWNER)
    p = invoices.request_topup(session, f.actor(u, o), "1000000", now=T0)
    # bank line arrives: 400000 of 1000000 -> review
    csv = f"date,amount,payer_tax_id,purpose\n2026-03-11,400000,300000001,{p.number}\n".encode()
    statement_import.import_statement(session, csv, now=T0)
    # operator, told by the customer, confirms the 400000 by hand
    payments.confirm_payment(session, p.number, amount="400000", now=T0)
    # then works the review list: the line is the same money
    [line] = statement_import.review_list(session)
    statement_import.assign(session, line.id, p.number, now=T0)
    assert ledger.balance(session, o.id) == Decimal("400000.00"), ledger.balance(session, o.id)


def test_release_victim_cannot_retake_even_before_squatter_verifies(session, plans):
    res = guest_orders.guest_order(session, email="boss@victim.uz", name="Boss", org_name="ООО «Жертва»",
                                   tax_id=VICTIM, plan_id=plans["basic-m"].id, quantity=5, ip="1.1.1.1", now=T0)
    registration.register(session, email="sq@evil.example", password="long enough 1", name="S",
                          org_name="ООО «Жертва»", tax_id=VICTIM, now=T0)
    tok = f.mailed_token(session, last_mail(session, "boss@victim.uz", "welcome"))
    v = auth.reset_password(session, tok, "victim password 1", now=T0)
    v_org = session.get(Organisation, res.org_id)
    with pytest.raises(Conflict) as exc:
        organisations.update_details(session, f.actor(v, v_org), name=v_org.name, tax_id=VICTIM)
    assert exc.value.key == "organisations.requisites_locked"
    # squatter's org: a top-up invoice carrying the victim's INN, paid "by the victim" -> auto-credited
    sq = session.exec(select(User).where(User.email == "sq@evil.example")).one()
    verification.verify(session, f.mailed_token(session, last_mail(session, "sq@evil.example", "verify_email")), now=T0)
    sq_org = session.exec(select(Organisation).where(Organisation.tax_id == VICTIM)).one()
    p = invoices.request_topup(session, f.actor(sq, sq_org), "5000000", now=T0)
    csv = f"date,amount,payer_tax_id,purpose\n2026-03-11,5000000,{VICTIM},{p.number}\n".encode()
    report = statement_import.import_statement(session, csv, now=T0)
    assert report.lines[0].status == "imported" and ledger.balance(session, sq_org.id) == Decimal("5000000.00")


def test_cli_create_customer_prints_attacker_link_first(session):
    import re
    from noventiq_panel.cli.core import LINK
    from noventiq_panel.services.notify import notifications
    registration.register(session, email="boss@victim.uz", password="long enough 1",
                          name="Boss https://evil.example/reset/AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                          org_name="X", now=T0)
    organisations.create_customer(session, org_name="ООО «Жертва»", tax_id=VICTIM, owner_email="boss@victim.uz",
                                  owner_name="Boss", now=T0)
    mail = last_mail(session, "boss@victim.uz", "welcome")
    links = [l for l in LINK.findall(notifications.text_to_send(session, mail)) if "/reset/" in l]
    assert len(links) == 1, links


def test_preregistered_account_keeps_attacker_password_when_reseller_creates_customer(session):
    # attacker registers the victim's address; the verify mail carries the attacker's org name
    registration.register(session, email="boss@victim.uz", password="attacker pass 1", name="Boss",
                          org_name="ООО «Жертва» — активируйте учётную запись", now=T0)
    # victim opens the mail and presses "Confirm e-mail"
    verification.verify(session, f.mailed_token(session, last_mail(session, "boss@victim.uz", "verify_email")), now=T0)
    v_org, _ = organisations.create_customer(session, org_name="ООО «Жертва»", tax_id=VICTIM,
                                             owner_email="boss@victim.uz", owner_name="Boss", now=T0)
    raw, _ = auth.sign_in(session, "boss@victim.uz", "attacker pass 1", now=T0 + timedelta(hours=1))
    info = auth.resolve(session, raw, now=T0 + timedelta(hours=1))
    assert v_org.id not in [o["id"] for o in info.orgs], "attacker's password opens the victim's new org"
