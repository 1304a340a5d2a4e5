"""Screenshots of every page in every language (Russian, English, Uzbek), desktop (1280) and phone (390) width, into
artifacts/screenshots/<page>-<locale>[-phone].png. Each also checks the page rendered its title
and nothing overflows the phone screen sideways."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel.i18n import LOCALES, t
from noventiq_panel.models import Plan, Subscription, User

from tests.e2e.helpers import DESKTOP, PHONE, new_page, org_of, shot, sign_in

EMAIL = "owner@demo.example"
PUBLIC = [("login", "/login", "#login-form"), ("register", "/register", "#register-form"),
          ("recovery", "/recovery", "#recovery-form"),
          ("verify-invalid", "/verify/not-a-real-token-0000000000000000", "#verify-invalid")]


def _pages(db) -> list[tuple[str, str, str]]:
    org, _ = org_of(db, EMAIL)
    with Session(db) as s:
        sub = s.exec(select(Subscription).where(Subscription.org_id == org.id).order_by(Subscription.id)).first()
        payg = s.exec(select(Subscription).join(Plan, Plan.id == Subscription.plan_id)
                      .where(Subscription.org_id == org.id, Plan.billing_type == "payg")
                      .order_by(Subscription.id)).first()
    return [
        ("home", "/", "#balance"),
        ("subscriptions", "/subscriptions", "#page-title"),
        ("subscription", f"/subscriptions/{sub.id}", "#page-title"),
        ("subscription-usage", f"/subscriptions/{payg.id}?tab=usage", "#anomalies .cost-anomaly"),
        ("catalog", "/catalog", "#page-title"),
        ("billing", "/billing", "#page-title"),
        ("billing-tx", "/billing?tab=transactions", ".tx-row"),
        ("analytics", "/analytics", "#page-title"),
        ("account", "/account", "#details-form"),
        ("account-users", "/account?tab=users", ".member-row"),
        ("profile", "/profile", "#history-table"),
        ("help", "/help", "#faq"),
    ]


def _viewports(locale: str):
    """Desktop in every language; the phone in Russian and Uzbek (the longest texts), not again in
    English (the suite's time)."""
    return ((DESKTOP, False),) if locale == "en" else ((DESKTOP, False), (PHONE, True))


def _no_sideways_scroll(page, name):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"{name}: the page is {width}px wide on a {PHONE['width']}px phone"


def _set_user_locale(db, email, locale):
    with Session(db) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        user.locale = locale
        s.add(user)
        s.commit()


@pytest.mark.parametrize("locale", LOCALES)
def test_public_pages(browser, base_url, locale):
    for viewport, phone in _viewports(locale):
        page = new_page(browser, base_url, viewport=viewport)
        try:
            page.goto("/login")
            page.wait_for_selector("#login-form")
            if locale != "ru":
                page.click(f"#lang-{locale}")
                expect(page.locator("#login-submit")).to_have_text(t("signin.login.submit", locale))
            for name, path, ready in PUBLIC:
                page.goto(path)
                page.wait_for_selector(ready)
                page.wait_for_load_state("networkidle")
                shot(page, name, locale, phone=phone)
                if phone:
                    _no_sideways_scroll(page, name)
        finally:
            page.context.close()


@pytest.mark.parametrize("locale", LOCALES)
def test_signed_in_pages(browser, base_url, db, locale):
    pages = _pages(db)
    _set_user_locale(db, EMAIL, locale)
    try:
        for viewport, phone in _viewports(locale):
            page = new_page(browser, base_url, viewport=viewport)
            try:
                sign_in(page, EMAIL)
                expect(page.locator("#page-title")).to_have_text(t("home.title", locale))
                for name, path, ready in pages:
                    page.goto(path)
                    page.wait_for_selector(ready, state="attached")
                    page.wait_for_load_state("networkidle")
                    shot(page, name, locale, phone=phone)
                    if name == "billing-tx":  # entries are described in the user's language
                        usage = t("billing.tx.action.usage", locale)
                        expect(page.locator("body")).to_contain_text(usage + (": " if locale == "ru" else ", "))
                    if phone:
                        _no_sideways_scroll(page, name)
                if not phone:
                    page.goto("/profile")
                    page.wait_for_selector("#history-table")
                    page.locator("#history-table .nq-row").first.click()
                    page.get_by_role("dialog").wait_for()
                    shot(page, "profile-message", locale, full_page=False)
                    page.keyboard.press("Escape")
                    page.goto("/")
                    page.wait_for_selector("#balance")
                    page.click("#user-menu")
                    page.click("#menu-language")
                    shot(page, "user-menu", locale, full_page=False)
                    page.keyboard.press("Escape")
                else:
                    page.goto("/")
                    page.wait_for_selector("#balance")
                    page.click("#menu-open")
                    page.wait_for_timeout(500)
                    shot(page, "menu-drawer", locale, phone=True, full_page=False)
            finally:
                page.context.close()
    finally:
        _set_user_locale(db, EMAIL, "ru")


def test_financial_manager_account_page(browser, base_url):
    page = new_page(browser, base_url)
    try:
        sign_in(page, "finance@demo.example")
        page.goto("/account?tab=users")
        page.wait_for_selector("#members-table")
        shot(page, "account-users-finance", "ru")
    finally:
        page.context.close()


def test_dark_theme(browser, base_url):
    page = new_page(browser, base_url, color_scheme="dark")
    try:
        sign_in(page, EMAIL)
        shot(page, "home-dark", "ru")
    finally:
        page.context.close()
