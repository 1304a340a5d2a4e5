"""/billing in a real browser: top up by bank transfer, download the invoice, confirm it from the
CLI and see the balance rise; download a closing document; export transactions to XLSX."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from openpyxl import load_workbook
from playwright.sync_api import expect
from pypdf import PdfReader

from tests.e2e.helpers import ROOT, expected_balance, org_of, plain, shot, sign_in, text_of

CLI = str(Path(sys.executable).parent / "noventiq-panel")


def _cli(server, *args: str) -> str:
    env = dict(os.environ, REFLEX_DB_URL=server.db_url, PANEL_BASE_URL=server.base_url, PANEL_SCHEDULER="0")
    done = subprocess.run([CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _open_billing(page, query: str = "") -> None:
    page.goto("/billing" + query)
    page.wait_for_selector("#billing-balance")


def test_top_up_by_bank_transfer_then_confirm_from_the_cli(page, db, server):
    email = "owner@demo.example"
    sign_in(page, email)
    _open_billing(page)
    before = text_of(page, "#billing-balance")
    assert before == expected_balance(db, email, "ru")
    page.click("#topup-open")
    page.fill("#topup-amount", "1500000")
    page.click("#topup-continue")
    expect(page.locator("#topup-confirm-text")).to_contain_text("1 500 000,00")
    page.click("#topup-confirm")
    expect(page.locator("#topup-created")).to_be_visible()
    number = re.search(r"СЧ-\d{4}-\d{6}", plain(page.inner_text("#topup-created"))).group(0)
    shot(page, "billing-topup-done", "ru")
    with page.expect_download() as info:
        page.click("#topup-download")
    download = info.value
    assert download.suggested_filename == f"invoice-{number[3:]}.pdf"
    data = Path(download.path()).read_bytes()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert number in text and "Один миллион пятьсот тысяч сум 00 тийин" in text
    page.keyboard.press("Escape")
    expect(page.locator("#payments-table")).to_contain_text(number)

    out = _cli(server, "payments", "confirm", number)
    assert "credited 1500000.00" in out
    _open_billing(page)
    expected = expected_balance(db, email, "ru")
    assert expected != before
    # the page may show the balance it held a moment ago until its reload has answered
    page.wait_for_function("([sel, want]) => document.querySelector(sel)?.innerText"
                           ".replace(/[\\u00a0\\u202f]/g, ' ').trim() === want", arg=["#billing-balance", expected])
    after = text_of(page, "#billing-balance")
    assert after == expected
    page.click("#tab-transactions")
    expect(page.locator(".tx-running").first).to_be_visible()
    assert plain(page.locator(".tx-running").first.inner_text()) == after  # running balance = balance
    shot(page, "billing-transactions", "ru")


def test_closing_document_download(page, db, server):
    email = "owner@demo.example"
    org, _role = org_of(db, email)
    from datetime import date

    from noventiq_panel.services.core.clock import prev_month

    month = prev_month(date.today())
    _cli(server, "documents", "generate", f"{month:%Y-%m}")
    sign_in(page, email)
    _open_billing(page, "?tab=documents")
    expect(page.locator("#documents-table")).to_be_visible()
    shot(page, "billing-documents", "ru")
    with page.expect_download() as info:
        page.locator(".document-download").first.click()
    data = Path(info.value.path()).read_bytes()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert plain(org.name) in plain(text) and "АКТ-" in text and "СЧЁТ-ФАКТУРА" in text
    # beside it, the electronic invoice for Didox (type 002) of the same document (the Owner's)
    with page.expect_download() as info:
        page.locator(".esf-download").first.click()
    factura = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert factura["BuyerTin"] == org.tax_id and factura["ProductList"]["Products"]
    assert info.value.suggested_filename.startswith("esf-002-")


def test_transactions_export_to_xlsx(page, db):
    sign_in(page, "finance@demo.example")
    _open_billing(page, "?tab=transactions")
    expect(page.locator("#transactions-table")).to_be_visible()
    expect(page.locator("#topup-open")).to_have_count(0)  # a Financial manager only reads
    with page.expect_download() as info:
        page.click("#export-xlsx")
    assert info.value.suggested_filename.endswith(".xlsx")
    ws = load_workbook(io.BytesIO(Path(info.value.path()).read_bytes())).active
    assert ws["A1"].value == "Дата" and ws["F2"].data_type == "n" and ws["F2"].number_format == "#,##0.00"
    assert ws.max_row > 2


def _two_rating_runs_today(engine, email: str) -> None:
    """Two more hours of usage of the organisation's hourly Azure subscription, each rated by its
    own run: today then has at least two usage entries (each run posts its increment of the day)."""
    from datetime import timedelta

    from sqlmodel import Session, select

    from noventiq_panel.models import Plan, Subscription
    from noventiq_panel.services.core import clock
    from noventiq_panel.services.usage import rating
    from tests.services.usage_world import add_usage

    org, _role = org_of(engine, email)
    now = clock.utcnow().replace(minute=0, second=0, microsecond=0)
    with Session(engine, expire_on_commit=False) as s:
        sub = s.exec(select(Subscription).join(Plan, Plan.id == Subscription.plan_id).where(
            Subscription.org_id == org.id, Subscription.status == "active", Plan.billing_type == "payg",
            Plan.granularity == "hour")).first()
        for hours_ago in (2, 1):
            add_usage(s, sub, now - timedelta(hours=hours_ago), 1, services=1, cost="0.5")
            rating.rate_usage(s, now=now)


def test_usage_by_day_switch(page, db):
    """Usage of one day is one row while the switch is on (the default); off, every rating run's
    entry of the day."""
    _two_rating_runs_today(db, "owner@demo.example")
    sign_in(page, "owner@demo.example")
    _open_billing(page, "?tab=transactions")
    expect(page.locator("#tx-group")).to_have_attribute("data-state", "checked")
    usage = page.locator(".tx-row", has_text=re.compile(r"\(\d+ запис"))
    expect(usage.first).to_be_visible()  # today's two runs are one row
    grouped = int(plain(page.locator(".pager-total").inner_text()).split()[-1])
    page.click("#tx-group")
    expect(page.locator("#tx-group")).to_have_attribute("data-state", "unchecked")
    expect(usage).to_have_count(0)
    expect(page.locator(".pager-total")).not_to_have_text(re.compile(rf"\b{grouped}$"))
    assert int(plain(page.locator(".pager-total").inner_text()).split()[-1]) > grouped
    shot(page, "billing-tx-entries", "ru")


def test_topup_query_opens_the_dialog_prefilled(page):
    sign_in(page, "admin@demo.example")
    _open_billing(page, "?topup=250000")
    expect(page.locator("#topup-amount")).to_have_value("250000.00")
    shot(page, "billing-topup", "ru")


def test_the_transactions_date_filter_speaks_the_users_language(page):
    """Issue 19: the date fields show and take dates as the user's language writes them, not as
    the browser's date picker would."""
    sign_in(page, "owner@demo.example")
    _open_billing(page, "?tab=transactions")
    expect(page.locator(".tx-row").first).to_be_visible()
    start = page.locator("#tx-start")
    expect(start).to_have_attribute("placeholder", "ДД.ММ.ГГГГ")
    start.fill("31.02.2026")  # no such day: said (with the form to type), nothing filtered
    page.click("#tx-apply")
    expect(page.get_by_text(re.compile(r"Неверная дата: введите её так"))).to_be_visible()
    start.fill("01.01.2100")  # a day after everything: the list is empty
    page.click("#tx-apply")
    expect(page.locator(".tx-row")).to_have_count(0)
    expect(start).to_have_value("01.01.2100")
    shot(page, "billing-tx-date-filter", "ru")
