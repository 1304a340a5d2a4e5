"""The organisation's requisites, and a new customer created by the reseller."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from argon2 import PasswordHasher
from sqlmodel import Session, func, select

from noventiq_panel.models import AuditEvent, Membership, Notification, NotificationStatus, Organisation, Role, User
from noventiq_panel.services.identity import auth, organisations
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Forbidden, InvalidInput

from tests import factories as f

T0 = datetime(2025, 9, 24, 9, 0, tzinfo=timezone.utc)
PW = "correct horse 1"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(auth, "_dummy_hash", None)


def count(session, model, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


VALID = dict(name="ООО «Новое имя»", tax_id="305123456", address="г. Ташкент, ул. Навои, 1",
             phone="+998 71 123-45-67", bank_details="АКБ «Капиталбанк», р/с 20208000900123456001")


# --- requisites ------------------------------------------------------------------------------

def test_every_member_reads_the_details_of_their_own_organisation_only(session):
    o = f.org(session, name="ООО «Альфа»", tax_id="300000001")
    other = f.org(session, name="ООО «Бета»")
    fin = f.user(session, o, Role.FINANCE)
    d = organisations.get_details(session, f.actor(fin, o))
    assert (d.id, d.name, d.tax_id, d.billing_currency, d.timezone) == (o.id, "ООО «Альфа»", "300000001", "UZS",
                                                                        "Asia/Tashkent")
    with pytest.raises(Forbidden):
        organisations.get_details(session, Actor(user_id=fin.id, org_id=other.id))


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owner_and_admin_update_the_details_and_it_is_audited(session, role):
    o = f.org(session)
    u = f.user(session, o, role)
    d = organisations.update_details(session, f.actor(u, o), **(VALID | {"tax_id": " 305 123 456 "}))
    assert (d.name, d.tax_id, d.phone) == ("ООО «Новое имя»", "305123456", "+998 71 123-45-67")
    stored = session.get(Organisation, o.id)
    assert (stored.address, stored.bank_details) == (VALID["address"], VALID["bank_details"])
    event = session.exec(select(AuditEvent)).one()
    assert event.action == "organisation.updated" and "name" in event.details["fields"]


def test_an_empty_tax_id_is_allowed(session):
    o = f.org(session)
    u = f.user(session, o, Role.OWNER)
    assert organisations.update_details(session, f.actor(u, o), **(VALID | {"tax_id": ""})).tax_id == ""


def test_a_financial_manager_or_a_stranger_cannot_update_the_details(session):
    o = f.org(session, name="Before")
    fin = f.user(session, o, Role.FINANCE)
    other = f.org(session, name="Other")
    stranger = f.user(session, other, Role.OWNER)
    with pytest.raises(Forbidden) as exc:
        organisations.update_details(session, f.actor(fin, o), **VALID)
    assert exc.value.key == "error.read_only"
    with pytest.raises(Forbidden):
        organisations.update_details(session, Actor(user_id=stranger.id, org_id=o.id), **VALID)
    assert session.get(Organisation, o.id).name == "Before"
    assert count(session, AuditEvent) == 0


@pytest.mark.parametrize("field, value, key", [
    ("name", "   ", "organisations.name_required"),
    ("name", "x" * 256, "organisations.too_long"),
    ("tax_id", "12345678", "organisations.tax_id_invalid"),
    ("tax_id", "1234567890", "organisations.tax_id_invalid"),
    ("tax_id", "30512345A", "organisations.tax_id_invalid"),
    ("phone", "call me", "organisations.phone_invalid"),
    ("phone", "+1", "organisations.phone_invalid"),
    ("address", "x" * 501, "organisations.too_long"),
    ("bank_details", {"iban": "x"}, "organisations.invalid"),
])
def test_update_details_validates_and_changes_nothing(sqlite_engine, field, value, key):
    with Session(sqlite_engine, expire_on_commit=False) as session:
        o = f.org(session, name="Before", tax_id="300000001")
        u = f.user(session, o, Role.OWNER)
        with pytest.raises(InvalidInput) as exc:
            organisations.update_details(session, f.actor(u, o), **(VALID | {field: value}))
        assert (exc.value.key, exc.value.field) == (key, field)
        stored = session.get(Organisation, o.id)
        assert (stored.name, stored.tax_id) == ("Before", "300000001")
        assert count(session, AuditEvent) == 0


# --- new customers ---------------------------------------------------------------------------

def test_a_new_customer_gets_an_owner_and_a_set_password_link_in_the_outbox(session):
    org, owner = organisations.create_customer(session, org_name="ООО «Клиент»", tax_id="301234567",
                                               owner_email="Boss@Client.uz", owner_name="Бахтиёр Алиев", now=T0)
    assert (org.billing_currency, org.timezone, org.billing_mode, org.credit_limit) == (
        "UZS", "Asia/Tashkent", "prepaid", Decimal("0.00"))
    assert (owner.email, owner.name, owner.password_hash, owner.locale) == ("boss@client.uz", "Бахтиёр Алиев", None, "ru")
    m = session.exec(select(Membership)).one()
    assert (m.org_id, m.user_id, m.role) == (org.id, owner.id, Role.OWNER)
    # no SMTP configured: the mail waits in the outbox (and is the owner's history)
    mail = session.exec(select(Notification)).one()
    assert (mail.kind, mail.status, mail.to_email, mail.org_id) == ("welcome", NotificationStatus.QUEUED,
                                                                     "boss@client.uz", org.id)
    assert "ООО «Клиент»" in mail.subject
    token = f.mailed_token(session, mail)
    assert auth.check_reset_token(session, token, now=T0 + timedelta(hours=71)).purpose == "invite"
    auth.reset_password(session, token, "owner's password", now=T0 + timedelta(hours=1))
    raw, _ = auth.sign_in(session, "boss@client.uz", "owner's password", now=T0 + timedelta(hours=1))
    info = auth.resolve(session, raw, now=T0 + timedelta(hours=1))
    assert (info.org_id, info.role) == (org.id, Role.OWNER)
    assert [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.id))] == [
        "organisation.created", "user.signed_in"]


def test_an_existing_user_becomes_owner_of_the_new_customer_without_a_new_password(session):
    old_org = f.org(session)
    known = f.user(session, old_org, Role.ADMIN, email="known@client.uz", password_hash=auth.hash_password(PW),
                   locale="en")
    org, owner = organisations.create_customer(session, org_name="Second Co", owner_email="known@client.uz",
                                               owner_name="Ignored", billing_mode="postpaid",
                                               credit_limit="5000000", now=T0)
    assert owner.id == known.id and count(session, User) == 1
    assert (org.billing_mode, org.credit_limit) == ("postpaid", Decimal("5000000.00"))
    mail = session.exec(select(Notification)).one()
    assert mail.locale == "en" and "/reset/" not in mail.body_text
    raw, _ = auth.sign_in(session, "known@client.uz", PW, now=T0)
    assert {o["id"] for o in auth.resolve(session, raw, now=T0).orgs} == {old_org.id, org.id}


@pytest.mark.parametrize("bad, key", [
    (dict(org_name=""), "organisations.name_required"),
    (dict(tax_id="12"), "organisations.tax_id_invalid"),
    (dict(owner_email="boss"), "auth.email_invalid"),
    (dict(owner_name=""), "auth.name_required"),
    (dict(locale="fr"), "auth.locale_invalid"),
    (dict(billing_mode="barter"), "organisations.billing_mode_invalid"),
    (dict(credit_limit="100"), "organisations.credit_limit_prepaid"),
    (dict(billing_mode="postpaid", credit_limit=1.5), "error.float"),
    (dict(billing_mode="postpaid", credit_limit="-1"), "error.not_positive"),
    (dict(timezone="Mars/Olympus"), "organisations.timezone_invalid"),
])
def test_create_customer_validates_and_creates_nothing(sqlite_engine, bad, key):
    with Session(sqlite_engine, expire_on_commit=False) as session:
        data = dict(org_name="Client", tax_id="", owner_email="boss@client.uz", owner_name="Boss") | bad
        with pytest.raises(InvalidInput) as exc:
            organisations.create_customer(session, **data)
        assert exc.value.key == key
        for model in (Organisation, User, Membership, Notification):
            assert count(session, model) == 0
