"""/profile: notification history, password change ending other sessions, language."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect
from sqlmodel import Session, col, select

from noventiq_panel.models import Notification, User

from tests.e2e.helpers import new_page, register_verified, sign_in


def test_history_lists_the_users_mail_newest_first_and_opens_a_message(page, db):
    sign_in(page, "owner@demo.example")
    with Session(db) as s:
        user = s.exec(select(User).where(User.email == "owner@demo.example")).one()
        newest = s.exec(select(Notification).where(Notification.user_id == user.id)
                        .order_by(col(Notification.created_at).desc(), col(Notification.id).desc())).first()
        mine = set(s.exec(select(Notification.subject).where(Notification.user_id == user.id)).all())
    page.goto("/profile")
    page.wait_for_selector("#history-table")
    rows = page.locator("#history-table .nq-row")
    expect(rows.first).to_contain_text(newest.subject)
    shown = [rows.nth(i).locator("td").nth(1).inner_text().strip() for i in range(rows.count())]
    assert shown and set(shown) <= mine, "only the user's own mail is listed"
    rows.first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(newest.subject)
    if newest.body_html:
        frame = page.frame_locator("#message-html")
        expect(frame.locator("body")).not_to_be_empty()
    else:
        expect(page.locator("#message-text")).to_contain_text(newest.body_text.strip().splitlines()[0])


def test_changing_the_password_ends_the_other_sessions(browser, base_url, db):
    email = f"pw-{uuid.uuid4().hex[:8]}@example.com"
    register_verified(db, email=email, password="First-pass-2026", name="Пётр Петров", org_name="ООО «Пароль»")
    first = new_page(browser, base_url)
    second = new_page(browser, base_url)
    try:
        sign_in(first, email, "First-pass-2026")
        sign_in(second, email, "First-pass-2026")
        first.goto("/profile")
        first.wait_for_selector("#password-save")
        first.fill("#old-password", "wrong-old-pass")
        first.fill("#new-password", "Second-pass-2026")
        first.fill("#new-password2", "Second-pass-2026")
        first.click("#password-save")
        expect(first.locator("#password-error")).to_contain_text("Текущий пароль указан неверно")
        first.fill("#old-password", "First-pass-2026")
        first.fill("#new-password", "Second-pass-2026")
        first.fill("#new-password2", "Second-pass-2026")
        first.click("#password-save")
        expect(first.get_by_text("Пароль изменён")).to_be_visible()
        second.goto("/account")
        second.wait_for_url(re.compile(r".*/login/?\?next=%2Faccount$"))
        first.goto("/account")
        first.wait_for_selector("#details-form")
    finally:
        first.context.close()
        second.context.close()


def test_language_saved_in_the_profile_switches_the_panel(browser, base_url, db):
    email = f"lang-{uuid.uuid4().hex[:8]}@example.com"
    register_verified(db, email=email, password="Lang-pass-2026", name="Анна Ли", org_name="ООО «Язык»")
    page = new_page(browser, base_url)
    try:
        sign_in(page, email, "Lang-pass-2026")
        expect(page.locator("#page-title")).to_have_text("Главная")
        page.goto("/profile")
        page.wait_for_selector("#profile-locale")
        page.click("#profile-locale")
        page.get_by_role("option", name="English").click()
        with page.expect_navigation():  # the page reloads so server-formatted figures follow the language
            page.click("#profile-save")
        expect(page.locator("#page-title")).to_have_text("Profile")
        with Session(db) as s:
            assert s.exec(select(User).where(User.email == email)).one().locale == "en"
        page.goto("/")
        expect(page.locator("#page-title")).to_have_text("Home")
        expect(page.locator("#balance")).to_contain_text("UZS")  # sums formatted the English way
    finally:
        page.context.close()


def test_two_factor_sign_in_is_turned_on_in_the_profile_and_asked_at_sign_in(browser, base_url, db):
    """Issue 14: enrol with the QR code's key and a code of the app, keep the recovery codes shown
    once, and sign in again: the password alone is not enough, a recovery code is (once)."""
    import pyotp

    from tests.e2e.helpers import shot, sign_out

    email = f"tf-{uuid.uuid4().hex[:8]}@example.com"
    register_verified(db, email=email, password="Two-factor-2026", name="Тимур Фаттахов", org_name="ООО «Два фактора»")
    page = new_page(browser, base_url)
    try:
        sign_in(page, email, "Two-factor-2026")
        page.goto("/profile")
        page.click("#tf-start")
        expect(page.locator("#tf-qr")).to_be_visible()
        secret = page.inner_text("#tf-secret").replace(" ", "").strip()
        shot(page, "profile-two-factor-enrol", "ru")
        page.fill("#tf-code", pyotp.TOTP(secret).now())
        page.click("#tf-confirm")
        expect(page.locator("#tf-codes")).to_be_visible()
        codes = [c.strip() for c in page.locator("#tf-codes code").all_inner_texts()]
        assert len(codes) == 10
        shot(page, "profile-two-factor-codes", "ru")
        page.click("#tf-codes-saved")
        expect(page.locator("#tf-on")).to_be_visible()
        sign_out(page)
        sign_in(page, email, "Two-factor-2026", expect_home=False)
        expect(page.locator("#f-code")).to_be_visible()  # the password alone is not enough
        shot(page, "login-code", "ru")
        page.fill("#f-code", codes[0])
        page.click("#login-submit")
        page.wait_for_selector("#balance")
        sign_out(page)
        sign_in(page, email, "Two-factor-2026", expect_home=False)
        page.fill("#f-code", codes[0])  # used up
        page.click("#login-submit")
        expect(page.locator("#form-error")).to_be_visible()
        assert "/login" in page.url
    finally:
        page.close()
