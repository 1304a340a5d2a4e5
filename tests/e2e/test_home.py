"""The home page: the figures come from the services, alerts appear when something needs the user."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta
from decimal import Decimal

from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel.i18n.format import format_date, format_money
from noventiq_panel.models import Budget, BudgetAlert, Payment
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.reporting import dashboard
from noventiq_panel.services.core.authz import Actor

from tests.e2e.helpers import PHONE, new_page, org_of, plain, sign_in, sign_out, text_of


def _dashboard(db, email):
    org, _ = org_of(db, email)
    from noventiq_panel.models import User

    with Session(db) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        return dashboard.get_dashboard(s, Actor(user.id, org.id))


def _amount(text: str) -> Decimal:
    return Decimal(re.sub(r"[^\d,]", "", text).replace(",", "."))


def test_consumption_and_forecast_are_the_dashboard_service_figures(page, db):
    before = _dashboard(db, "owner@demo.example")
    sign_in(page, "owner@demo.example")
    after = _dashboard(db, "owner@demo.example")
    assert text_of(page, "#month-to-date") == plain(format_money(after.month_to_date, after.currency, "ru"))
    # The usage projection shrinks as the month goes on (same usage, more time elapsed): the page's
    # figure lies between the ones computed just before and just after it loaded.
    assert after.forecast <= _amount(text_of(page, "#forecast")) <= before.forecast
    assert after.forecast >= after.month_to_date > 0


def test_rates_of_the_day_with_their_date(page, db):
    sign_in(page, "owner@demo.example")
    with Session(db) as s:
        today = clock.local_date(clock.utcnow(), "Asia/Tashkent")
        latest = rates.latest_rates(s, today)
    assert {r.currency for r in latest} == {"USD", "EUR", "RUB"}
    card = page.locator("#rates-card")
    for r in latest:
        item = card.locator(".rate-item", has_text=f"1 {r.currency}")
        expect(item).to_contain_text(plain(format_money(r.rate, "UZS", "ru")).split(" ")[0])
    newest = max(r.rate_date for r in latest)
    assert plain(format_date(newest, "ru")) in text_of(page, "#rates-date")


def test_expiring_soon_lists_subscriptions_with_links(page, db):
    sign_in(page, "owner@demo.example")
    d = _dashboard(db, "owner@demo.example")
    items = page.locator(".soon-item")
    expect(items).to_have_count(min(len(d.soon), 8))
    first = d.soon[0]
    expect(items.first).to_contain_text(first.name)
    href = items.first.locator("a").get_attribute("href")
    assert href == f"/subscriptions/{first.subscription_id}"


def test_quick_links_lead_to_their_sections(page):
    sign_in(page, "admin@demo.example")
    for link, path in (("#link-subscriptions", "/subscriptions"), ("#link-payments", "/billing"),
                       ("#link-buy", "/catalog")):
        page.goto("/")
        page.wait_for_selector("#balance")
        page.click(link)
        page.wait_for_url(re.compile(rf".*{path}/?$"))
        expect(page.locator("#page-title")).to_be_visible()


def test_overdue_payment_and_crossed_budget_raise_alerts(page, db):
    org, _ = org_of(db, "owner@demo.example")
    number = f"T-{uuid.uuid4().hex[:6]}"
    with Session(db) as s:
        pay = Payment(org_id=org.id, number=number, kind="topup", amount=Decimal("1250000.00"), currency="UZS",
                      status="pending", due_date=date.today() - timedelta(days=3), purpose="test")
        budget = s.exec(select(Budget).where(Budget.org_id == org.id)).first()
        assert budget is not None, "the demo has a budget"
        month = clock.month_start(clock.local_date(clock.utcnow(), org.timezone))
        existing = s.exec(select(BudgetAlert).where(BudgetAlert.budget_id == budget.id, BudgetAlert.month == month)).all()
        alert = None
        if not existing:
            alert = BudgetAlert(budget_id=budget.id, month=month, percent="80", kind="actual",
                                spent=budget.amount * Decimal("0.8"))
            s.add(alert)
        s.add(pay)
        s.commit()
        pay_id, alert_id = pay.id, alert.id if alert else None
    try:
        sign_in(page, "finance@demo.example")
        overdue = page.locator('.home-alert[data-kind="payment_overdue"]', has_text=number)
        expect(overdue).to_be_visible()
        expect(overdue).to_contain_text("просрочен")
        expect(page.locator('.home-alert[data-kind="budget"]')).to_be_visible()
    finally:
        with Session(db) as s:
            s.delete(s.get(Payment, pay_id))
            if alert_id:
                s.delete(s.get(BudgetAlert, alert_id))
            s.commit()


def test_phone_width_menu_opens_in_a_drawer(browser, base_url):
    page = new_page(browser, base_url, viewport=PHONE)
    try:
        sign_in(page, "owner@demo.example")
        expect(page.locator("#menu-home")).to_be_hidden()
        page.click("#menu-open")
        page.locator("#menu-billing").last.click()
        page.wait_for_url(re.compile(r".*/billing/?$"))
        # Nothing is wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1
    finally:
        page.context.close()


def test_a_financial_manager_sees_no_call_to_action_that_would_be_refused(page):
    """Issue 19: the read-only role sees the same data and no "Buy", order or top-up control."""
    sign_in(page, "finance@demo.example")
    expect(page.locator("#balance")).to_be_visible()
    for selector in ("#buy-subscription", "#top-up-link", "#link-buy"):
        expect(page.locator(selector)).to_have_count(0)
    page.goto("/subscriptions")
    expect(page.locator("#subscriptions-table, #subs-empty").first).to_be_visible()
    expect(page.locator("#buy-subscription")).to_have_count(0)
    page.goto("/catalog")
    expect(page.locator("#catalog-read-only")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Заказать|Попробовать"))).to_have_count(0)
    sign_out(page)
    sign_in(page, "owner@demo.example")
    for selector in ("#buy-subscription", "#top-up-link", "#link-buy"):
        expect(page.locator(selector)).to_be_visible()


def test_the_site_icon_is_served(page, base_url):
    """Issue 19: no 404 for /favicon.ico logged on every page."""
    response = page.request.get(base_url.rstrip("/") + "/favicon.ico")
    assert response.status == 200 and response.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file


def test_cost_anomaly_alert_leads_to_its_explanation_and_switch(page, db):
    """The demo's GPU machine left running for a day: the home page alerts it with the mail's
    sentence; its link opens the subscription's Usage tab with the services and resource groups
    behind it; the Owner turns the alerts off and on there."""
    from noventiq_panel.models import CostAnomaly, Subscription

    org, _ = org_of(db, "owner@demo.example")
    with Session(db) as s:
        anomaly = s.exec(select(CostAnomaly).where(CostAnomaly.org_id == org.id)).one()
    sign_in(page, "owner@demo.example")
    alert = page.locator('.home-alert[data-kind="cost_anomaly"]')
    expect(alert).to_contain_text("намного больше ожидаемых")
    expect(alert).to_contain_text(plain(format_money(anomaly.actual, anomaly.currency, "ru")))
    alert.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/subscriptions/{anomaly.subscription_id}\?tab=usage"))
    item = page.locator("#anomalies .cost-anomaly")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("rg-ml-test")
    expect(item).to_contain_text("Virtual Machines")
    switch = page.locator("#anomaly-alerts")
    expect(switch).to_have_attribute("data-state", "checked")
    try:
        switch.click()
        expect(page.get_by_text("Оповещения об аномалиях выключены.")).to_be_visible()
        expect(switch).to_have_attribute("data-state", "unchecked")
        with Session(db) as s:
            assert s.get(Subscription, anomaly.subscription_id).anomaly_alerts is False
    finally:
        with Session(db) as s:
            sub = s.get(Subscription, anomaly.subscription_id)
            sub.anomaly_alerts = True
            s.add(sub)
            s.commit()
