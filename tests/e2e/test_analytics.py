"""/analytics in a real browser: figures equal the ledger, filters live in the URL (bookmarkable),
charts render, the IaaS section, downloads."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel.state.formatting import fmt_money
from noventiq_panel.services.reporting import filters, spend
from noventiq_panel.services.core.authz import Actor

from tests.e2e.helpers import org_of, shot, sign_in, sign_out, text_of


def ledger_total(db, email: str, preset: str) -> str:
    org, _ = org_of(db, email)
    with Session(db) as s:
        start, end = filters.period_presets(None, org.timezone)[preset]
        st = spend.structure(s, Actor.system(org.id), filters.Filters(start=start, end=end))
        return fmt_money(st.total, st.currency, "ru").replace("\u00a0", " ")


def open_analytics(page, query: str = "") -> None:
    page.goto("/analytics" + query)
    page.wait_for_selector("#total")
    page.wait_for_load_state("networkidle")


def test_figures_equal_the_ledger_and_filters_are_bookmarkable(page, db):
    sign_in(page, "finance@demo.example")
    open_analytics(page)
    expect(page.locator("#page-title")).to_have_text("Аналитика потребления")
    assert text_of(page, "#total") == ledger_total(db, "finance@demo.example", "this_month")
    expect(page.locator("#structure-chart .main-svg").first).to_be_visible()
    expect(page.locator("#dynamics-chart .main-svg").first).to_be_visible()
    shot(page, "analytics", "ru")

    page.click("#filter-period")
    page.get_by_role("option", name="Прошлый месяц").click()
    page.wait_for_url(re.compile(r".*/analytics\?period=last_month$"))
    page.wait_for_load_state("networkidle")
    expected = ledger_total(db, "finance@demo.example", "last_month")
    expect(page.locator("#total")).to_have_text(re.compile(r"\s".join(re.escape(p) for p in expected.split(" "))))
    # The URL is the view: open it afresh (a bookmark) and see the same.
    page.goto(page.url)
    page.wait_for_selector("#total")
    page.wait_for_load_state("networkidle")
    assert text_of(page, "#total") == expected
    expect(page.locator("#filter-period")).to_contain_text("Прошлый месяц")
    assert not page.js_errors


def test_iaas_section_and_download(page, db):
    sign_in(page, "owner@demo.example")
    open_analytics(page, "?period=last_month")
    expect(page.locator("#iaas")).to_be_visible()
    page.locator("#iaas-daily").scroll_into_view_if_needed()  # below the fold: drawn when it comes near
    expect(page.locator("#iaas-chart .main-svg").first).to_be_visible()
    expect(page.locator("#iaas-cumulative-chart .main-svg").first).to_be_visible()
    page.locator("#iaas-dim").get_by_role("radio", name="Ресурсы").click()
    expect(page.locator("#iaas-table")).to_be_visible()
    with page.expect_download() as info:
        page.click("#download-overview-csv")
    download = info.value
    assert download.suggested_filename.startswith("analytics_") and download.suggested_filename.endswith(".csv")
    text = open(download.path(), encoding="utf-8-sig").read()
    assert "Итого" in text
    with page.expect_download() as info:
        page.click("#download-iaas-xlsx")
    assert info.value.suggested_filename.startswith("iaas-usage_")
    shot(page, "analytics-iaas", "ru")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "analytics", "ru", phone=True)
    assert not page.js_errors


def test_vendor_credits_show_apart_in_the_iaas_detail_in_every_language(page, db):
    # the demo's SLA credit of nine days ago, in the last 30 days: the period total says it includes
    # it, and it is a series of its own beside the services it offsets
    from datetime import timedelta

    from noventiq_panel.models import User
    from noventiq_panel.services.core import clock
    from noventiq_panel.services.reporting import iaas
    from noventiq_panel.i18n import t

    org, _ = org_of(db, "owner@demo.example")
    today = clock.local_date(clock.utcnow(), org.timezone)
    start, end = today - timedelta(days=29), today + timedelta(days=1)
    with Session(db) as s:
        detail = iaas.iaas_detail(s, Actor.system(org.id), start, end)
    assert detail.credits < 0
    query = f"?period=custom&from={start.isoformat()}&to={today.isoformat()}"
    try:
        for locale in ("ru", "en", "uz"):
            with Session(db) as s:
                user = s.exec(select(User).where(User.email == "owner@demo.example")).one()
                user.locale = locale
                s.add(user)
                s.commit()
            sign_in(page, "owner@demo.example")  # the language is the user's, taken at sign-in
            open_analytics(page, query)
            amount = fmt_money(detail.credits, detail.currency, locale).replace("\u00a0", " ")
            expect(page.locator("#iaas-credits")).to_have_text(
                t("analytics.iaas.credits_note", locale, amount=amount).replace("\u00a0", " "), use_inner_text=True)
            page.locator("#iaas-daily").scroll_into_view_if_needed()
            row = page.locator("#iaas-table tr", has_text=t("analytics.iaas.credits", locale))
            expect(row).to_have_count(1)
            shot(page, "analytics-iaas-credits", locale)
            sign_out(page)
    finally:
        with Session(db) as s:
            user = s.exec(select(User).where(User.email == "owner@demo.example")).one()
            user.locale = "ru"
            s.add(user)
            s.commit()
    assert not page.js_errors
