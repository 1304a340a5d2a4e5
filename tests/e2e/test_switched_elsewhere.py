"""Two tabs of one browser: the organisation switched in one, a form submitted in the other. What
the second tab showed was the first organisation; nothing is done in the one switched to, the
tab says why and shows the organisation the session works in now."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel import i18n
from noventiq_panel.models import Membership, User
from noventiq_panel.services.identity import auth, organisations

from tests.e2e.helpers import DESKTOP, PASSWORD, PHONE, shot, sign_in


def _owner_of_two(db, locale: str) -> tuple[str, str, str]:
    """A new user who owns two new organisations (the reseller made both); their e-mail and names."""
    email = f"two-{uuid.uuid4().hex[:8]}@orgs.example"
    first, second = f"ООО «Первая {email[4:8]}»", f"ООО «Вторая {email[4:8]}»"
    with Session(db) as s:
        for name in (first, second):
            organisations.create_customer(s, org_name=name, owner_email=email, owner_name="Двойной Владелец",
                                          locale=locale)
        user = s.exec(select(User).where(User.email == email)).one()
        user.password_hash = auth.hash_password(PASSWORD)  # as if set through the welcome link
        user.email_verified_at = datetime.now(timezone.utc)
        s.add(user)
        s.commit()
    return email, first, second


def _members(db, email: str) -> int:
    with Session(db) as s:
        user = s.exec(select(User).where(User.email == email)).first()
        return 0 if user is None else len(s.exec(select(Membership).where(Membership.user_id == user.id)).all())


@pytest.mark.parametrize("locale,phone", [("ru", False), ("en", False), ("uz", True)])
def test_an_invitation_sent_from_a_tab_of_one_organisation_is_not_sent_for_the_one_switched_to(page, db, locale,
                                                                                              phone):
    email, first, second = _owner_of_two(db, locale)
    if phone:
        page.set_viewport_size(PHONE)
    sign_in(page, email)
    expect(page.locator("#org-switcher")).to_contain_text(first)
    page.goto("/account?tab=users")
    page.wait_for_selector("#invite-open")  # the members are a table, or cards at a phone's width
    page.click("#invite-open")
    colleague = f"colleague-{uuid.uuid4().hex[:8]}@orgs.example"
    page.fill("#invite-email", colleague)
    page.fill("#invite-name", "Коллега Первой")

    other = page.context.new_page()  # another tab of the same browser
    other.goto("/")
    other.wait_for_selector("#balance")
    other.click("#org-switcher")
    other.locator(".org-option", has_text=second).click()
    expect(other.locator("#org-switcher")).to_contain_text(second)

    page.click("#invite-submit")
    notice = page.get_by_text(i18n.t("error.switched_elsewhere", locale))
    expect(notice).to_be_visible()
    page.wait_for_timeout(700)  # the toast has slid in
    shot(page, "switched-elsewhere", locale, phone=phone, full_page=False)
    expect(page.locator("#org-switcher")).to_contain_text(second)  # the page shows it now
    page.wait_for_selector("#invite-open")  # on the tab the address names
    expect(page.locator(f'.member-row[data-email="{colleague}"]')).to_have_count(0)
    assert _members(db, colleague) == 0  # invited to neither organisation

    if phone:
        page.set_viewport_size(DESKTOP)
    page.click("#invite-open")  # asked again, now knowingly, it goes to the organisation shown
    page.fill("#invite-email", colleague)
    page.fill("#invite-name", "Коллега Второй")
    page.click("#invite-submit")
    expect(page.locator(f'.member-row[data-email="{colleague}"]')).to_be_visible()
    assert _members(db, colleague) == 1
    other.close()
