"""An invitation of someone who already has an account waits for their consent, in a browser."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel.models import Membership, Organisation, User

from tests.e2e.helpers import new_page, register_verified, shot, sign_in

PASSWORD = "Svoi-parol-2026"


def test_existing_account_accepts_the_invitation_before_the_inviter_sees_anything(page, browser, base_url, db):
    email = f"elsewhere-{uuid.uuid4().hex[:8]}@example.com"
    # someone who already works in an organisation of their own
    register_verified(db, email=email, password=PASSWORD, name="Настоящее Имя", org_name="ООО «Своя»",
                      tax_id="", locale="ru")

    sign_in(page, "owner@demo.example")
    page.goto("/account?tab=users")
    page.wait_for_selector("#members-table")
    page.click("#invite-open")
    page.fill("#invite-email", email)
    page.fill("#invite-name", "Кто угодно")
    page.click("#invite-submit")
    row = page.locator(f'.member-row[data-email="{email}"]')
    expect(row).to_contain_text("Приглашён")
    expect(row).not_to_contain_text("Настоящее Имя")

    invitee = new_page(browser, base_url)
    try:
        sign_in(invitee, email, PASSWORD)
        banner = invitee.locator(".home-invitation")
        expect(banner).to_contain_text("ООО «Ромашка»")
        shot(invitee, "home-invitation", "ru")
        invitee.locator(".invitation-accept").click()
        expect(banner).to_have_count(0)
        with Session(db) as s:
            user = s.exec(select(User).where(User.email == email)).one()
            romashka = s.exec(select(Organisation).where(Organisation.name == "ООО «Ромашка»")).one()
            m = s.exec(select(Membership).where(Membership.user_id == user.id,
                                                Membership.org_id == romashka.id)).one()
            assert not m.awaiting_consent
    finally:
        invitee.context.close()
    page.reload()
    page.wait_for_selector("#members-table")
    expect(page.locator(f'.member-row[data-email="{email}"]')).to_contain_text("Настоящее Имя")
