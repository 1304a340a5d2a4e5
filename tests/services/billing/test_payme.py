"""Payme Merchant API (services/billing/payme.py, POST /api/payme) against a local double of Payme
Business. Nothing here has met the real Payme: ``PaymeDouble`` sends the requests the documentation
shows (tests/data/payme/*.json name the pages), to the service and over HTTP to the route.

Hazards: money posted twice (a repeated or simultaneous PerformTransaction), money posted for a
refused or timed-out transaction, a refused request that changes something, a repeated call that
answers differently (the sandbox sends Create, Perform and Cancel twice), a second transaction for
a one-time invoice, a cancel after perform that takes back money already spent, a wrong key that
gets through, an HTTP status other than 200.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select
from starlette.testclient import TestClient

from noventiq_panel import api
from noventiq_panel.cli import main as cli_main
from noventiq_panel.config import reset_settings
from noventiq_panel.models import (
    AuditEvent,
    LedgerEntry,
    Notification,
    Payment,
    PaymeTransaction,
)
from noventiq_panel.services.billing import card_accounts, payme
from noventiq_panel.services.core import ledger
from tests import factories as f
from tests.concurrency import at_once
from tests.services.billing.gateway_helpers import (
    MONEY_TABLES,
    card_world,
    configure,
    fill,
)
from tests.services.billing.gateway_helpers import snapshot as snapshot_of

DATA = Path(__file__).resolve().parents[2] / "data" / "payme"
DOC_TIME = 1399114284039  # the documented example's Payme time (Sat May 03 2014 10:51:24 UTC)
T0 = payme.from_ms(DOC_TIME)
MERCHANT = "587f72c72cac0d162c722ae2"  # the documented example's merchant id
KEY = "key-of-the-payme-double"
TEST_KEY = "test-key-of-the-payme-double"
TABLES = (PaymeTransaction, *MONEY_TABLES)


@pytest.fixture
def payme_settings(monkeypatch):
    configure(monkeypatch, {"PANEL_PAYME_MERCHANT_ID": MERCHANT, "PANEL_PAYME_KEY": KEY,
                            "PANEL_PAYME_TEST_KEY": TEST_KEY, "PANEL_PAYME_TEST": "0"})
    yield
    reset_settings()


@pytest.fixture
def world(session, payme_settings):
    return card_world(session, T0)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"Paycom:{key}".encode()).decode()


class PaymeDouble:
    """A double of Payme Business: it sends Merchant API requests as Payme would (JSON-RPC, Basic
    authorization ``Paycom:<key>``), either to the service with an explicit time or over HTTP to
    ``POST /api/payme`` (the route's clock is set to that time). It has never been compared with the
    real Payme."""

    def __init__(self, session: Session, *, http: bool = False, monkeypatch=None, key: str = KEY):
        self.session = session
        self.key = key
        self.client = TestClient(api.app) if http else None
        self.monkeypatch = monkeypatch

    def header(self, auth: str) -> str | None:
        return {"good": basic(self.key), "wrong": basic("not-the-key"), "none": None}[auth]

    def send(self, body: str | bytes, *, auth: str = "good", now: datetime = T0) -> dict:
        header = self.header(auth)
        if self.client is None:
            return payme.handle(self.session, body, header, now=now)
        self.session.rollback()  # SQLite: the test's session must not hold the write lock the route needs
        self.monkeypatch.setattr(payme, "utcnow", lambda: now)
        headers = {"Content-Type": "application/json"}
        if header:
            headers["Authorization"] = header
        response = self.client.post("/api/payme", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def call(self, method: str, params: dict, *, auth: str = "good", now: datetime = T0, rid: int = 1) -> dict:
        return self.send(json.dumps({"method": method, "params": params, "id": rid}), auth=auth, now=now)


def snapshot(session: Session) -> dict:
    return snapshot_of(session, TABLES)


def matches(answer, expected, path="") -> None:
    """Each expected field is in the answer with that value ("<ms>": a 13-digit time; "<str>": text)."""
    if expected == "<ms>":
        assert isinstance(answer, int) and not isinstance(answer, bool) and len(str(answer)) == 13, (path, answer)
    elif expected == "<str>":
        assert isinstance(answer, str) and answer, (path, answer)
    elif isinstance(expected, dict):
        assert isinstance(answer, dict), (path, answer)
        for key, value in expected.items():
            assert key in answer, (path, key, answer)
            matches(answer[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(answer, list) and len(answer) == len(expected), (path, answer)
        for i, (a, e) in enumerate(zip(answer, expected)):
            matches(a, e, f"{path}[{i}]")
    else:
        assert answer == expected and type(answer) is type(expected), (path, answer, expected)


def replay(double: PaymeDouble, session: Session, name: str, names: dict, org_id: int) -> dict:
    """Play a scenario file step by step; a refused step must change nothing."""
    spec = json.loads((DATA / name).read_text(encoding="utf-8"))
    answers: dict[str, dict] = {}
    for i, step in enumerate(spec["steps"]):
        request = fill(step["request"], names)
        before = snapshot(session)
        answer = double.send(json.dumps(request), auth=step["auth"], now=T0 + timedelta(seconds=i + 1))
        if "same_as" in step:
            assert answer == answers[step["same_as"]], step["name"]
        else:
            matches(answer, fill(step["expect"], names), step["name"])
        if "error" in answer:
            assert answer["error"]["message"].keys() == {"ru", "uz", "en"}, step["name"]
            assert snapshot(session) == before, f"{step['name']}: a refused request changed the tables"
        if "balance" in step:
            assert ledger.balance(session, org_id) == Decimal(step["balance"]), step["name"]
        answers[step["name"]] = answer
    return answers


@pytest.fixture(params=["service", "http"])
def double(request, session, monkeypatch, payme_settings):
    return PaymeDouble(session, http=request.param == "http", monkeypatch=monkeypatch)


# ---------------------------------------------------------------- the sandbox's scenarios

def test_sandbox_scenario_1_security_checks_create_and_cancel_an_invoice_transaction(session, world, double):
    names = {"invoice": world["invoice_ref"], "wrong_amount": 499999}
    answers = replay(double, session, "scenario1_create_cancel.json", names, world["org"].id)
    tx = session.exec(select(PaymeTransaction)).one()
    assert (tx.state, tx.reason, tx.account_kind, tx.payment_id) == (-1, 1, "invoice", world["invoice"].id)
    assert answers["CreateTransaction"]["result"]["transaction"] == str(tx.id)
    assert session.exec(select(LedgerEntry)).all() == []
    invoice = session.get(Payment, world["invoice"].id)
    assert (invoice.status, invoice.paid_amount) == ("pending", Decimal("0.00"))  # it still waits for its money


def test_sandbox_scenario_2_create_perform_twice_and_cancel_a_top_up(session, world, double):
    o = world["org"]
    answers = replay(double, session, "scenario2_perform_cancel.json", {"org": world["account"]}, o.id)
    tx = session.exec(select(PaymeTransaction)).one()
    assert (tx.state, tx.reason, tx.account_kind) == (-2, 5, "org")
    assert answers["PerformTransaction"]["result"]["perform_time"] == tx.perform_time
    entries = session.exec(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    assert [(e.kind, e.amount, e.idempotency_key) for e in entries] == [
        ("topup", Decimal("5000.00"), "payme:5305e3bab097f420a62ced0b"),
        ("adjustment", Decimal("-5000.00"), "payme:5305e3bab097f420a62ced0b:cancel"),
    ]
    assert (tx.ledger_entry_id, tx.reversal_entry_id) == (entries[0].id, entries[1].id)
    top_up = session.get(Payment, tx.payment_id)
    assert (top_up.number, top_up.kind, top_up.method, top_up.status) == (
        "PAYME-5305e3bab097f420a62ced0b", "topup", "payme", "cancelled")
    assert tx.fiscal_data["PERFORM"]["fiscal_sign"] == "800031554082"
    assert tx.account == {"org": world["account"]}


# ---------------------------------------------------------------- money: once, and only when it may

def _create(double, account: dict, amount=500000, payme_id="5305e3bab097f420a62ced0b", time=DOC_TIME, now=T0):
    answer = double.call("CreateTransaction", {"id": payme_id, "time": time, "amount": amount, "account": account},
                         now=now)
    assert "result" in answer, answer
    return answer


def test_two_performs_at_once_post_one_top_up(engine, world, payme_settings):
    o = world["org"]
    with Session(engine, expire_on_commit=False) as s:
        _create(PaymeDouble(s), {"org": world["account"]})

    def perform():
        with Session(engine, expire_on_commit=False) as s:
            return PaymeDouble(s).call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"},
                                       now=T0 + timedelta(minutes=1))

    first, second = at_once(perform, perform)
    assert first == second and first["result"]["state"] == 2
    with Session(engine) as s:
        entries = s.exec(select(LedgerEntry).where(LedgerEntry.org_id == o.id)).all()
        assert [(e.idempotency_key, e.amount) for e in entries] == [("payme:5305e3bab097f420a62ced0b", Decimal("5000.00"))]
        assert len(s.exec(select(Notification).where(Notification.kind == "payment_received")).all()) == 1


def test_perform_credits_the_top_up_with_the_mail_and_history_of_a_bank_transfer(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"org": world["account"]}, amount=1234550)
    answer = double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=T0 + timedelta(minutes=2))
    assert answer["result"]["state"] == 2
    assert ledger.balance(session, world["org"].id) == Decimal("12345.50")
    payment = session.exec(select(Payment).where(Payment.number == "PAYME-5305e3bab097f420a62ced0b")).one()
    assert (payment.status, payment.paid_amount, payment.paid_at) == ("paid", Decimal("12345.50"),
                                                                      T0 + timedelta(minutes=2))
    mail = session.exec(select(Notification).where(Notification.kind == "payment_received")).one()
    assert mail.to_email == "owner@romashka.uz"
    actions = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()]
    assert "payment.card_started" in actions and "payment.received" in actions


def test_paying_an_invoice_marks_it_paid_once(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"invoice": world["invoice"].number})  # the canonical number is understood too
    double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=T0 + timedelta(minutes=1))
    double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=T0 + timedelta(minutes=2))
    invoice = session.get(Payment, world["invoice"].id)
    assert (invoice.status, invoice.paid_amount) == ("paid", Decimal("5000.00"))
    assert ledger.balance(session, world["org"].id) == Decimal("5000.00")
    # A paid invoice takes no new transaction.
    answer = double.call("CheckPerformTransaction", {"amount": 500000, "account": {"invoice": world["invoice_ref"]}})
    assert answer["error"]["code"] == -31008


def test_cancel_after_perform_is_refused_once_the_money_is_spent(session, world, payme_settings):
    o = world["org"]
    double = PaymeDouble(session)
    _create(double, {"org": world["account"]})
    double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=T0 + timedelta(minutes=1))
    ledger.post(session, org_id=o.id, kind="charge", amount=Decimal("-3000.00"), idempotency_key="test-spend")
    session.commit()
    before = snapshot(session)
    answer = double.call("CancelTransaction", {"id": "5305e3bab097f420a62ced0b", "reason": 5},
                         now=T0 + timedelta(minutes=2))
    assert answer["error"]["code"] == -31007
    assert snapshot(session) == before
    assert ledger.balance(session, o.id) == Decimal("2000.00")


# ---------------------------------------------------------------- the 12-hour timeout

def test_a_created_transaction_times_out_after_12_hours_and_cannot_be_performed(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"org": world["account"]})
    _create(double, {"org": world["account"]}, payme_id="5305e3bab097f420a62ced0c", time=DOC_TIME + 1000)
    # 12 hours less a second after Payme created it: still performable.
    in_time = double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0c"},
                          now=T0 + timedelta(hours=12) - timedelta(seconds=1))
    assert in_time["result"]["state"] == 2
    late = T0 + timedelta(hours=12, milliseconds=1)
    answer = double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=late)
    assert answer["error"]["code"] == -31008
    check = double.call("CheckTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=late + timedelta(hours=1))
    assert check["result"] | {"transaction": None} == {
        "create_time": DOC_TIME, "perform_time": 0, "cancel_time": payme.to_ms(late), "transaction": None,
        "state": -1, "reason": 4}
    assert double.call("CreateTransaction", {"id": "5305e3bab097f420a62ced0b", "time": DOC_TIME, "amount": 500000,
                                             "account": {"org": world["account"]}}, now=late)["error"]["code"] == -31008
    keys = [e.idempotency_key for e in session.exec(select(LedgerEntry)).all()]
    assert keys == ["payme:5305e3bab097f420a62ced0c"]
    timed_out = session.exec(select(Payment).where(Payment.number == "PAYME-5305e3bab097f420a62ced0b")).one()
    assert timed_out.status == "cancelled"


def test_the_job_cancels_what_timed_out_and_nothing_else(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"org": world["account"]})
    _create(double, {"org": world["account"]}, payme_id="5305e3bab097f420a62ced0c")
    double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0c"}, now=T0 + timedelta(minutes=5))
    assert payme.expire_stale(session, now=T0 + timedelta(hours=11)) == 0
    assert payme.expire_stale(session, now=T0 + timedelta(hours=12, seconds=1)) == 1
    assert payme.expire_stale(session, now=T0 + timedelta(hours=13)) == 0
    states = {tx.payme_id: (tx.state, tx.reason) for tx in session.exec(select(PaymeTransaction)).all()}
    assert states == {"5305e3bab097f420a62ced0b": (-1, 4), "5305e3bab097f420a62ced0c": (2, None)}


def test_an_invoice_whose_transaction_timed_out_takes_a_new_one(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"invoice": world["invoice_ref"]})
    later = T0 + timedelta(hours=12, minutes=1)
    answer = _create(double, {"invoice": world["invoice_ref"]}, payme_id="5305e3bab097f420a62ced0c",
                     time=payme.to_ms(later), now=later)
    assert answer["result"]["state"] == 1


# ---------------------------------------------------------------- GetStatement

def test_get_statement_lists_the_period_by_payme_time_ascending(session, world, payme_settings):
    double = PaymeDouble(session)
    account = {"org": world["account"]}
    hour = 3_600_000
    # Created in another order than Payme's times.
    _create(double, account, payme_id="000000000000000000000003", time=DOC_TIME + 2 * hour, now=T0 + timedelta(hours=2))
    _create(double, account, payme_id="000000000000000000000001", time=DOC_TIME, now=T0 + timedelta(hours=2))
    _create(double, account, payme_id="000000000000000000000002", time=DOC_TIME + hour, now=T0 + timedelta(hours=2))
    double.call("PerformTransaction", {"id": "000000000000000000000002"}, now=T0 + timedelta(hours=2))
    answer = double.call("GetStatement", {"from": DOC_TIME + hour, "to": DOC_TIME + 2 * hour},
                         now=T0 + timedelta(hours=3))
    rows = answer["result"]["transactions"]
    assert [(r["id"], r["time"], r["state"]) for r in rows] == [
        ("000000000000000000000002", DOC_TIME + hour, 2), ("000000000000000000000003", DOC_TIME + 2 * hour, 1)]
    assert rows[0]["account"] == account and rows[0]["amount"] == 500000 and rows[0]["perform_time"] > 0
    empty = double.call("GetStatement", {"from": DOC_TIME - 10 * hour, "to": DOC_TIME - 1}, now=T0 + timedelta(hours=3))
    assert empty == {"id": 1, "result": {"transactions": []}}


# ---------------------------------------------------------------- refused requests

def _refusals(world):
    account = {"org": world["account"]}
    create = {"id": "5305e3bab097f420a62ced0b", "time": DOC_TIME, "amount": 500000, "account": account}
    return [
        ("malformed JSON", '{"method": "CheckPerformTransaction", "params": {', -32700),
        ("not an object", '[1, 2, 3]', -32600),
        ("no params", json.dumps({"method": "CheckTransaction", "id": 7}), -32600),
        ("unknown method", json.dumps({"method": "ChangePassword", "params": {"password": "x"}, "id": 7}), -32601),
        ("negative amount", ("CreateTransaction", {**create, "amount": -500000}), -31001),
        ("zero amount", ("CreateTransaction", {**create, "amount": 0}), -31001),
        ("huge amount", ("CreateTransaction", {**create, "amount": 10 ** 20}), -31001),
        ("float amount", ("CreateTransaction", {**create, "amount": 500000.5}), -31001),
        ("amount as text", ("CreateTransaction", {**create, "amount": "500000"}), -32600),
        ("above the card maximum", ("CreateTransaction", {**create, "amount": 5_000_000_001}), -31001),
        ("below the card minimum", ("CheckPerformTransaction", {"amount": 99_999, "account": account}), -31001),
        ("account not an object", ("CheckPerformTransaction", {"amount": 500000, "account": "x"}), -32600),
        ("mistyped account number", ("CreateTransaction", {**create, "account": {"org": world["account"][:-1] + str(
            (int(world["account"][-1]) + 1) % 10)}}), -31050),
        ("no account field", ("CreateTransaction", {**create, "account": {}}), -31050),
        ("time older than 12 hours", ("CreateTransaction", {**create, "time": DOC_TIME - 13 * 3_600_000}), -31008),
        ("id too long", ("CreateTransaction", {**create, "id": "x" * 40}), -32600),
        ("unknown transaction", ("PerformTransaction", {"id": "ffffffffffffffffffffffff"}), -31003),
        ("cancel reason unknown", ("CancelTransaction", {"id": "5305e3bab097f420a62ced0b", "reason": 99}), -32600),
        ("statement upside down", ("GetStatement", {"from": DOC_TIME, "to": DOC_TIME - 1}), -32600),
        ("fiscal data of an unknown transaction", ("SetFiscalData", {"id": "ffffffffffffffffffffffff",
                                                                     "type": "PERFORM", "fiscal_data": {}}), -31003),
    ]


def test_refused_requests_answer_the_protocol_error_and_change_nothing(session, world, double):
    for name, request, code in _refusals(world):
        before = snapshot(session)
        if isinstance(request, tuple):
            answer = double.call(*request, now=T0 + timedelta(seconds=5))
        else:
            answer = double.send(request, now=T0 + timedelta(seconds=5))
        assert answer["error"]["code"] == code, (name, answer)
        assert set(answer["error"]["message"]) == {"ru", "uz", "en"}, name
        assert snapshot(session) == before, f"{name}: a refused request changed the tables"


def test_accounts_that_cannot_pay_by_card_are_refused(session, world, payme_settings):
    double = PaymeDouble(session)
    usd = f.org(session, name="ООО «Доллар»", billing_currency="USD")
    closed = f.org(session, name="ООО «Закрыто»", is_active=False)
    for account, code, data in (({"org": card_accounts.account_number(usd.id)}, -31052, "org"),
                                ({"org": card_accounts.account_number(closed.id)}, -31050, "org"),
                                ({"invoice": "СЧ-2014-999999"}, -31051, "invoice"),
                                ({"invoice": world["invoice_ref"], "org": card_accounts.account_number(usd.id)},
                                 -31050, "org")):
        answer = double.call("CheckPerformTransaction", {"amount": 500000, "account": account})
        assert (answer["error"]["code"], answer["error"]["data"]) == (code, data), account


def test_a_second_transaction_while_the_invoice_has_an_active_one_is_refused(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"invoice": world["invoice_ref"]})
    before = snapshot(session)
    answer = double.call("CreateTransaction", {"id": "5305e3bab097f420a62ced0c", "time": DOC_TIME, "amount": 500000,
                                               "account": {"invoice": world["invoice_ref"]}})
    assert answer["error"]["code"] == -31008
    assert double.call("CheckPerformTransaction", {"amount": 500000, "account": {"invoice": world["invoice_ref"]}}
                       )["error"]["code"] == -31008
    assert snapshot(session) == before


def test_a_repeated_create_with_another_amount_is_refused(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"org": world["account"]})
    answer = double.call("CreateTransaction", {"id": "5305e3bab097f420a62ced0b", "time": DOC_TIME, "amount": 600000,
                                               "account": {"org": world["account"]}})
    assert answer["error"]["code"] == -31001


# ---------------------------------------------------------------- authorization

def test_test_mode_accepts_the_test_key_instead_of_the_merchant_key(session, world, monkeypatch, payme_settings):
    params = {"amount": 500000, "account": {"org": world["account"]}}
    monkeypatch.setenv("PANEL_PAYME_TEST", "1")
    reset_settings()
    assert PaymeDouble(session, key=KEY).call("CheckPerformTransaction", params)["error"]["code"] == -32504
    assert PaymeDouble(session, key=TEST_KEY).call("CheckPerformTransaction", params)["result"] == {"allow": True}
    monkeypatch.setenv("PANEL_PAYME_TEST", "0")
    reset_settings()
    assert PaymeDouble(session, key=TEST_KEY).call("CheckPerformTransaction", params)["error"]["code"] == -32504
    assert PaymeDouble(session, key=KEY).call("CheckPerformTransaction", params)["result"] == {"allow": True}


def test_without_a_configured_key_every_request_is_refused(session, world, monkeypatch, payme_settings):
    monkeypatch.setenv("PANEL_PAYME_KEY", "")
    reset_settings()
    answer = PaymeDouble(session, key="").call("CheckPerformTransaction",
                                                {"amount": 500000, "account": {"org": world["account"]}})
    assert answer["error"]["code"] == -32504
    assert not payme.configured()


@pytest.mark.parametrize("header", ["Basic", "Bearer " + base64.b64encode(f"Paycom:{KEY}".encode()).decode(),
                                    "Basic " + base64.b64encode(f"paycom:{KEY}".encode()).decode(),
                                    "Basic " + base64.b64encode(f"Paycom:{KEY}x".encode()).decode(),
                                    "Basic !!!not-base64!!!", ""])
def test_only_the_exact_basic_credentials_pass(payme_settings, header):
    assert not payme.authorized(header)
    assert payme.authorized("Basic " + base64.b64encode(f"Paycom:{KEY}".encode()).decode())


def test_the_route_answers_http_200_with_the_protocol_error(session, world, payme_settings):
    client = TestClient(api.app)
    for response in (client.post("/api/payme", content=b"not json", headers={"Authorization": basic(KEY)}),
                     client.post("/api/payme", content=b"x" * 100_000, headers={"Authorization": basic(KEY)}),
                     client.get("/api/payme")):
        assert response.status_code == 200
        assert response.json()["error"]["code"] in (-32700, -32300)
    assert client.get("/api/payme").json()["error"]["code"] == -32300


# ---------------------------------------------------------------- receipt, checkout, account numbers

def test_check_perform_gives_the_receipt_detail_when_an_ikpu_is_configured(session, world, monkeypatch,
                                                                           payme_settings):
    monkeypatch.setenv("PANEL_PAYME_IKPU", "10305008002000000")
    monkeypatch.setenv("PANEL_PAYME_PACKAGE_CODE", "1495086")
    reset_settings()
    answer = PaymeDouble(session).call("CheckPerformTransaction",
                                       {"amount": 500000, "account": {"invoice": world["invoice_ref"]}})
    assert answer["result"] == {"allow": True, "detail": {"receipt_type": 0, "items": [{
        "title": world["invoice"].purpose, "price": 500000, "count": 1, "code": "10305008002000000",
        "vat_percent": 12, "package_code": "1495086"}]}}


def test_checkout_url_is_base64_of_merchant_account_amount_and_return_url(payme_settings, monkeypatch):
    url = payme.checkout_url("org", "0000427", Decimal("15000.50"), "https://panel.example/billing")
    assert url.startswith("https://checkout.paycom.uz/")
    decoded = base64.b64decode(url.removeprefix("https://checkout.paycom.uz/")).decode()
    assert decoded == f"m={MERCHANT};ac.org=0000427;a=1500050;c=https://panel.example/billing;l=ru"
    monkeypatch.setenv("PANEL_PAYME_TEST", "1")
    reset_settings()
    assert payme.checkout_url("invoice", "2026-000001", Decimal(1), "x").startswith("https://test.paycom.uz/")
    monkeypatch.setenv("PANEL_PAYME_MERCHANT_ID", "")
    reset_settings()
    assert payme.checkout_url("org", "0000427", Decimal(1), "x") is None


def test_account_numbers_round_trip_and_a_mistyped_digit_names_no_organisation():
    for org_id in (1, 42, 999_999, 1_234_567):
        number = card_accounts.account_number(org_id)
        assert card_accounts.parse_account_number(number) == org_id
        assert card_accounts.parse_account_number(f" {number} ") == org_id
        for i in range(len(number)):
            for d in "0123456789":
                typo = number[:i] + d + number[i + 1:]
                if typo != number:
                    assert card_accounts.parse_account_number(typo) != org_id, typo
    assert card_accounts.account_number(42) == "0000422"  # Luhn: 000042 + 2
    for bad in ("", "abc", "12", None, True, 1.5, "٠٠٠٠٠٤٢٦"):
        assert card_accounts.parse_account_number(bad) is None


def test_settings_keep_the_keys_out_of_their_repr(payme_settings, monkeypatch):
    monkeypatch.setenv("PANEL_CLICK_SECRET_KEY", "click-secret-of-the-double")
    reset_settings()
    from noventiq_panel.config import get_settings

    text = repr(get_settings())
    assert KEY not in text and TEST_KEY not in text and "click-secret-of-the-double" not in text


# ---------------------------------------------------------------- reconciliation

def test_reconcile_lists_what_is_missing_on_either_side_and_in_the_ledger(session, world, payme_settings, tmp_path):
    double = PaymeDouble(session)
    account = {"org": world["account"]}
    _create(double, account, payme_id="000000000000000000000001")
    _create(double, account, payme_id="000000000000000000000002", time=DOC_TIME + 1000)
    double.call("PerformTransaction", {"id": "000000000000000000000001"}, now=T0 + timedelta(minutes=1))
    statement = double.call("GetStatement", {"from": DOC_TIME, "to": DOC_TIME + 1000}, now=T0 + timedelta(minutes=2))
    assert payme.reconcile(session, statement) == []
    rows = statement["result"]["transactions"]
    extra = dict(rows[0], id="00000000000000000000000f", transaction="999")
    changed = dict(rows[0], state=-2)
    # The period defaults to the statement's first and last time; ours at DOC_TIME + 1000 is in this one.
    found = payme.reconcile(session, {"result": {"transactions": [changed, extra]}}, start_ms=DOC_TIME,
                            end_ms=DOC_TIME + 1000)
    assert {(d.reference, d.problem) for d in found} == {
        ("000000000000000000000001", "state"), ("00000000000000000000000f", "missing_here"),
        ("000000000000000000000002", "missing_there")}
    # The ledger side: a performed transaction whose money is missing.
    tx = session.exec(select(PaymeTransaction).where(PaymeTransaction.payme_id == "000000000000000000000001")).one()
    tx.ledger_entry_id = None
    session.add(tx)
    session.flush()
    session.delete(session.exec(select(LedgerEntry)).one())
    session.commit()
    assert [(d.reference, d.problem) for d in payme.reconcile(session, statement)] == [
        ("000000000000000000000001", "ledger_missing")]
    # The operator's command over the same statement file.
    session.rollback()
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement), encoding="utf-8")
    result = CliRunner().invoke(cli_main, ["payments", "reconcile", "payme", str(path)])
    assert result.exit_code == 1, result.output
    assert "000000000000000000000001\tledger_missing" in result.output
    path.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(cli_main, ["payments", "reconcile", "payme", str(path)])
    assert result.exit_code == 1 and "not a GetStatement answer" in result.output


def test_perform_on_an_invoice_paid_meanwhile_is_refused_and_credits_nothing(session, world, payme_settings):
    """Review of issue 15: Payme created a transaction for the invoice, the invoice was then paid
    another way (here a bank transfer confirmed by the operator); PerformTransaction must not credit
    the invoice a second time (-31008: Payme releases the hold on the card)."""
    from noventiq_panel.services.billing import payments

    double = PaymeDouble(session)
    _create(double, {"invoice": world["invoice_ref"]})
    payments.confirm_payment(session, world["invoice"].number, now=T0 + timedelta(minutes=1))
    before = snapshot(session)
    answer = double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=T0 + timedelta(minutes=2))
    assert answer["error"]["code"] == -31008
    assert snapshot(session) == before
    assert ledger.balance(session, world["org"].id) == Decimal("5000.00")


def test_at_exactly_12_hours_a_transaction_is_either_expired_or_still_blocks_a_second_one(session, world,
                                                                                          payme_settings):
    double = PaymeDouble(session)
    _create(double, {"invoice": world["invoice_ref"]})
    at = T0 + timedelta(milliseconds=payme.TIMEOUT_MS)
    answer = double.call("CreateTransaction", {"id": "b" * 24, "time": DOC_TIME + payme.TIMEOUT_MS, "amount": 500000,
                                               "account": {"invoice": world["invoice_ref"]}}, now=at)
    performed = double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=at)
    # never both: a second transaction accepted while the first can still be performed
    assert "error" in answer or "error" in performed
    assert ledger.balance(session, world["org"].id) <= Decimal("5000.00")


def test_a_statement_without_times_needs_its_period_or_it_would_hide_our_payments(session, world, payme_settings):
    double = PaymeDouble(session)
    _create(double, {"org": world["account"]}, amount=200000)
    double.call("PerformTransaction", {"id": "5305e3bab097f420a62ced0b"}, now=T0 + timedelta(minutes=1))
    with pytest.raises(ValueError):
        payme.reconcile(session, {"transactions": []})
    found = payme.reconcile(session, {"transactions": []}, start_ms=DOC_TIME - 1000, end_ms=DOC_TIME + 1000)
    assert [(d.reference, d.problem) for d in found] == [("5305e3bab097f420a62ced0b", "missing_there")]
