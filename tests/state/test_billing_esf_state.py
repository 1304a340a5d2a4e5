"""The Didox files (ЭСФ, act) of the closing documents on /billing: forged events get no file, an
incomplete ЭСФ says what is missing in the user's language, the Owner and the Financial manager get
the JSON, an Administrator does not."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from noventiq_panel.models import ClosingDocument, Product, Role, Subscription
from noventiq_panel.services.billing import documents
from noventiq_panel.services.core import ledger
from noventiq_panel.services.identity import auth, organisations
from noventiq_panel.state.billing import BillingState
from tests import factories
from tests.state.conftest import events, new_state, signed_in

PW = "correct-horse-1"


@pytest.fixture
def db(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def world(db):
    a = factories.org(db, "ООО «Альфа»", tax_id="300000011", address="г. Ташкент, ул. Навои, 1",
                      vat_reg_code="326060000001", bank_account="20208000405512874001", director="Каримов А.")
    b = factories.org(db, "ООО «Бета»", tax_id="300000022")
    h = auth.hash_password(PW)
    for email, org, role in (("owner@a.example", a, Role.OWNER), ("finance@a.example", a, Role.FINANCE),
                             ("admin@a.example", a, Role.ADMIN), ("owner@b.example", b, Role.OWNER)):
        factories.user(db, org, role, email=email, password_hash=h)
    plans = factories.catalog(db)
    for p in db.exec(select(Product)).all():
        p.mxik_code, p.mxik_name, p.package_code, p.package_name = "10305008002000000", "ПО", "1545033", "услуга"
        db.add(p)
    subs = {}
    for org in (a, b):
        subs[org.id] = Subscription(org_id=org.id, plan_id=plans["basic-m"].id, name="Basic", quantity=1)
        db.add(subs[org.id])
    db.commit()
    for org in (a, b):
        ledger.post(db, org_id=org.id, kind="charge", amount=Decimal("-30000"), idempotency_key=f"c-{org.id}",
                    description="Лицензии", subscription_id=subs[org.id].id,
                    occurred_at=datetime(2026, 10, 10, tzinfo=timezone.utc))
    db.commit()
    documents.generate_month(db, "2026-10", now=datetime(2026, 11, 3, tzinfo=timezone.utc))
    own = db.exec(select(ClosingDocument).where(ClosingDocument.org_id == a.id)).one().id
    foreign = db.exec(select(ClosingDocument).where(ClosingDocument.org_id == b.id)).one().id
    ids = dict(a=a.id, own=own, foreign=foreign)
    db.commit()
    return ids


def text_of(result) -> str:
    return " ".join(repr(e) for e in events(result))


async def _loaded(db, email):
    state = new_state(BillingState)
    signed_in(state, db, email, PW)
    await BillingState.load.fn(state)
    return state


async def test_forged_document_ids_and_kinds_get_no_file(db, world):
    state = await _loaded(db, "owner@a.example")
    for bad in (str(world["foreign"]), "x", "-1", "999999", None, {"id": 1}):
        result = await BillingState.download_esf.fn(state, bad, "esf")
        assert "_download" not in text_of(result) and "toast" in text_of(result)
    result = await BillingState.download_esf.fn(state, str(world["own"]), "exe")
    assert "_download" not in text_of(result)


async def test_an_incomplete_esf_names_what_is_missing_then_the_owner_gets_it(db, world):
    state = await _loaded(db, "owner@a.example")
    result = await BillingState.download_esf.fn(state, str(world["own"]), "esf")
    text = text_of(result)
    assert "_download" not in text and "МФО" in text  # the organisation has no bank МФО yet
    organisations.set_requisites(db, world["a"], bank_mfo="00873")
    result = await BillingState.download_esf.fn(state, str(world["own"]), "esf")
    text = text_of(result)
    assert "_download" in text and "application/json" in text
    # the МФО was given after the act was issued: the download says so beside the file
    assert "после выпуска документа" in text and "МФО" in text


@pytest.mark.parametrize("email, allowed", [("finance@a.example", True), ("admin@a.example", False)])
async def test_only_owner_and_financial_manager_take_the_didox_files(db, world, email, allowed):
    organisations.set_requisites(db, world["a"], bank_mfo="00873")
    state = await _loaded(db, email)
    result = await BillingState.download_esf.fn(state, str(world["own"]), "act")
    assert ("_download" in text_of(result)) is allowed


def test_the_service_file_is_the_json_the_state_hands_over(db, world):
    from noventiq_panel.services.billing import esf
    from noventiq_panel.services.core.authz import Actor

    organisations.set_requisites(db, world["a"], bank_mfo="00873")
    name, data = esf.document_file(db, Actor.system(world["a"]), world["own"], "esf")
    assert json.loads(data)["Buyer"]["BankId"] == "00873" and name.startswith("esf-002-")
