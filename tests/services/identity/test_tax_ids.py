"""Issue 14, invoices in someone else's name: a tax id belongs to one customer, has the Uzbek
format, and the legal name and tax id stay as issued documents show them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from argon2 import PasswordHasher
from sqlmodel import func, select

from noventiq_panel.models import AuditEvent, Notification, Organisation, Role, User
from noventiq_panel.services.billing import invoices
from noventiq_panel.services.core.errors import Conflict, InvalidInput, NotFound
from noventiq_panel.services.identity import auth, organisations, registration

from tests import factories as f

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
VICTIM = "306512874"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def sign_up(session, email: str, tax_id: str):
    return registration.register(session, email=email, password="long enough 1", name="Имя",
                                 org_name="ООО «Настоящая»", tax_id=tax_id, now=T0)


def test_a_second_sign_up_with_a_known_tax_id_is_refused_and_pointed_to_an_invitation(session):
    f.org(session, name="ООО «Настоящая»", tax_id=VICTIM)
    before = (count(session, Organisation), count(session, User))
    with pytest.raises(Conflict) as exc:
        sign_up(session, "copycat@example.com", f"{VICTIM[:3]} {VICTIM[3:]}")  # spaces do not make it new
    assert exc.value.key == "organisations.tax_id_taken"
    assert (count(session, Organisation), count(session, User)) == before


@pytest.mark.parametrize("tax_id, ok", [("306512874", True), ("30651287412345", True), ("3065128741", False),
                                        ("30651287", False), ("3065128741234X", False), ("", True)])
def test_the_tax_id_is_nine_digits_for_a_company_or_fourteen_for_an_entrepreneur(session, tax_id, ok):
    if ok:
        sign_up(session, "ok@example.com", tax_id)
    else:
        with pytest.raises(InvalidInput) as exc:
            sign_up(session, "bad@example.com", tax_id)
        assert exc.value.key == "organisations.tax_id_invalid" and count(session, Organisation) == 0


def test_organisations_without_a_tax_id_do_not_collide(session):
    sign_up(session, "a@example.com", "")
    sign_up(session, "b@example.com", "")
    assert count(session, Organisation) == 2


def test_another_customers_tax_id_cannot_be_taken_by_editing_the_details(session):
    f.org(session, name="ООО «Настоящая»", tax_id=VICTIM)
    o = f.org(session, name="ООО «Моя»", tax_id="")
    u = f.user(session, o, Role.OWNER)
    with pytest.raises(Conflict) as exc:
        organisations.update_details(session, f.actor(u, o), name="ООО «Настоящая»", tax_id=VICTIM)
    assert exc.value.key == "organisations.tax_id_taken"
    session.refresh(o)
    assert (o.name, o.tax_id) == ("ООО «Моя»", "")


def test_name_and_tax_id_are_locked_once_an_invoice_was_issued_and_support_changes_them(session):
    o = f.org(session, name="ООО «Было»", tax_id="301111111")
    u = f.user(session, o, Role.OWNER)
    organisations.update_details(session, f.actor(u, o), name="ООО «Стало»", tax_id="301111112")  # no invoice yet
    invoices.request_topup(session, f.actor(u, o), "100000", now=T0)
    with pytest.raises(Conflict) as exc:
        organisations.update_details(session, f.actor(u, o), name="ООО «Другое»", tax_id="301111112")
    assert exc.value.key == "organisations.requisites_locked"
    with pytest.raises(Conflict):
        organisations.update_details(session, f.actor(u, o), name="ООО «Стало»", tax_id="301111113")
    # the address and phone stay the customer's to edit
    details = organisations.update_details(session, f.actor(u, o), name="ООО «Стало»", tax_id="301111112",
                                           address="г. Ташкент, ул. Новая, 1")
    assert details.address == "г. Ташкент, ул. Новая, 1"
    # support: the CLI's service
    changed = organisations.set_requisites(session, o.id, name="ООО «Исправлено»", tax_id="301111119")
    assert (changed.name, changed.tax_id) == ("ООО «Исправлено»", "301111119")
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "organisation.requisites_set")).one()
    f.org(session, name="ООО «Третья»", tax_id="301111120")
    with pytest.raises(Conflict):
        organisations.set_requisites(session, o.id, tax_id="301111120")
    with pytest.raises(NotFound):
        organisations.set_requisites(session, 999999, name="X")


def test_the_reseller_cannot_create_a_second_customer_with_a_known_tax_id(session):
    f.org(session, name="ООО «Настоящая»", tax_id=VICTIM)
    with pytest.raises(Conflict):
        organisations.create_customer(session, org_name="ООО «Копия»", tax_id=VICTIM, owner_email="x@example.com",
                                      owner_name="X", now=T0)
    assert count(session, Organisation) == 1


def test_the_database_itself_refuses_a_second_organisation_with_a_tax_id(session):
    from sqlalchemy.exc import IntegrityError

    f.org(session, name="ООО «Настоящая»", tax_id=VICTIM)
    with pytest.raises(IntegrityError):
        f.org(session, name="ООО «Копия»", tax_id=VICTIM)
    session.rollback()


# --- who holds a tax id (review finding: an unproven sign-up held one for ever) ----------------------

def audit_actions(session) -> list[str]:
    return list(session.exec(select(AuditEvent.action).order_by(AuditEvent.id)).all())


def test_an_unverified_sign_up_does_not_hold_a_tax_id_against_the_real_customer(session):
    squatter = sign_up(session, "squatter@example.com", VICTIM)
    squatter_org = session.exec(select(Organisation).where(Organisation.tax_id == VICTIM)).one()
    assert squatter_org.self_service
    real = sign_up(session, "director@real.uz", VICTIM)
    session.expire_all()
    assert session.get(Organisation, squatter_org.id).tax_id == ""
    holder = session.exec(select(Organisation).where(Organisation.tax_id == VICTIM)).one()
    assert holder.id != squatter_org.id
    assert "organisation.tax_id_released" in audit_actions(session)
    assert squatter.id != real.id


def test_a_verified_sign_up_holds_its_tax_id(session):
    from noventiq_panel.services.identity import verification

    user = sign_up(session, "director@real.uz", VICTIM)
    mail = session.exec(select(Notification).where(Notification.user_id == user.id)).one()
    verification.verify(session, f.mailed_token(session, mail), "long enough 1", now=T0)
    with pytest.raises(Conflict) as exc:
        sign_up(session, "squatter@example.com", VICTIM)
    assert exc.value.key == "organisations.tax_id_taken"


def test_a_customer_the_reseller_created_holds_its_tax_id_before_its_owner_sets_a_password(session):
    org, owner = organisations.create_customer(session, org_name="ООО «Настоящая»", tax_id=VICTIM,
                                               owner_email="boss@real.uz", owner_name="Директор", now=T0)
    assert owner.email_verified_at is None and not org.self_service
    with pytest.raises(Conflict):
        sign_up(session, "squatter@example.com", VICTIM)
    session.expire_all()
    assert session.get(Organisation, org.id).tax_id == VICTIM


def test_a_verified_customer_takes_its_tax_id_back_from_an_unverified_sign_up_by_editing_details(session):
    sign_up(session, "squatter@example.com", VICTIM)
    o = f.org(session, name="ООО «Моя»", tax_id="")
    u = f.user(session, o, Role.OWNER)
    details = organisations.update_details(session, f.actor(u, o), name="ООО «Моя»", tax_id=VICTIM)
    assert details.tax_id == VICTIM
