"""Found in review of the provisioning queue: a card top-up taken back by the gateway while its money is reserved by an
open manual order."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.config import reset_settings
from noventiq_panel.models import ProvisioningTask
from noventiq_panel.services.billing import card_accounts, payme
from noventiq_panel.services.core import ledger
from noventiq_panel.services.subscriptions import ordering, provisioning
from noventiq_panel.services.vendors import connector as vendor_api
from tests.services.billing.gateway_helpers import configure
from tests.services.billing.test_payme import KEY, MERCHANT, TEST_KEY, basic
from tests.services.subs_world import NOW, world  # noqa: F401

H = timedelta(hours=1)


@pytest.fixture
def payme_on(monkeypatch):
    configure(monkeypatch, {"PANEL_PAYME_MERCHANT_ID": MERCHANT, "PANEL_PAYME_KEY": KEY,
                            "PANEL_PAYME_TEST_KEY": TEST_KEY, "PANEL_PAYME_TEST": "0"})
    yield
    reset_settings()


def _call(session, method, params, now):
    body = json.dumps({"method": method, "params": params, "id": 1})
    return payme.handle(session, body, basic(KEY), now=now)


def test_payme_cancel_after_perform_takes_back_money_an_open_order_reserved(world, payme_on):
    """The customer tops up 30 000 сум by card (Payme), orders one seat of a manual vendor (30 000
    reserved: balance 30 000, available 0), then has the card payment cancelled (CancelTransaction
    after perform). card_accounts.reverse checks ledger.balance (30 000 covers it), not what is
    available, so the money goes back to the card; the operator completes the order (its charge
    needs no funds check: it was 'reserved') and the prepaid organisation is at -30 000 with an
    active licence — paid for with money it took back."""
    vendor_api.unregister("*")
    w = world
    account = card_accounts.account_number(w.org.id)
    pid = "6605e3bab097f420a62ced0b"
    t0 = NOW - 2 * H
    created = _call(w.session, "CreateTransaction", {"id": pid, "time": int(t0.timestamp() * 1000),
                                                     "amount": 3000000, "account": {"org": account}}, t0)
    assert "result" in created, created
    done = _call(w.session, "PerformTransaction", {"id": pid}, t0 + timedelta(minutes=1))
    assert done["result"]["state"] == 2, done
    assert w.balance() == Decimal("30000.00")
    sid = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 1, now=NOW).subscription_id
    w.session.rollback()
    assert ledger.available(w.session, w.org) == Decimal("0.00")
    answer = _call(w.session, "CancelTransaction", {"id": pid, "reason": 5}, NOW + H)
    w.session.rollback()
    task = w.session.exec(select(ProvisioningTask).where(ProvisioningTask.subscription_id == sid)).one()
    if "result" in answer:  # the reversal went through although the money is reserved
        provisioning.complete(w.session, task.id, vendor_ref="KAS-1", operator="Ivan", now=NOW + 2 * H)
    assert w.balance() >= 0 and "error" in answer, (answer, w.balance())
