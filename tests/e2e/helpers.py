"""Helpers of the end-to-end tests (imported by the test modules; fixtures are in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "demo12345"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000

# The card gateways of the e2e server (conftest.py puts them in its environment; test_card_payments.py
# calls the endpoints as Payme and Click would). Payme runs in test mode: the test key is accepted.
PAYME_MERCHANT_ID = "5e730e8e0b852a417aa49ceb"
PAYME_KEY = "e2e-payme-production-key"
PAYME_TEST_KEY = "e2e-payme-test-key"
CLICK_SERVICE_ID = "30001"
CLICK_MERCHANT_ID = "20001"
CLICK_SECRET_KEY = "e2e-click-secret"
CARD_ENV = {
    "PANEL_PAYME_MERCHANT_ID": PAYME_MERCHANT_ID,
    "PANEL_PAYME_KEY": PAYME_KEY,
    "PANEL_PAYME_TEST_KEY": PAYME_TEST_KEY,
    "PANEL_PAYME_TEST": "1",
    "PANEL_CLICK_SERVICE_ID": CLICK_SERVICE_ID,
    "PANEL_CLICK_MERCHANT_ID": CLICK_MERCHANT_ID,
    "PANEL_CLICK_SECRET_KEY": CLICK_SECRET_KEY,
}


def new_page(browser, base_url, **kw):
    """A second, independent browser (another user) inside one test."""
    ctx = browser.new_context(viewport=kw.pop("viewport", DESKTOP), base_url=base_url, locale="ru-RU",
                              timezone_id="Asia/Tashkent", **kw)
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx.new_page()


def wait_ready(page) -> None:
    """The websocket is connected and the page's on_load finished (the layout shows the content)."""
    page.wait_for_load_state("networkidle")


def sign_in(page, email: str, password: str = PASSWORD, *, expect_home: bool = True, goto: bool = True) -> None:
    """Sign in through the form (``goto=False``: on the sign-in page already shown, keeping ?next=)."""
    if goto:
        page.goto("/login")
    page.wait_for_selector("#login-form")
    page.fill("#f-email", email)
    page.fill("#f-password", password)
    page.click("#login-submit")
    if expect_home:
        page.wait_for_selector("#balance")


def sign_out(page) -> None:
    page.click("#user-menu")
    page.click("#menu-sign-out")
    page.wait_for_url(re.compile(r".*/login/?$"))


def text_of(page, selector: str) -> str:
    """Visible text with no-break spaces made plain (Babel puts U+00A0 in sums)."""
    return page.inner_text(selector).replace("\u00a0", " ").replace("\u202f", " ").strip()


def plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ").strip()


def shot(page, name: str, locale: str = "ru", *, phone: bool = False, full_page: bool = True) -> Path:
    """Screenshot into artifacts/screenshots/<name>-<locale>[-phone].png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{locale}{'-phone' if phone else ''}.png"
    if page.locator(".nq-lazy").count():  # parts drawn when they come near the screen (charts)
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_timeout(300)
        page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)  # let toasts and transitions settle
    page.screenshot(path=str(path), full_page=full_page)
    return path


def user_of(engine, email: str):
    """The user row of ``email``, read from the server's database (detached)."""
    from sqlmodel import Session, select

    from noventiq_panel.models import User

    with Session(engine) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        s.expunge(user)
        return user


def org_of(engine, email: str):
    """(organisation, role) of a user's first active membership, read from the server's database."""
    from sqlmodel import Session, select

    from noventiq_panel.models import Membership, Organisation, User

    with Session(engine) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        m = s.exec(select(Membership).where(Membership.user_id == user.id, Membership.is_active == True)  # noqa: E712
                   .order_by(Membership.id)).first()
        org = s.get(Organisation, m.org_id)
        s.expunge(org)
        return org, m.role


def expected_balance(engine, email: str, locale: str = "ru") -> str:
    """The balance of the user's organisation from the ledger, formatted as the page must show it."""
    from sqlmodel import Session

    from noventiq_panel.i18n.format import format_money
    from noventiq_panel.services.core import ledger

    org, _ = org_of(engine, email)
    with Session(engine) as s:
        return plain(format_money(ledger.balance(s, org.id), org.billing_currency, locale))


def latest_mail(engine, to_email: str, kind: str):
    from sqlmodel import Session, col, select

    from noventiq_panel.models import Notification

    with Session(engine) as s:
        row = s.exec(select(Notification).where(Notification.to_email == to_email, Notification.kind == kind)
                     .order_by(col(Notification.id).desc())).first()
        if row is not None:
            s.expunge(row)
        return row


def link_in(engine, mail) -> str:
    """The /reset/<token> or /verify/<token> path of a mail with a secret link (its secret waits
    beside the outbox until the mail is sent: notifications.text_to_send)."""
    from sqlmodel import Session

    from noventiq_panel.services.notify import notifications

    with Session(engine) as s:
        text = notifications.text_to_send(s, mail)
    m = re.search(r"/(reset|verify)/[A-Za-z0-9_\-]+", text)
    assert m and not notifications.MARK_PATTERN.search(m.group(0)), f"no secret link in the e-mail {mail.subject!r}"
    return m.group(0)


def register_verified(engine, **fields):
    """Sign up through the service, as the /register page does, and open the mailed verification
    link (the account can sign in then). Returns the user."""
    from sqlmodel import Session, col, select

    from noventiq_panel.models import Notification
    from noventiq_panel.services.identity import registration, verification
    from noventiq_panel.services.notify import notifications

    with Session(engine) as s:
        user = registration.register(s, **fields)
        mail = s.exec(select(Notification).where(Notification.user_id == user.id,
                                                 Notification.kind == "verify_email")
                      .order_by(col(Notification.id).desc())).first()
        verification.verify(s, notifications.mail_secret(s, mail.id).secret, fields["password"])
        s.refresh(user)
        s.expunge(user)
    return user


def set_locale(engine, user_id: int, locale: str) -> None:
    """The user's interface language, as the profile page stores it (takes effect at the next sign-in)."""
    from sqlmodel import Session

    from noventiq_panel.models import User

    with Session(engine) as s:
        u = s.get(User, user_id)
        u.locale = locale
        s.add(u)
        s.commit()


def confirmed_tenant(engine, email: str) -> str:
    """The organisation of ``email`` gets a Microsoft tenant, claimed by that member and confirmed by
    the operator (through the services), so its Microsoft orders go ahead. Returns the tenant id."""
    import uuid

    from sqlmodel import Session

    from noventiq_panel.services.core.authz import Actor
    from noventiq_panel.services.identity import microsoft_tenant

    user = user_of(engine, email)
    org, _role = org_of(engine, email)
    tenant_id = str(uuid.uuid4())
    with Session(engine) as s:
        microsoft_tenant.link(s, Actor(user.id, org.id), tenant_id, accepted=True)
        microsoft_tenant.confirm(s, org.id, tenant_id, operator="E2E operator")
    return tenant_id


def sign_in_as_locale(page, engine, user_id: int, email: str, locale: str) -> None:
    """Sign in again with the user's interface language set to ``locale``."""
    set_locale(engine, user_id, locale)
    sign_out(page)
    sign_in(page, email)


def phone_shot(page, name: str, locale: str = "ru") -> Path:
    """The page at a phone's width (390 px), then back to the desktop width."""
    page.set_viewport_size({"width": 390, "height": 844})
    path = shot(page, name, locale, phone=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    return path
