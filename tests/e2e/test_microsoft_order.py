"""The first Microsoft order of a new customer, in a real browser: the order dialog asks for the
organisation's Microsoft tenant; the customer asks for a new one — a taken domain is told at once,
missing company details are asked for (and filled in on the account page) — accepts the Microsoft
Customer Agreement, is shown the new tenant's administrator once, and orders into it. The account
page then shows the tenant as confirmed, with who accepted the agreement.

"Microsoft" here is the end-to-end server's instant TEST DOUBLE (tests/doubles/instant_vendor.py),
which also keeps a directory of tenants as Partner Center does; the Partner Center connector's own
path is tested against its HTTP double in tests/services/identity/test_microsoft_tenant_order.py."""

from __future__ import annotations

import random
import uuid

from playwright.sync_api import expect
from sqlmodel import Session, select

from tests.e2e.helpers import (
    PASSWORD, org_of, phone_shot, register_verified, set_locale, shot, sign_in, sign_in_as_locale, sign_out,
)

PLAN = "m365-bb-1m"


def _open_order(page, quantity: int = 2) -> None:
    page.goto("/catalog")
    page.click(f"button.order-plan[data-plan='{PLAN}']")
    expect(page.locator("#order-qty")).to_be_visible()
    page.fill("#order-qty", str(quantity))
    page.click("#order-preview")


def test_the_first_microsoft_order_asks_for_a_new_tenant_and_the_agreement(page, db):
    from noventiq_panel.i18n import t
    from noventiq_panel.models import LedgerEntry, MicrosoftTenant, Subscription
    from tests import factories as f

    email = f"ms-{uuid.uuid4().hex[:10]}@example.com"
    user = register_verified(db, email=email, password=PASSWORD, name="Дилноза Юсупова",
                             org_name=f"ООО «Первый Microsoft {uuid.uuid4().hex[:6]}»",
                             tax_id=str(random.randint(300000000, 309999999)), ip="")
    org, _role = org_of(db, email)
    with Session(db) as s:
        f.topup(s, s.get(type(org), org.id), "5000000")
    sign_in(page, email)

    _open_order(page)
    expect(page.locator("#order-tenant-needed")).to_be_visible()
    expect(page.locator("#order-confirm")).to_have_count(0)  # no order before the tenant
    page.click("#tenant-mode-new")
    page.fill("#tenant-prefix", "contoso")
    page.click("#tenant-check")
    expect(page.locator("#tenant-domain-note")).to_contain_text("contoso.onmicrosoft.com")
    expect(page.locator("#tenant-domain-note")).to_contain_text("занят")
    prefix = f"nq{uuid.uuid4().hex[:10]}"
    page.fill("#tenant-prefix", prefix)
    page.click("#tenant-check")
    expect(page.locator("#tenant-domain-note")).to_contain_text("свободен")
    page.click("#tenant-submit")  # the agreement not accepted
    expect(page.locator("#tenant-error")).to_contain_text("Клиентское соглашение Microsoft")
    page.click("#tenant-accept")
    page.click("#tenant-submit")  # the organisation has no address and phone yet
    expect(page.locator("#tenant-error")).to_contain_text("адрес и телефон")
    shot(page, "order-tenant-step", "ru", full_page=False)
    with Session(db) as s:
        assert s.exec(select(MicrosoftTenant).where(MicrosoftTenant.org_id == org.id)).first() is None

    page.goto("/account")  # the details Microsoft needs, where the organisation keeps them
    page.wait_for_selector("#details-form")
    page.fill("#org-address", "г. Ташкент, ул. Шота Руставели, 12")
    page.fill("#org-phone", "+998 71 123-45-67")
    page.click("#save-details")
    expect(page.get_by_text("Изменения сохранены")).to_be_visible()

    _open_order(page)
    page.click("#tenant-mode-new")
    page.fill("#tenant-prefix", prefix)
    page.click("#tenant-accept")
    page.click("#tenant-submit")
    # created and confirmed: the order's confirmation, with the new administrator shown once
    expect(page.locator("#order-confirm")).to_be_visible()
    expect(page.locator("#tenant-admin")).to_contain_text(f"admin@{prefix}.onmicrosoft.com")
    shot(page, "order-tenant-created", "ru", full_page=False)
    page.click("#order-confirm")
    expect(page.locator("#order-done")).to_be_visible()

    with Session(db) as s:
        row = s.exec(select(MicrosoftTenant).where(MicrosoftTenant.org_id == org.id)).one()
        assert (row.domain, row.is_new, row.agreement_email) == (f"{prefix}.onmicrosoft.com", True, email)
        assert row.verified_at is not None and row.tenant_id
        [sub] = s.exec(select(Subscription).where(Subscription.org_id == org.id)).all()
        assert (sub.status, sub.quantity) == ("active", 2)
        charges = s.exec(select(LedgerEntry).where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "charge")).all()
        assert len(charges) == 1

    page.goto("/account")
    expect(page.locator("#tenant-linked")).to_contain_text(f"{prefix}.onmicrosoft.com")
    expect(page.locator("#tenant-verified")).to_be_visible()
    expect(page.locator("#tenant-accepted")).to_contain_text(f"Дилноза Юсупова ({email})")
    expect(page.locator("#tenant-admin")).to_have_count(0)  # the password was shown once, in the order
    shot(page, "account-tenant-created", "ru")
    phone_shot(page, "account-tenant-created", "ru")
    for locale in ("en", "uz"):
        sign_in_as_locale(page, db, user.id, email, locale)
        page.goto("/account")
        expect(page.locator("#tenant-verified")).to_contain_text(t("account.tenant.verified", locale))
        shot(page, "account-tenant-created", locale)
    assert not page.js_errors


def test_the_tenant_step_in_english_and_uzbek_and_at_phone_width(page, db):
    """The order dialog's tenant step as a new customer sees it, in each language."""
    from noventiq_panel.i18n import t

    email = f"ms-step-{uuid.uuid4().hex[:10]}@example.com"
    user = register_verified(db, email=email, password=PASSWORD, name="Jasur Karimov",
                             org_name=f"Tenant Step {uuid.uuid4().hex[:6]} MChJ", ip="")
    for locale in ("en", "uz"):
        set_locale(db, user.id, locale)
        sign_in(page, email)
        _open_order(page, 1)
        expect(page.locator("#order-tenant-needed")).to_contain_text(t("catalog.order.tenant_needed", locale))
        page.click("#tenant-mode-new")
        page.fill("#tenant-prefix", "fabrikam")
        page.click("#tenant-check")
        expect(page.locator("#tenant-domain-note")).to_contain_text("fabrikam.onmicrosoft.com")
        shot(page, "order-tenant-step", locale, full_page=False)
        if locale == "uz":
            page.set_viewport_size({"width": 390, "height": 844})
            shot(page, "order-tenant-step", locale, phone=True, full_page=False)
            page.set_viewport_size({"width": 1280, "height": 900})
        page.keyboard.press("Escape")  # the dialog closed, then signed out
        expect(page.locator("#order-tenant-needed")).to_have_count(0)
        sign_out(page)
    assert not page.js_errors
