"""/account in a real browser: invitations, roles, the read-only Financial manager."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect
from sqlmodel import Session, select

from noventiq_panel.models import Membership, User

from tests.e2e.helpers import expected_balance, latest_mail, link_in, new_page, org_of, shot, sign_in, text_of


def _membership(db, email: str) -> Membership:
    with Session(db) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        m = s.exec(select(Membership).where(Membership.user_id == user.id)).one()
        s.expunge(m)
        return m


def _invite(page, email: str, name: str) -> None:
    page.goto("/account?tab=users")
    page.wait_for_selector("#members-table")
    page.click("#invite-open")
    page.fill("#invite-email", email)
    page.fill("#invite-name", name)
    page.click("#invite-submit")
    expect(page.locator(f'.member-row[data-email="{email}"]')).to_be_visible()


def test_invite_a_colleague_who_sets_a_password_and_signs_in(page, browser, base_url, db):
    email = f"colleague-{uuid.uuid4().hex[:8]}@demo.example"
    sign_in(page, "owner@demo.example")
    _invite(page, email, "Бахтиёр Юлдашев")
    row = page.locator(f'.member-row[data-email="{email}"]')
    expect(row).to_contain_text("Приглашён")
    expect(row).to_contain_text("Администратор")
    mail = latest_mail(db, email, "invite")
    assert mail is not None, "the invitation is in the outbox"
    link = link_in(db, mail)

    guest = new_page(browser, base_url)
    try:
        guest.goto(link)
        guest.wait_for_selector("#reset-form")
        expect(guest.locator("#page-title")).to_have_text("Установите пароль")
        guest.fill("#f-password", "Kollega-2026!")
        guest.fill("#f-password2", "Kollega-2026!")
        guest.click("#reset-submit")
        expect(guest.locator("#reset-done")).to_be_visible()
        sign_in(guest, email, "Kollega-2026!")
        expect(guest.locator("#org-link")).to_have_text("ООО «Ромашка»")
        assert text_of(guest, "#balance") == expected_balance(db, "owner@demo.example")
    finally:
        guest.context.close()
    page.reload()
    page.wait_for_selector("#members-table")
    expect(page.locator(f'.member-row[data-email="{email}"]')).to_contain_text("Активен")


def test_admin_changes_a_role_and_deactivates_a_member(page, db):
    email = f"temp-{uuid.uuid4().hex[:8]}@demo.example"
    sign_in(page, "admin@demo.example")
    _invite(page, email, "Временный Сотрудник")
    row = page.locator(f'.member-row[data-email="{email}"]')
    row.locator(".role-select").click()
    page.get_by_role("option", name="Финансовый менеджер").click()
    expect(row).to_contain_text("Финансовый менеджер")
    assert _membership(db, email).role == "finance"
    row.locator(".deactivate").click()
    page.click("#confirm-deactivate")
    expect(row).to_contain_text("Отключён")
    assert _membership(db, email).is_active is False


def test_financial_manager_sees_everything_and_can_change_nothing(page):
    sign_in(page, "finance@demo.example")
    page.goto("/account")
    page.wait_for_selector("#details-form")
    expect(page.locator("#org-name")).to_have_value("ООО «Ромашка»")
    for field in ("name", "tax_id", "phone", "address", "bank_details"):
        expect(page.locator(f"#org-{field}")).to_be_disabled()
    expect(page.locator("#save-details")).to_have_count(0)
    expect(page.locator("#read-only-note")).to_be_visible()
    page.click("#tab-users")
    page.wait_for_selector("#members-table")
    expect(page.locator(".member-row")).not_to_have_count(0)
    expect(page.locator("#invite-open")).to_have_count(0)
    expect(page.locator(".role-select")).to_have_count(0)
    expect(page.locator(".deactivate")).to_have_count(0)
    expect(page.locator(".reactivate")).to_have_count(0)


def test_owner_edits_the_organisation_details(page, db):
    from noventiq_panel.models import Organisation

    sign_in(page, "owner@other.example")
    page.goto("/account")
    page.wait_for_selector("#details-form")
    new_phone = "+998 66 233-10-46"
    page.fill("#org-phone", new_phone)
    page.click("#save-details")
    expect(page.get_by_text("Изменения сохранены")).to_be_visible()
    with Session(db) as s:
        org = s.exec(select(Organisation).where(Organisation.name == "ООО «Восток Трейд»")).one()
        assert org.phone == new_phone
    page.fill("#org-tax_id", "12")
    page.click("#save-details")
    expect(page.get_by_text("ИНН — 9 цифр (организация) или ПИНФЛ — 14 цифр (индивидуальный предприниматель).")).to_be_visible()
    with Session(db) as s:
        org = s.exec(select(Organisation).where(Organisation.name == "ООО «Восток Трейд»")).one()
        assert org.tax_id == "307441096"


def test_the_activity_tab_shows_the_trail_and_exports_it(page, db):
    """Issue 14: Account → Activity lists who did what from which address, filters, exports."""
    sign_in(page, "finance@demo.example")  # the read-only role reads it too
    page.goto("/account?tab=activity")
    expect(page.locator("#activity-table")).to_be_visible()
    expect(page.locator("#activity-table")).to_contain_text("Вход в панель")
    shot(page, "account-activity", "ru")
    page.click("#act-category")
    page.get_by_role("option", name="Входы").click()
    page.click("#act-apply")
    expect(page.locator("#activity-table .nq-row").first).to_contain_text("Вход в панель")
    with page.expect_download() as info:
        page.click("#act-export-csv")
    data = open(info.value.path(), "rb").read().decode("utf-8-sig")
    assert data.startswith("time,user,e-mail,action,details,address") and "Вход в панель" in data


def test_an_owner_links_the_microsoft_tenant_and_accepts_the_agreement(page, db):
    """A new customer's Owner links the organisation's Microsoft tenant on the account page and
    accepts the Microsoft Customer Agreement in their own name: a wrong reference or no acceptance
    is refused in place and changes nothing; then the tenant (not yet confirmed by Microsoft) and
    who accepted, with their e-mail and when, are shown."""
    from noventiq_panel.i18n import t
    from noventiq_panel.models import MicrosoftTenant
    from tests.e2e.helpers import PASSWORD, phone_shot, register_verified, sign_in_as_locale, sign_out

    email = f"tenant-{uuid.uuid4().hex[:10]}@example.com"
    prefix = f"t{uuid.uuid4().hex[:12]}"
    user = register_verified(db, email=email, password=PASSWORD, name="Ильхом Каримов",
                             org_name=f"ООО «Тенант {uuid.uuid4().hex[:6]}»", ip="")
    # the organisation's Financial manager reads it, nothing to link yet: a plain note, no form
    from noventiq_panel.models import Organisation, Role
    from noventiq_panel.services.identity.auth import hash_password
    from tests import factories as f

    org, _role = org_of(db, email)
    finance_email = f"tenant-cfo-{uuid.uuid4().hex[:8]}@example.com"
    with Session(db) as s:
        f.user(s, s.get(Organisation, org.id), role=Role.FINANCE, email=finance_email, name="Нодира Азимова",
               password_hash=hash_password(PASSWORD))
    sign_in(page, finance_email)
    page.goto("/account")
    expect(page.locator("#tenant-none")).to_be_visible()
    expect(page.locator("#tenant-form")).to_have_count(0)
    shot(page, "account-tenant-finance-empty", "ru")
    sign_out(page)

    sign_in(page, email)
    page.goto("/account")
    expect(page.locator("#tenant-form")).to_be_visible()
    page.fill("#tenant-reference", "contoso.com")
    page.click("#tenant-submit")
    expect(page.locator("#tenant-error")).to_contain_text("onmicrosoft.com")
    page.fill("#tenant-reference", f"{prefix}.onmicrosoft.com")
    page.click("#tenant-submit")  # the agreement not accepted yet
    expect(page.locator("#tenant-error")).to_contain_text("Клиентское соглашение Microsoft")
    with Session(db) as s:
        assert s.exec(select(MicrosoftTenant).where(MicrosoftTenant.linked_by == user.id)).first() is None
    shot(page, "account-tenant-form", "ru")
    page.click("#tenant-accept")
    page.click("#tenant-submit")
    expect(page.locator("#tenant-linked")).to_contain_text(f"{prefix}.onmicrosoft.com")
    expect(page.locator("#tenant-accepted")).to_contain_text(f"Ильхом Каримов ({email})")  # the acting member
    expect(page.locator("#tenant-unverified")).to_be_visible()  # a claim until Microsoft confirms it
    with Session(db) as s:
        row = s.exec(select(MicrosoftTenant).where(MicrosoftTenant.linked_by == user.id)).one()
        assert (row.domain, row.agreement_email) == (f"{prefix}.onmicrosoft.com", email)
    shot(page, "account-tenant", "ru")
    sign_out(page)
    sign_in(page, finance_email)  # and the Financial manager reads it, unchanged
    page.goto("/account")
    expect(page.locator("#tenant-accepted")).to_contain_text(f"Ильхом Каримов ({email})")
    expect(page.locator("#tenant-form")).to_have_count(0)
    shot(page, "account-tenant-finance", "ru")
    sign_out(page)
    sign_in(page, email)
    page.goto("/account")
    phone_shot(page, "account-tenant", "ru")
    for locale in ("en", "uz"):
        sign_in_as_locale(page, db, user.id, email, locale)
        page.goto("/account")
        expect(page.locator("#tenant-card")).to_contain_text(t("account.tenant.title", locale))
        expect(page.locator("#tenant-accepted")).to_contain_text(email)
        shot(page, "account-tenant", locale)
    assert not page.js_errors
