"""Click SHOP API (services/billing/click.py, POST /api/click/prepare and /api/click/complete)
against a local double of Click. Nothing here has met the real Click: ``ClickDouble`` posts the
form fields the documentation describes (tests/data/click/scenarios.json names the pages), signed
as documented, to the service and over HTTP to the routes.

Hazards: money posted for an unsigned or wrongly signed request, posted twice (a repeated or
simultaneous Complete), posted for a payment Click reports failed, a signature checked over
re-formatted values instead of the text received, a refused request that changes something.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select
from starlette.testclient import TestClient

from noventiq_panel import api
from noventiq_panel.cli import main as cli_main
from noventiq_panel.config import reset_settings
from noventiq_panel.models import ClickTransaction, LedgerEntry, Notification, Payment
from noventiq_panel.services.billing import click
from noventiq_panel.services.core import ledger
from tests.concurrency import at_once
from tests.services.billing.gateway_helpers import (
    MONEY_TABLES,
    card_world,
    configure,
    fill,
)
from tests.services.billing.gateway_helpers import snapshot as snapshot_of

DATA = Path(__file__).resolve().parents[2] / "data" / "click"
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SERVICE_ID, MERCHANT_ID, SECRET = "23456", "11111", "secret-of-the-click-double"
TABLES = (ClickTransaction, *MONEY_TABLES)


@pytest.fixture
def click_settings(monkeypatch):
    configure(monkeypatch, {"PANEL_CLICK_SERVICE_ID": SERVICE_ID, "PANEL_CLICK_MERCHANT_ID": MERCHANT_ID,
                            "PANEL_CLICK_SECRET_KEY": SECRET})
    yield
    reset_settings()


@pytest.fixture
def world(session, click_settings):
    return card_world(session, NOW)


def signed(form: dict, secret: str = SECRET) -> dict:
    """The documented sign_string added to ``form`` (values as they are sent)."""
    parts = [form["click_trans_id"], form["service_id"], secret, form["merchant_trans_id"]]
    if form.get("action") == "1":
        parts.append(form["merchant_prepare_id"])
    parts += [form["amount"], form["action"], form["sign_time"]]
    return {**form, "sign_string": hashlib.md5("".join(parts).encode()).hexdigest()}


class ClickDouble:
    """A double of Click's SHOP API caller: posts Prepare/Complete form fields signed with the
    secret key, to the service or over HTTP (form-encoded) to the routes. It has never been compared
    with the real Click."""

    def __init__(self, session: Session, *, http: bool = False):
        self.session = session
        self.client = TestClient(api.app) if http else None

    def post(self, endpoint: str, form: dict, *, now: datetime = NOW) -> dict:
        if self.client is None:
            step = click.prepare if endpoint == "prepare" else click.complete
            return step(self.session, form, now=now)
        self.session.rollback()  # SQLite: the test's session must not hold the write lock the route needs
        response = self.client.post(f"/api/click/{endpoint}", content=urlencode(form),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200, response.text
        return response.json()

    def prepare(self, ref: str, account: str, amount: str, **extra) -> dict:
        return self.post("prepare", signed({"click_trans_id": ref, "service_id": SERVICE_ID, "click_paydoc_id": ref,
                                            "merchant_trans_id": account, "amount": amount, "action": "0",
                                            "error": "0", "error_note": "Success",
                                            "sign_time": "2026-11-25 13:00:00", **extra}))

    def complete(self, ref: str, account: str, amount: str, prepare_id, *, error: str = "0", now=NOW) -> dict:
        return self.post("complete", signed({"click_trans_id": ref, "service_id": SERVICE_ID, "click_paydoc_id": ref,
                                             "merchant_trans_id": account, "merchant_prepare_id": str(prepare_id),
                                             "amount": amount, "action": "1", "error": error,
                                             "error_note": "Success" if error == "0" else "Failed",
                                             "sign_time": "2026-11-25 13:00:05"}), now=now)


def snapshot(session: Session) -> dict:
    return snapshot_of(session, TABLES)


def matches(answer: dict, expected: dict, name: str) -> None:
    for key, value in expected.items():
        assert key in answer, (name, key, answer)
        if value == "<int>":
            assert isinstance(answer[key], int) and not isinstance(answer[key], bool), (name, key, answer)
        else:
            assert answer[key] == value, (name, key, answer)


@pytest.fixture(params=["service", "http"])
def double(request, session, click_settings):
    return ClickDouble(session, http=request.param == "http")


# ---------------------------------------------------------------- Click's test scenarios

def test_click_scenarios_bad_sign_unknown_order_wrong_amount_prepare_complete_twice_and_cancel(session, world, double):
    spec = json.loads((DATA / "scenarios.json").read_text(encoding="utf-8"))
    names = {"service_id": SERVICE_ID, "invoice": world["invoice_ref"], "org": world["account"]}  # all text
    prepared: dict[str, int] = {}
    answers: dict[str, dict] = {}
    for i, step in enumerate(spec["steps"]):
        form = fill(step["form"], {**names, "merchant_prepare_id": str(prepared.get(step["form"]["click_trans_id"], ""))})
        form = signed(form) if step["sign"] == "good" else {**form, "sign_string": "0" * 32}
        for name in step.get("drop", []):
            form.pop(name)
        before = snapshot(session)
        answer = double.post(step["endpoint"], form)
        if "same_as" in step:
            assert answer == answers[step["same_as"]], step["name"]
        else:
            expected = fill(step["expect"], names)
            if expected.get("click_trans_id") is not None:
                expected["click_trans_id"] = int(expected["click_trans_id"])
            matches(answer, expected, step["name"])
        if answer["error"] != 0 and "Complete of the top-up with Click" not in step["name"]:
            assert snapshot(session) == before, f"{step['name']}: a refused request changed the tables"
        if answer.get("merchant_prepare_id"):
            prepared[form["click_trans_id"]] = answer["merchant_prepare_id"]
        if "balance" in step:
            assert ledger.balance(session, world["org"].id) == Decimal(step["balance"]), step["name"]
            session.rollback()
        answers[step["name"]] = answer
    txs = {tx.click_trans_id: tx for tx in session.exec(select(ClickTransaction)).all()}
    assert {ref: tx.state for ref, tx in txs.items()} == {1007: 1, 1009: -1}
    assert (txs[1009].error, txs[1009].error_note) == (-5017, "Insufficient funds")
    assert [(e.idempotency_key, e.amount) for e in session.exec(select(LedgerEntry)).all()] == [
        ("click:1007", Decimal("5000.00"))]
    invoice = session.get(Payment, world["invoice"].id)
    assert (invoice.status, invoice.paid_amount) == ("paid", Decimal("5000.00"))
    cancelled_top_up = session.exec(select(Payment).where(Payment.number == "CLICK-1009")).one()
    assert (cancelled_top_up.method, cancelled_top_up.status) == ("click", "cancelled")
    assert len(session.exec(select(Notification).where(Notification.kind == "payment_received")).all()) == 1


# ---------------------------------------------------------------- money

def test_two_completes_at_once_post_one_top_up(engine, world, click_settings):
    with Session(engine, expire_on_commit=False) as s:
        prepare_id = ClickDouble(s).prepare("77", world["account"], "25000.00")["merchant_prepare_id"]

    def complete():
        with Session(engine, expire_on_commit=False) as s:
            return ClickDouble(s).complete("77", world["account"], "25000.00", prepare_id)

    answers = at_once(complete, complete)
    assert sorted(a["error"] for a in answers) == [-4, 0]
    with Session(engine) as s:
        assert [(e.idempotency_key, e.amount) for e in s.exec(select(LedgerEntry)).all()] == [
            ("click:77", Decimal("25000.00"))]
        assert ledger.balance(s, world["org"].id) == Decimal("25000.00")


def test_a_top_up_is_credited_with_the_decimals_click_sent_and_signed_over_its_text(session, world, click_settings):
    double = ClickDouble(session)
    # "1500.5" is signed as the text "1500.5"; a signature over "1500.50" would not pass.
    form = {"click_trans_id": "88", "service_id": SERVICE_ID, "click_paydoc_id": "88",
            "merchant_trans_id": world["account"], "amount": "1500.5", "action": "0", "error": "0",
            "error_note": "Success", "sign_time": "2026-11-25 13:00:00"}
    reformatted = signed({**form, "amount": "1500.50"})
    assert double.post("prepare", {**form, "sign_string": reformatted["sign_string"]})["error"] == -1
    answer = double.post("prepare", signed(form))
    assert answer["error"] == 0
    done = double.complete("88", world["account"], "1500.5", answer["merchant_prepare_id"])
    assert done["error"] == 0 and done["merchant_confirm_id"] == answer["merchant_prepare_id"]
    assert ledger.balance(session, world["org"].id) == Decimal("1500.50")
    payment = session.exec(select(Payment).where(Payment.number == "CLICK-88")).one()
    assert (payment.kind, payment.method, payment.status, payment.amount) == ("topup", "click", "paid",
                                                                              Decimal("1500.50"))
    assert session.exec(select(Notification).where(Notification.kind == "payment_received")).one()


def test_a_complete_without_a_prepare_finds_no_transaction(session, world, click_settings):
    before = snapshot(session)
    assert ClickDouble(session).complete("99", world["account"], "5000", 1)["error"] == -6
    assert snapshot(session) == before


def test_a_second_attempt_completed_for_one_invoice_is_kept_as_an_over_payment(session, world, click_settings):
    double = ClickDouble(session)
    ref = world["invoice_ref"]
    first = double.prepare("201", ref, "5000")["merchant_prepare_id"]
    second = double.prepare("202", ref, "5000")["merchant_prepare_id"]  # a new attempt while the first is open
    assert double.complete("201", ref, "5000", first)["error"] == 0
    assert double.complete("202", ref, "5000", second)["error"] == 0  # Click took the money: it is never refused
    invoice = session.get(Payment, world["invoice"].id)
    assert (invoice.status, invoice.paid_amount) == ("paid", Decimal("10000.00"))
    assert ledger.balance(session, world["org"].id) == Decimal("10000.00")


@pytest.mark.parametrize("change, code", [
    ({"service_id": "99999"}, -8),
    ({"click_trans_id": "12a"}, -8),
    ({"error": "x"}, -8),
    ({"amount": "-5000"}, -2),
    ({"amount": "0"}, -2),
    ({"amount": "1e3"}, -2),
    ({"amount": "5000.001"}, -2),
    ({"amount": "NaN"}, -2),
    ({"amount": "99999999999999999"}, -2),
    ({"amount": "60000000"}, -2),  # above PANEL_CARD_MAX
    ({"merchant_trans_id": "СЧ-2026-999999"}, -5),
    ({"action": "1"}, -3),
    ({"error": "-1"}, -9),
])
def test_refused_prepares_answer_the_documented_code_and_change_nothing(session, world, click_settings, change, code):
    form = {"click_trans_id": "300", "service_id": SERVICE_ID, "click_paydoc_id": "300",
            "merchant_trans_id": world["account"], "amount": "5000", "action": "0", "error": "0",
            "error_note": "Success", "sign_time": "2026-11-25 13:00:00", **change}
    if change.get("action") == "1":
        form["merchant_prepare_id"] = "1"
    before = snapshot(session)
    assert ClickDouble(session).post("prepare", signed(form))["error"] == code
    assert snapshot(session) == before


def test_without_a_secret_key_nothing_passes_the_sign_check(session, world, monkeypatch, click_settings):
    monkeypatch.setenv("PANEL_CLICK_SECRET_KEY", "")
    reset_settings()
    form = {"click_trans_id": "300", "service_id": SERVICE_ID, "click_paydoc_id": "300",
            "merchant_trans_id": world["account"], "amount": "5000", "action": "0", "error": "0",
            "error_note": "Success", "sign_time": "2026-11-25 13:00:00"}
    assert ClickDouble(session).post("prepare", signed(form, secret=""))["error"] == -1
    assert not click.configured() and click.pay_url(world["account"], Decimal(5000), "x") is None


def test_the_routes_answer_json_for_a_body_that_is_not_a_form(session, world, click_settings):
    client = TestClient(api.app)
    for body in (b"", b"\xff\xfe", b"x" * 100_000, b"click_trans_id=1"):
        response = client.post("/api/click/prepare", content=body)
        assert response.status_code == 200 and response.json()["error"] == -8


def test_pay_url_carries_service_merchant_amount_and_account(click_settings):
    url = click.pay_url("0000422", Decimal("15000.5"), "https://panel.example/billing")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://my.click.uz/services/pay"
    assert parse_qs(parts.query) == {"service_id": [SERVICE_ID], "merchant_id": [MERCHANT_ID], "amount": ["15000.50"],
                                     "transaction_param": ["0000422"],
                                     "return_url": ["https://panel.example/billing"]}


# ---------------------------------------------------------------- reconciliation

def test_reconcile_an_export_against_our_transactions_and_the_ledger(session, world, click_settings, tmp_path):
    double = ClickDouble(session)
    acct = world["account"]
    for ref in ("401", "402"):
        prepare_id = double.prepare(ref, acct, "2000.00")["merchant_prepare_id"]
        double.complete(ref, acct, "2000.00", prepare_id)
    double.prepare("403", acct, "3000.00")  # prepared, never completed
    export = ("ID транзакции;Сумма;Статус;Лицевой счёт\n"
              f"401;2000,00;Успешно;{acct}\n"
              f"403;3000.00;success;{acct}\n"
              f"404;1000.00;success;{acct}\n")
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    found = click.reconcile(session, click.read_export(export), start, end)
    assert {(d.reference, d.problem) for d in found} == {
        ("403", "state"), ("404", "missing_here"), ("402", "missing_there")}
    # an export that covers the period but names none of our payments hides nothing (review of issue 15)
    assert {(d.reference, d.problem) for d in click.reconcile(session, [], start, end)} == {
        ("401", "missing_there"), ("402", "missing_there")}
    period = ["--from", start.isoformat(), "--to", end.isoformat()]
    path = tmp_path / "click.csv"
    path.write_text("click_trans_id,amount,status\n401,2000.00,success\n402,2000.00,success\n", encoding="utf-8")
    session.rollback()
    result = CliRunner().invoke(cli_main, ["payments", "reconcile", "click", str(path)])
    assert result.exit_code != 0 and "--from and --to" in result.output  # the period is the operator's
    result = CliRunner().invoke(cli_main, ["payments", "reconcile", "click", str(path), *period])
    assert result.exit_code == 0 and "no differences" in result.output, result.output
    path.write_text("when,what\n1,2\n", encoding="utf-8")
    result = CliRunner().invoke(cli_main, ["payments", "reconcile", "click", str(path), *period])
    assert result.exit_code == 1 and "click_trans_id and amount" in result.output
