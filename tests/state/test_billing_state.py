"""Forged and normal events against /billing: what the handlers expose and refuse, whatever the
browser sends (hidden controls are not the guard)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import ClosingDocument, Payment, Role
from noventiq_panel.services.identity import auth
from noventiq_panel.services.billing import documents, invoices
from noventiq_panel.services.core import ledger
from noventiq_panel.state.billing import BillingState
from tests import factories

from tests.state.conftest import events, is_redirect_to_login, new_state, signed_in

PW = "correct-horse-1"


@pytest.fixture
def db(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def world(db):
    a = factories.org(db, "ООО «Альфа»", tax_id="300000011")
    b = factories.org(db, "ООО «Бета»", tax_id="300000022")
    h = auth.hash_password(PW)
    owner = factories.user(db, a, Role.OWNER, email="owner@a.example", password_hash=h)
    finance = factories.user(db, a, Role.FINANCE, email="finance@a.example", password_hash=h)
    other = factories.user(db, b, Role.OWNER, email="owner@b.example", password_hash=h)
    factories.topup(db, a, "250000.50")
    ledger.post(db, org_id=a.id, kind="charge", amount=Decimal("-50000"), idempotency_key="c-oct",
                description="Лицензии", occurred_at=datetime(2026, 10, 10, tzinfo=timezone.utc))
    ledger.post(db, org_id=b.id, kind="charge", amount=Decimal("-70000"), idempotency_key="c-oct-b",
                description="Лицензии", occurred_at=datetime(2026, 10, 10, tzinfo=timezone.utc))
    db.commit()
    foreign_invoice = invoices.request_topup(db, factories.actor(other, b), "5000")
    documents.generate_month(db, "2026-10", now=datetime(2026, 11, 3, tzinfo=timezone.utc))
    ids = dict(a=a.id, b=b.id, foreign_invoice=foreign_invoice.id)  # plain ids: no lazy refresh later
    db.commit()
    return ids


def text_of(result) -> str:
    return " ".join(repr(e) for e in events(result))


def count(db, model) -> int:
    n = db.exec(select(func.count()).select_from(model)).one()
    db.commit()  # SQLite: a read holds the write lock (BEGIN IMMEDIATE) until the transaction ends
    return n


def one(db, query):
    row = db.exec(query).one()
    db.commit()
    return row


async def _loaded(db, email):
    state = new_state(BillingState)
    signed_in(state, db, email, PW)
    await BillingState.load.fn(state)
    return state


async def test_load_shows_balance_and_the_running_balance_equal_to_it(db, world):
    state = await _loaded(db, "owner@a.example")
    assert state.loaded and state.can_write
    balance = ledger.balance(db, world["a"])
    db.commit()
    assert balance == Decimal("200000.50")
    assert state.balance.replace("\xa0", " ").startswith("200 000,50")
    assert state.tx_rows[0]["running"] == state.balance  # newest row = the balance shown
    assert state.tx_total == 2 and state.doc_total == 1
    # view rows are strings only
    assert all(isinstance(v, str) for row in state.tx_rows + state.pay_rows + state.doc_rows for v in row.values())


async def test_top_up_flow_issues_an_invoice_and_offers_its_pdf(db, world):
    state = await _loaded(db, "owner@a.example")
    BillingState.set_topup_open.fn(state, True)
    BillingState.set_topup_amount.fn(state, "1 200 000,00")
    BillingState.topup_review.fn(state)
    assert state.topup_error == "" and state.topup_step == "confirm"
    await BillingState.topup_confirm.fn(state)
    assert state.topup_step == "done" and state.topup_number.startswith("СЧ-")
    p = one(db, select(Payment).where(Payment.number == state.topup_number))
    assert p.org_id == world["a"] and p.amount == Decimal("1200000.00") and p.status == "pending"
    assert state.pay_rows[0]["number"] == p.number
    result = await BillingState.download_topup_invoice.fn(state)
    assert "_download" in text_of(result) and "application/pdf" in text_of(result)
    # confirming again without a review creates nothing
    await BillingState.topup_confirm.fn(state)
    assert count(db, Payment) == 2


@pytest.mark.parametrize("amount", ["-5", "0", "12.345", "abc", "999", "99999999999999"])
async def test_bad_top_up_amounts_stay_in_the_dialog(db, world, amount):
    state = await _loaded(db, "owner@a.example")
    BillingState.set_topup_open.fn(state, True)
    BillingState.set_topup_amount.fn(state, amount)
    BillingState.topup_review.fn(state)
    assert state.topup_step == "form" and state.topup_error
    await BillingState.topup_confirm.fn(state)
    assert count(db, Payment) == 1


async def test_financial_manager_cannot_top_up_even_with_forged_events(db, world):
    state = await _loaded(db, "finance@a.example")
    assert not state.can_write
    BillingState.set_topup_open.fn(state, True)
    assert state.topup_open is False
    # forge the whole sequence, bypassing the dialog
    state.topup_step = "confirm"
    state._topup_value = "5000.00"
    result = await BillingState.topup_confirm.fn(state)
    assert "toast" in text_of(result)
    assert count(db, Payment) == 1


async def test_foreign_invoice_and_document_downloads_are_refused(db, world):
    state = await _loaded(db, "owner@a.example")
    foreign_doc = db.exec(select(ClosingDocument).where(ClosingDocument.org_id != world["a"])).first()
    db.commit()
    for bad in (str(world["foreign_invoice"]), "abc", "-1", {"id": 1}, None):
        result = await BillingState.download_invoice.fn(state, bad)
        assert "_download" not in text_of(result) and "toast" in text_of(result)
    assert foreign_doc is not None
    for bad in (str(foreign_doc.id), "x", "999999", None):
        result = await BillingState.download_document.fn(state, bad)
        assert "_download" not in text_of(result)
    own_doc = one(db, select(ClosingDocument).where(ClosingDocument.org_id == world["a"]))
    assert "_download" in text_of(await BillingState.download_document.fn(state, str(own_doc.id)))


async def test_transactions_filters_paging_and_export(db, world):
    state = await _loaded(db, "finance@a.example")
    await BillingState.tx_apply.fn(state, {"start": "2026-10-01", "end": "2026-10-31", "kind": "charge",
                                           "subscription": "all"})
    assert state.tx_total == 1 and state.tx_rows[0]["negative"] == "1"
    result = await BillingState.tx_apply.fn(state, {"start": "not-a-date", "kind": "charge"})
    assert "toast" in text_of(result)
    await BillingState.tx_apply.fn(state, {"kind": "stolen"})  # unknown kind = all
    assert state.tx_kind == "all" and state.tx_total == 2
    await BillingState.tx_go_page.fn(state, "9999")
    assert state.tx_page == 1
    result = await BillingState.export_transactions.fn(state, "xlsx")
    assert "_download" in text_of(result)
    result = await BillingState.export_transactions.fn(state, "exe")
    assert "_download" not in text_of(result)


async def test_usage_by_day_switch(db, world):
    state = await _loaded(db, "finance@a.example")
    assert state.tx_group is True
    a = world["a"]
    for h in range(3):  # three hours of usage of one local day: one row while grouped
        at = datetime(2026, 10, 20, 5 + h, tzinfo=timezone.utc)
        ledger.post(db, org_id=a, kind="usage", amount=Decimal("-10"), idempotency_key=f"use-{h}",
                    description="Потребление: Azure", occurred_at=at, period_start=at,
                    period_end=at + timedelta(hours=1))
    db.commit()
    await BillingState.tx_apply.fn(state, {"kind": "usage"})
    assert state.tx_total == 1 and "3 записи" in state.tx_rows[0]["description"]
    assert state.tx_rows[0]["date"] == "20.10.2026"  # the day, not the hour of its last entry
    await BillingState.tx_set_group.fn(state, False)
    assert state.tx_group is False and state.tx_total == 3
    result = await BillingState.tx_set_group.fn(state, "yes please")  # forged: refused, nothing changes
    assert "toast" in text_of(result) and state.tx_group is False and state.tx_total == 3
    await BillingState.tx_reset.fn(state)
    assert state.tx_group is True


async def test_topup_query_prefills_at_least_the_minimum(db, world):
    state = await _loaded(db, "owner@a.example")
    state._prefill_topup("123456.781")
    assert state.topup_open and state.topup_amount == "123456.79"
    state.topup_open = False
    state._prefill_topup("5")  # below the minimum top-up
    assert state.topup_amount == "1000.00"
    state.topup_open = False
    state._prefill_topup("<script>")
    assert not state.topup_open


async def test_signed_out_events_go_to_sign_in(db, world):
    state = new_state(BillingState)
    state.session_secret = "forged-secret"
    result = await BillingState.download_invoice.fn(state, str(world["foreign_invoice"]))
    assert is_redirect_to_login(result)
    result = await BillingState.load.fn(state)
    assert is_redirect_to_login(result)


# ---------------------------------------------------------------- card payments (Payme, Click)

CARD_SECRETS = ("payme-key-of-the-state-test", "click-secret-of-the-state-test")


@pytest.fixture
def cards(monkeypatch):
    """Payme and Click configured (with keys that must never reach the browser)."""
    from noventiq_panel.config import reset_settings

    for name, value in {"PANEL_PAYME_MERCHANT_ID": "587f72c72cac0d162c722ae2", "PANEL_PAYME_KEY": CARD_SECRETS[0],
                        "PANEL_CLICK_SERVICE_ID": "23456", "PANEL_CLICK_MERCHANT_ID": "11111",
                        "PANEL_CLICK_SECRET_KEY": CARD_SECRETS[1],
                        "PANEL_BASE_URL": "https://panel.example"}.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield
    reset_settings()


def redirect_target(result) -> str:
    (spec,) = events(result)
    args = {name._js_expr: value._var_value for name, value in spec.args}
    assert args["external"] is True
    return args["path"]


async def test_card_buttons_leave_for_the_checkout_with_the_account_and_amount(db, world, cards):
    import base64
    from urllib.parse import parse_qs, urlsplit

    from noventiq_panel.services.billing import card_accounts

    state = await _loaded(db, "owner@a.example")
    account = card_accounts.account_number(world["a"])
    assert (state.card_payme, state.card_click, state.card_account) == (True, True, account)
    assert not any(secret in repr(state.dict()) for secret in CARD_SECRETS)
    state.topup_open = True
    state.topup_amount = "15000.50"
    url = redirect_target(await BillingState.pay_by_card.fn(state, "payme"))
    assert url.startswith("https://checkout.paycom.uz/")
    assert base64.b64decode(url.removeprefix("https://checkout.paycom.uz/")).decode() == (
        f"m=587f72c72cac0d162c722ae2;ac.org={account};a=1500050;c=https://panel.example/billing;l=ru")
    assert not state.topup_open
    query = parse_qs(urlsplit(redirect_target(await BillingState.pay_by_card.fn(state, "click"))).query)
    assert query["transaction_param"] == [account] and query["amount"] == ["15000.50"]
    assert count(db, Payment) == 1  # leaving for the gateway writes nothing; its own calls will


async def test_card_payment_is_refused_when_not_configured_or_not_allowed(db, world, cards, monkeypatch):
    from noventiq_panel.config import reset_settings

    state = await _loaded(db, "owner@a.example")
    for amount, provider in (("500", "payme"), ("abc", "click"), ("15000", "paypal")):
        state.topup_amount = amount
        assert not any("redirect" in repr(e) for e in events(await BillingState.pay_by_card.fn(state, provider)))
        assert state.topup_error, (amount, provider)
    finance = await _loaded(db, "finance@a.example")
    finance.topup_amount = "15000"
    assert not any("redirect" in repr(e) for e in events(await BillingState.pay_by_card.fn(finance, "payme")))
    assert finance.topup_error
    monkeypatch.setenv("PANEL_PAYME_MERCHANT_ID", "")
    monkeypatch.setenv("PANEL_CLICK_SECRET_KEY", "")
    reset_settings()
    state = await _loaded(db, "owner@a.example")
    assert (state.card_payme, state.card_click, state.card_account) == (False, False, "")
    state.topup_amount = "15000"
    assert not any("redirect" in repr(e) for e in events(await BillingState.pay_by_card.fn(state, "payme")))
