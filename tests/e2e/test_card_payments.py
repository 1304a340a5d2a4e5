"""Card payments end to end (issue 15): the billing page offers Payme and Click to an organisation
billed in сум, the gateway links carry the right merchant, account and amount, and the gateways'
own calls — made here over HTTP against the server's real endpoints, as Payme and Click would make
them — credit the balance the page then shows.

The gateway pages themselves are never reached: the browser's requests to test.paycom.uz and
my.click.uz are answered by a stub (``context.route``), which records the address."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from decimal import Decimal

from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel.models import User
from noventiq_panel.services.billing.card_accounts import account_number
from tests.e2e.helpers import (
    CLICK_MERCHANT_ID,
    CLICK_SECRET_KEY,
    CLICK_SERVICE_ID,
    PAYME_MERCHANT_ID,
    PAYME_TEST_KEY,
    PHONE,
    new_page,
    org_of,
    plain,
    shot,
    sign_in,
    text_of,
)

EMAIL = "admin@demo.example"  # an Admin of «Ромашка» (billed in сум) may top up; other tests only read as it
GATEWAYS = re.compile(r"^https://(test\.paycom\.uz|checkout\.paycom\.uz|my\.click\.uz)/")


def _balance(db, email: str) -> Decimal:
    from noventiq_panel.services.core import ledger

    org, _ = org_of(db, email)
    with Session(db) as s:
        return Decimal(ledger.balance(s, org.id))


def _stub_gateways(context) -> list[str]:
    """Answer the browser's visits to the gateways' pages locally; the list collects the addresses."""
    seen: list[str] = []

    def handle(route):
        seen.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<html><body>gateway stub</body></html>")

    context.route(GATEWAYS, handle)
    return seen


def _open_topup(page, amount: str) -> None:
    page.goto("/billing")
    page.wait_for_selector("#billing-balance")
    page.click("#topup-open")
    page.fill("#topup-amount", amount)
    expect(page.locator("#topup-amount")).to_have_value(amount)


def _leave_for(page, button: str) -> str:
    """Click a card button: the gateway's page opens in a new tab; its address."""
    with page.context.expect_page() as info:
        page.click(button)
    tab = info.value
    tab.wait_for_load_state()
    url = tab.url
    tab.close()
    return url


def _payme(base_url: str, method: str, params: dict, request_id: int, key: str = PAYME_TEST_KEY) -> dict:
    """One Merchant API call as Payme makes it: JSON-RPC, Basic auth ``Paycom:<key>``."""
    body = json.dumps({"method": method, "params": params, "id": request_id}).encode()
    auth = base64.b64encode(f"Paycom:{key}".encode()).decode()
    req = urllib.request.Request(base_url + "/api/payme", data=body, method="POST", headers={
        "Content-Type": "application/json; charset=UTF-8", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _click_sign(form: dict[str, str], *, complete: bool) -> str:
    """The documented sign_string: md5(click_trans_id + service_id + SECRET_KEY + merchant_trans_id
    [+ merchant_prepare_id] + amount + action + sign_time)."""
    parts = [form["click_trans_id"], form["service_id"], CLICK_SECRET_KEY, form["merchant_trans_id"]]
    if complete:
        parts.append(form["merchant_prepare_id"])
    parts += [form["amount"], form["action"], form["sign_time"]]
    return hashlib.md5("".join(parts).encode()).hexdigest()


def _click(base_url: str, step: str, form: dict[str, str]) -> dict:
    """One SHOP API call as Click makes it: form-encoded POST, signed."""
    signed = {**form, "sign_string": _click_sign(form, complete=step == "complete")}
    req = urllib.request.Request(base_url + f"/api/click/{step}", data=urllib.parse.urlencode(signed).encode(),
                                 method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _wait_balance(page, want: str) -> None:
    # the page may show the balance it held a moment ago until its reload has answered
    page.wait_for_function("([sel, want]) => document.querySelector(sel)?.innerText"
                           ".replace(/[\\u00a0\\u202f]/g, ' ').trim() === want", arg=["#billing-balance", want])


def _payment_row(page, number: str):
    return page.locator("#payments-table .nq-row", has_text=number)


def test_card_top_up_by_payme_and_click(page, db, base_url):
    from noventiq_panel.i18n.format import format_money

    org, _role = org_of(db, EMAIL)
    assert org.billing_currency == "UZS"
    account = account_number(org.id)
    seen = _stub_gateways(page.context)
    sign_in(page, EMAIL)

    # the billing page offers both methods and shows the account number
    page.goto("/billing")
    page.wait_for_selector("#billing-balance")
    expect(page.locator("#card-account")).to_contain_text(account)
    before = _balance(db, EMAIL)

    # Payme: the checkout carries m=<merchant>;ac.org=<account>;a=<tiyin>;c=<return>;l=<lang>
    _open_topup(page, "25000")
    expect(page.locator("#pay-payme")).to_be_visible()
    expect(page.locator("#pay-click")).to_be_visible()
    url = _leave_for(page, "#pay-payme")
    assert url.startswith("https://test.paycom.uz/"), url  # PANEL_PAYME_TEST=1: the sandbox checkout
    decoded = base64.b64decode(url.removeprefix("https://test.paycom.uz/")).decode()
    params = dict(part.split("=", 1) for part in decoded.split(";"))
    assert params["m"] == PAYME_MERCHANT_ID
    assert params["ac.org"] == account
    assert params["a"] == "2500000"  # 25 000 сум in tiyin
    assert params["c"] == f"{base_url}/billing"
    assert params["l"] == "ru"
    assert seen and seen[-1] == url

    # Click: the pay page's query names the service, the account and the amount in сум
    _open_topup(page, "12345.50")
    url = _leave_for(page, "#pay-click")
    parsed = urllib.parse.urlsplit(url)
    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == "https://my.click.uz/services/pay"
    query = dict(urllib.parse.parse_qsl(parsed.query))
    assert query == {"service_id": CLICK_SERVICE_ID, "merchant_id": CLICK_MERCHANT_ID, "amount": "12345.50",
                     "transaction_param": account, "return_url": f"{base_url}/billing"}
    assert _balance(db, EMAIL) == before  # leaving for a gateway writes nothing

    # Payme's calls, over HTTP
    payme_id = uuid.uuid4().hex[:24]
    account_field = {"org": account}
    wrong = _payme(base_url, "CheckPerformTransaction", {"amount": 2500000, "account": account_field}, 1,
                   key="not-the-key")
    assert wrong["error"]["code"] == -32504
    check = _payme(base_url, "CheckPerformTransaction", {"amount": 2500000, "account": account_field}, 2)
    assert check["id"] == 2 and check["result"]["allow"] is True, check
    created = _payme(base_url, "CreateTransaction", {"id": payme_id, "time": int(time.time() * 1000),
                                                      "amount": 2500000, "account": account_field}, 3)
    assert created["id"] == 3 and created["result"]["state"] == 1, created
    assert isinstance(created["result"]["transaction"], str) and created["result"]["create_time"] > 0

    number = f"PAYME-{payme_id}"
    page.goto("/billing")
    page.wait_for_selector("#billing-balance")
    expect(_payment_row(page, number)).to_contain_text("Ожидает оплаты")  # listed as pending
    assert _balance(db, EMAIL) == before

    performed = _payme(base_url, "PerformTransaction", {"id": payme_id}, 4)
    assert performed["id"] == 4, performed
    assert performed["result"]["state"] == 2 and performed["result"]["perform_time"] > 0
    assert performed["result"]["transaction"] == created["result"]["transaction"]
    again = _payme(base_url, "PerformTransaction", {"id": payme_id}, 4)
    assert again["result"] == performed["result"]  # a repeated call answers the same, posts nothing
    assert _balance(db, EMAIL) == before + Decimal(25000)

    # Click's Prepare and Complete, over HTTP
    click_id = str(int(time.time() * 1000) % 10**9)
    form = {"click_trans_id": click_id, "service_id": CLICK_SERVICE_ID, "click_paydoc_id": str(int(click_id) + 7),
            "merchant_trans_id": account, "amount": "12345.50", "action": "0", "error": "0",
            "error_note": "Success", "sign_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S")}
    prepared = _click(base_url, "prepare", form)
    assert prepared["error"] == 0 and prepared["click_trans_id"] == int(click_id), prepared
    assert prepared["merchant_trans_id"] == account
    complete = {**form, "action": "1", "merchant_prepare_id": str(prepared["merchant_prepare_id"])}
    completed = _click(base_url, "complete", complete)
    assert completed["error"] == 0 and completed["error_note"] == "Success", completed
    assert isinstance(completed["merchant_confirm_id"], int)
    assert _click(base_url, "complete", complete)["error"] == -4  # the same Complete again: already paid
    after = _balance(db, EMAIL)
    assert after == before + Decimal(25000) + Decimal("12345.50")

    # the page shows the top-ups: the balance and both payments paid
    page.goto("/billing")
    page.wait_for_selector("#billing-balance")
    want = plain(format_money(after, org.billing_currency, "ru"))
    _wait_balance(page, want)
    assert text_of(page, "#billing-balance") == want
    for paid in (number, f"CLICK-{click_id}"):
        expect(_payment_row(page, paid)).to_contain_text("Оплачен")
    shot(page, "billing-card-paid", "ru")
    assert not page.js_errors, page.js_errors  # type: ignore[attr-defined]


def _set_locale(db, email: str, locale: str) -> str:
    with Session(db) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        old, user.locale = user.locale, locale
        s.add(user)
        s.commit()
        return old


def test_card_buttons_screenshots(browser, base_url, db):
    """The top-up dialog with the card buttons: Russian and English at 1280, Russian at phone width."""
    labels = {"ru": ("Оплатить картой (Payme)", "Оплатить через Click"),
              "en": ("Pay by card (Payme)", "Pay with Click")}
    account = account_number(org_of(db, EMAIL)[0].id)
    for locale, phone in (("ru", False), ("en", False), ("ru", True)):
        old = _set_locale(db, EMAIL, locale)
        page = new_page(browser, base_url, **({"viewport": PHONE} if phone else {}))
        try:
            sign_in(page, EMAIL)
            page.goto("/billing")
            page.wait_for_selector("#billing-balance")
            expect(page.locator("#card-account")).to_contain_text(account)
            page.click("#topup-open")
            page.fill("#topup-amount", "250000")
            expect(page.locator("#pay-payme")).to_have_text(labels[locale][0])
            expect(page.locator("#pay-click")).to_have_text(labels[locale][1])
            shot(page, "billing-card", locale, phone=phone, full_page=False)
            if phone:
                box = page.locator("#pay-click").bounding_box()
                assert box and box["x"] + box["width"] <= PHONE["width"], box  # the buttons fit the screen
        finally:
            page.context.close()
            _set_locale(db, EMAIL, old)
