"""Sign-in, sign-out, recovery and registration in a real browser."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    PASSWORD,
    expected_balance,
    latest_mail,
    link_in,
    org_of,
    plain,
    shot,
    sign_in,
    sign_out,
    text_of,
    user_of,
    wait_ready,
)

DEMO_ROLES = [
    ("owner@demo.example", "owner"),
    ("admin@demo.example", "admin"),
    ("finance@demo.example", "finance"),
    ("owner@other.example", "owner"),
]


def test_signed_out_visitor_is_sent_to_login_and_back_to_the_page_asked_for(page):
    page.goto("/profile")
    page.wait_for_url(re.compile(r".*/login/?\?next=%2Fprofile$"))
    shot(page, "login", "ru")
    sign_in(page, "admin@demo.example", expect_home=False, goto=False)
    page.wait_for_url(re.compile(r".*/profile/?$"))
    expect(page.locator("#page-title")).to_have_text("Профиль")


@pytest.mark.parametrize("email,role", DEMO_ROLES)
def test_each_demo_role_sees_home_with_the_ledger_balance(page, db, email, role):
    sign_in(page, email)
    org, member_role = org_of(db, email)
    assert member_role == role
    expect(page.locator("#balance")).not_to_be_empty()
    assert text_of(page, "#balance") == expected_balance(db, email, "ru")
    assert plain(page.inner_text("#org-link, #org-switcher")) == plain(org.name)
    if org.billing_mode == "postpaid":
        expect(page.locator("#credit-limit")).to_be_visible()
    else:
        expect(page.locator("#credit-limit")).to_have_count(0)


def test_wrong_password_is_refused_with_a_message_and_no_session(page, context):
    sign_in(page, "owner@demo.example", "not-the-password", expect_home=False)
    expect(page.locator("#form-error")).to_contain_text("Неверный")
    assert re.search(r"/login/?$", page.url)
    assert not [c for c in context.cookies() if c["name"] == "nq_session" and c["value"]]
    page.goto("/")
    page.wait_for_url(re.compile(r".*/login/?$"))


def test_repeated_failures_throttle_sign_in_of_that_account(page):
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    for _ in range(6):
        sign_in(page, email, "wrong-password", expect_home=False)
        page.wait_for_selector("#form-error")
    expect(page.locator("#form-error")).to_contain_text("Слишком много попыток")


def test_sign_out_ends_the_session_and_forgets_the_page_data(page, context):
    sign_in(page, "owner@demo.example")
    sign_out(page)
    assert not [c for c in context.cookies() if c["name"] == "nq_session" and c["value"]]
    page.goto("/account")
    page.wait_for_url(re.compile(r".*/login/?\?next=%2Faccount$"))
    expect(page.locator("body")).not_to_contain_text("Ромашка")


def test_password_recovery_end_to_end(page, db, base_url):
    from sqlmodel import Session, select

    from noventiq_panel.models import User
    from noventiq_panel.services.identity import auth

    email = "admin@other.example"
    before = latest_mail(db, email, "password_reset")
    page.goto("/login")
    page.click("#link-recovery")
    page.wait_for_selector("#recovery-form")
    page.fill("#f-email", email)
    page.click("#recovery-submit")
    expect(page.locator("#recovery-sent")).to_be_visible()
    shot(page, "recovery-sent", "ru")
    mail = latest_mail(db, email, "password_reset")
    assert mail is not None and (before is None or mail.id != before.id)
    link = link_in(db, mail)
    new_password = "Novyi-parol-2026"
    try:
        page.goto(link)
        page.wait_for_selector("#reset-form")
        expect(page.locator("#reset-form")).to_contain_text(email)
        shot(page, "reset", "ru")
        page.fill("#f-password", new_password)
        page.fill("#f-password2", new_password)
        page.click("#reset-submit")
        expect(page.locator("#reset-done")).to_be_visible()
        # The link is single-use.
        page.goto(link)
        expect(page.locator("#reset-invalid")).to_be_visible()
        # The old password no longer works, the new one does.
        sign_in(page, email, PASSWORD, expect_home=False)
        expect(page.locator("#form-error")).to_be_visible()
        sign_in(page, email, new_password)
        assert text_of(page, "#balance") == expected_balance(db, email)
    finally:
        with Session(db) as s:
            user = s.exec(select(User).where(User.email == email)).one()
            user.password_hash = auth.hash_password(PASSWORD)
            s.add(user)
            s.commit()


def test_recovery_answers_the_same_for_an_unknown_address(page, db):
    email = f"unknown-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/recovery")
    wait_ready(page)  # a click before the page is connected submits nothing
    page.fill("#f-email", email)
    page.click("#recovery-submit")
    expect(page.locator("#recovery-sent")).to_be_visible()
    assert latest_mail(db, email, "password_reset") is None


def test_a_forged_reset_link_is_refused(page):
    page.goto("/reset/not-a-real-token-000000000000000000")
    expect(page.locator("#reset-invalid")).to_be_visible()


def _register(page, email: str, org_name: str, password: str) -> None:
    page.goto("/register")
    page.wait_for_selector("#register-form")
    wait_ready(page)
    page.fill("#f-name", "Нодира Султанова")
    page.fill("#f-email", email)
    page.fill("#f-org_name", org_name)
    page.fill("#f-password", password)
    page.fill("#f-password2", password)
    page.click("#register-submit")
    expect(page.locator("#register-sent")).to_contain_text(email)


def test_registration_signs_in_only_after_the_mailbox_link(page, db):
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/login")
    page.click("#link-register")
    page.wait_for_selector("#register-form")
    shot(page, "register", "ru")
    _register(page, email, "ООО «Новая Заря»", "Zarya-2026-pass")
    shot(page, "register-check-mail", "ru")
    assert latest_mail(db, email, "welcome") is None
    # the right password, the mailbox not proven: told so, offered the link again, no session
    sign_in(page, email, "Zarya-2026-pass", expect_home=False)
    expect(page.locator("#form-error")).to_be_visible()
    page.click("#resend-verification")
    expect(page.locator("#resent")).to_be_visible()
    shot(page, "login-unverified", "ru")
    page.goto("/")
    page.wait_for_url(re.compile(r".*/login"))
    mail = latest_mail(db, email, "verify_email")
    page.goto(link_in(db, mail))
    # opening the link verifies nothing (a mail scanner follows links): the visitor confirms
    expect(page.locator("#verify-email")).to_have_text(email)
    shot(page, "verify-confirm", "ru")
    assert user_of(db, email).email_verified_at is None
    page.fill("#f-password", "not-my-password-1")  # only who chose the password proves the account
    page.click("#verify-confirm")
    expect(page.locator("#form-error")).to_be_visible()
    assert user_of(db, email).email_verified_at is None
    page.fill("#f-password", "Zarya-2026-pass")
    page.click("#verify-confirm")
    expect(page.locator("#verify-done")).to_be_visible()
    shot(page, "verify-done", "ru")
    page.goto(link_in(db, mail))  # single use
    expect(page.locator("#verify-invalid")).to_be_visible()
    sign_in(page, email, "Zarya-2026-pass")
    org, role = org_of(db, email)
    assert (org.name, role) == ("ООО «Новая Заря»", "owner")
    assert text_of(page, "#balance") == expected_balance(db, email)
    expect(page.locator("#org-link")).to_have_text("ООО «Новая Заря»")
    # Nothing of the demo organisations leaks into the new one.
    expect(page.locator("body")).not_to_contain_text("Ромашка")


def test_an_address_registered_first_by_a_squatter_goes_to_the_real_owner(page, db):
    """Issue 14, pre-registration takeover: someone registers a future customer's address; the
    reseller then creates that customer. The squatter never gets in; the mailbox's owner does."""
    from sqlmodel import Session

    from noventiq_panel.services.identity import organisations

    email = f"director-{uuid.uuid4().hex[:8]}@example.com"
    _register(page, email, "ООО «Пустышка»", "Squatter-2026-pass")
    with Session(db) as s:
        organisations.create_customer(s, org_name="ООО «Настоящая фирма»", tax_id="", owner_email=email,
                                      owner_name="Настоящий Директор")
    sign_in(page, email, "Squatter-2026-pass", expect_home=False)
    expect(page.locator("#form-error")).to_be_visible()
    assert "/login" in page.url
    page.goto(link_in(db, latest_mail(db, email, "welcome")))
    page.wait_for_selector("#reset-form")
    page.fill("#f-password", "Real-owner-2026")
    page.fill("#f-password2", "Real-owner-2026")
    page.click("#reset-submit")
    expect(page.locator("#reset-done")).to_be_visible()
    sign_in(page, email, "Real-owner-2026")
    page.click("#org-switcher")  # the squatter's empty organisation came with the address; the real one too
    expect(page.locator("[role=menu]")).to_contain_text("ООО «Настоящая фирма»")
    shot(page, "squatter-lost", "ru")


def test_registration_with_a_taken_email_says_so(page):
    page.goto("/register")
    page.fill("#f-name", "Кто-то")
    page.fill("#f-email", "owner@demo.example")
    page.fill("#f-org_name", "ООО «Дубль»")
    page.fill("#f-password", "Dubl-2026-pass")
    page.fill("#f-password2", "Dubl-2026-pass")
    page.click("#register-submit")
    expect(page.locator("#form-error")).to_be_visible()
    assert re.search(r"/register/?$", page.url)


def test_a_known_customers_tax_id_cannot_be_registered_again(page, db):
    """Issue 14, invoices in someone else's name: copying a customer's tax id on sign-up is
    refused with a pointer to the colleague invitation; nothing is created."""
    from sqlmodel import Session, select

    from noventiq_panel.models import Organisation

    with Session(db) as s:
        victim = s.exec(select(Organisation).where(Organisation.tax_id != "").order_by(Organisation.id)).first()
        count = len(s.exec(select(Organisation.id)).all())
    email = f"copycat-{uuid.uuid4().hex[:8]}@example.com"
    page.goto("/register")
    page.wait_for_selector("#register-form")
    wait_ready(page)
    page.fill("#f-name", "Копия")
    page.fill("#f-email", email)
    page.fill("#f-org_name", victim.name)
    page.fill("#f-tax_id", victim.tax_id)
    page.fill("#f-password", "Copycat-2026-pass")
    page.fill("#f-password2", "Copycat-2026-pass")
    page.click("#register-submit")
    expect(page.locator("#form-error")).to_contain_text("пригласить")
    shot(page, "register-tax-id-taken", "ru")
    with Session(db) as s:
        assert len(s.exec(select(Organisation.id)).all()) == count


def test_pages_carry_the_security_headers_and_still_work_under_them(page):
    """The Content-Security-Policy is strict enough to keep the panel out of frames and foreign
    scripts, and loose enough for the compiled app: the sign-in page answers and connects."""
    response = page.goto("/login")
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    wait_ready(page)
    expect(page.locator("#login-form")).to_be_visible()
