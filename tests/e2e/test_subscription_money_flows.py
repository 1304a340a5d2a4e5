"""Money moved from the subscription pages, checked against the ledger in the server's database:
buying a monthly plan charges exactly the price the dialog showed; a balance that does not cover it
shows the shortfall and its top-up link and charges nothing (also when the balance is spent between
the preview and the confirmation); a licence increase charges and a decrease refunds the seats in
their window and schedules the rest, as the preview said; the auto-renew switch of the list row
writes the subscription and survives a reload; a plan change's dialog says when a change that waits
takes effect (and why) and names the exact charge of an upgrade, which is what is charged."""

from __future__ import annotations

import re
import time
import uuid
from decimal import Decimal

from playwright.sync_api import expect
from sqlmodel import Session, col, func, select

from tests.e2e.helpers import (
    PASSWORD, confirmed_tenant, expected_balance, org_of, plain, register_verified, shot, sign_in, sign_out,
)

OWNER = "owner@demo.example"
LOCALE = "ru"


# --- reading and arranging the server's database ----------------------------------------------

def _balance(engine, org_id: int) -> Decimal:
    from noventiq_panel.services.core import ledger

    with Session(engine) as s:
        return ledger.balance(s, org_id)


def _last_entry_id(engine) -> int:
    from noventiq_panel.models import LedgerEntry

    with Session(engine) as s:
        return s.exec(select(func.max(LedgerEntry.id))).one() or 0


def _entries_after(engine, org_id: int, after_id: int):
    from noventiq_panel.models import LedgerEntry

    with Session(engine) as s:
        rows = s.exec(select(LedgerEntry).where(LedgerEntry.org_id == org_id, LedgerEntry.id > after_id)
                      .order_by(LedgerEntry.id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def _wait_for(probe, what: str, timeout: float = 20.0):
    """Poll the database until ``probe()`` returns something truthy (the browser's event is handled
    by the server asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _money(amount: Decimal, currency: str) -> str:
    from noventiq_panel.state.formatting import fmt_money

    return plain(fmt_money(amount, currency, LOCALE))


def _amount_in(text: str) -> Decimal:
    """The one sum in a sentence like 'Сейчас будет списано 201 572,34 сум.' as a Decimal."""
    sums = re.findall(r"\d[\d ]*,\d{2}", plain(text))
    assert len(sums) == 1, f"expected one sum in {text!r}, found {sums}"
    return Decimal(sums[0].replace(" ", "").replace(",", "."))


def _monthly_plan_not_held(engine, org_id: int):
    """(plan id, code) of a paid, monthly, paid-upfront licence plan of a product the organisation has
    no subscription of (so the new row is unambiguous)."""
    from noventiq_panel.models import Plan, Subscription

    with Session(engine) as s:
        held = set(s.exec(select(Plan.product_id).join(Subscription, Subscription.plan_id == Plan.id)
                          .where(Subscription.org_id == org_id)).all())
        plans = s.exec(select(Plan).where(Plan.billing_type == "license", Plan.term == "month",
                                          Plan.billing_frequency == "upfront", Plan.trial_days == 0,
                                          Plan.price > 0, Plan.min_quantity <= 1)
                       .order_by(Plan.id)).all()
        plan = next((p for p in plans if p.product_id not in held and p.is_active), None)
        assert plan is not None, "the demo catalog has no monthly plan of a product the organisation lacks"
        return plan.id, plan.code


def _subs_of_plan(engine, org_id: int, plan_id: int):
    from noventiq_panel.models import Subscription

    with Session(engine) as s:
        rows = s.exec(select(Subscription).where(Subscription.org_id == org_id, Subscription.plan_id == plan_id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def _new_customer(engine, balance: Decimal) -> tuple[str, int, int]:
    """A freshly registered prepaid organisation (UZS) whose balance is ``balance``: (email, org id,
    user id). Registered through the service, as the /register page does."""
    from noventiq_panel.services.core import ledger

    email = f"poor-{uuid.uuid4().hex[:10]}@example.com"
    user_id = register_verified(engine, email=email, password=PASSWORD, name="Тест Покупатель",
                                org_name=f"ООО «Тест {uuid.uuid4().hex[:6]}»", ip="").id
    org, _role = org_of(engine, email)
    confirmed_tenant(engine, email)  # its Microsoft orders need one (tests/e2e/test_microsoft_order.py)
    if balance:
        with Session(engine) as s:
            ledger.post(s, org_id=org.id, kind="topup", amount=balance, idempotency_key=f"e2e-topup:{email}",
                        description="e2e: a small payment")
            s.commit()
    return email, org.id, user_id


def _order_quote(engine, user_id: int, org_id: int, plan_id: int, quantity: int = 1):
    from noventiq_panel.services.subscriptions import ordering
    from noventiq_panel.services.core.authz import Actor

    with Session(engine) as s:
        return ordering.quote_order(s, Actor(user_id, org_id), plan_id, quantity)


def _open_order(page, plan_code: str, quantity: int = 1) -> None:
    page.goto("/catalog")
    button = page.locator(f"button.order-plan[data-plan='{plan_code}']")
    expect(button).to_be_visible()
    button.click()
    expect(page.locator("#order-qty")).to_be_visible()
    page.fill("#order-qty", str(quantity))
    page.click("#order-preview")
    expect(page.locator("#order-now")).to_be_visible()


# --- 1. buying with enough balance --------------------------------------------------------------

def test_order_charges_exactly_the_price_the_dialog_showed(page, db):
    org, _role = org_of(db, OWNER)
    plan_id, plan_code = _monthly_plan_not_held(db, org.id)
    assert _subs_of_plan(db, org.id, plan_id) == []
    sign_in(page, OWNER)
    balance_before = _balance(db, org.id)
    last_id = _last_entry_id(db)

    _open_order(page, plan_code)
    now_text = plain(page.inner_text("#order-now"))
    shown_price = _amount_in(now_text)
    assert 0 < shown_price < balance_before, (now_text, balance_before)
    expect(page.locator(".shortfall")).to_have_count(0)
    # Nothing is written by the preview.
    assert _entries_after(db, org.id, last_id) == []
    assert _subs_of_plan(db, org.id, plan_id) == []

    confirm = page.locator("#order-confirm")
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(page.locator("#order-done")).to_be_visible()

    subs = _subs_of_plan(db, org.id, plan_id)
    assert len(subs) == 1, subs
    sub = subs[0]
    assert (sub.status, sub.quantity, sub.auto_renew) == ("active", 1, True)
    entries = _entries_after(db, org.id, last_id)
    assert [(e.kind, e.subscription_id) for e in entries] == [("charge", sub.id)], entries
    charged = -entries[0].amount
    balance_after = _balance(db, org.id)
    assert balance_before - balance_after == charged == shown_price
    assert _money(charged, org.billing_currency) in now_text
    assert entries[0].currency == org.billing_currency

    # The link of the done step opens the new subscription; the list shows it; the balance is lower.
    expect(page.locator("#order-open-sub")).to_have_attribute("href", f"/subscriptions/{sub.id}")
    page.goto("/subscriptions")
    row = page.locator("#subscriptions-table .nq-row").filter(has=page.locator(f"a[href='/subscriptions/{sub.id}']"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text(sub.name)
    page.goto("/")
    expect(page.locator("#balance")).to_have_text(expected_balance(db, OWNER))
    assert not page.js_errors


# --- 2. too little balance ------------------------------------------------------------------------

def test_order_without_enough_balance_shows_the_shortfall_and_charges_nothing(page, db):
    email, org_id, user_id = _new_customer(db, Decimal("1000.00"))
    plan_id, plan_code = _monthly_plan_not_held(db, org_id)
    quote = _order_quote(db, user_id, org_id, plan_id)
    assert quote.shortfall > 0, "the plan must cost more than the small balance"
    last_id = _last_entry_id(db)
    sign_in(page, email)

    _open_order(page, plan_code)
    shown_price = _amount_in(page.inner_text("#order-now"))
    shortfall = page.locator(".shortfall")
    expect(shortfall).to_be_visible()
    missing = shown_price - Decimal("1000.00")
    assert missing == quote.shortfall
    assert _money(missing, "UZS") in plain(shortfall.inner_text())
    expect(page.locator(".topup-link")).to_have_attribute("href", f"/billing?topup={missing}")
    expect(page.locator("#order-confirm")).to_be_disabled()

    assert _entries_after(db, org_id, last_id) == []
    assert _balance(db, org_id) == Decimal("1000.00")
    assert _subs_of_plan(db, org_id, plan_id) == []

    # The top-up link carries the missing amount to the billing page.
    page.locator(".topup-link").click()
    page.wait_for_url(re.compile(rf".*/billing\?topup={re.escape(str(missing))}$"))
    assert not page.js_errors


def test_balance_spent_between_preview_and_confirm_refuses_the_order(page, db):
    """The preview said the balance covers it; by the confirmation it no longer does (another
    payment or usage took it): the service refuses, the shortfall is shown, nothing is charged."""
    from noventiq_panel.services.core import ledger

    email, org_id, user_id = _new_customer(db, Decimal(0))
    plan_id, plan_code = _monthly_plan_not_held(db, org_id)
    price = _order_quote(db, user_id, org_id, plan_id).price_now
    with Session(db) as s:
        ledger.post(s, org_id=org_id, kind="topup", amount=price, idempotency_key=f"e2e-topup:{email}",
                    description="e2e: exactly the price")
        s.commit()
    sign_in(page, email)
    _open_order(page, plan_code)
    assert _amount_in(page.inner_text("#order-now")) == price
    expect(page.locator(".shortfall")).to_have_count(0)
    confirm = page.locator("#order-confirm")
    expect(confirm).to_be_enabled()

    with Session(db) as s:  # 0.01 is spent elsewhere meanwhile
        ledger.post(s, org_id=org_id, kind="adjustment", amount=Decimal("-0.01"),
                    idempotency_key=f"e2e-spent:{email}", description="e2e: spent elsewhere")
        s.commit()
    last_id = _last_entry_id(db)
    confirm.click()
    shortfall = page.locator(".shortfall")
    expect(shortfall).to_be_visible()
    assert _money(Decimal("0.01"), "UZS") in plain(shortfall.inner_text())
    expect(page.locator(".topup-link")).to_have_attribute("href", "/billing?topup=0.01")
    expect(confirm).to_be_disabled()
    expect(page.locator("#order-done")).to_have_count(0)
    assert _entries_after(db, org_id, last_id) == []
    assert _balance(db, org_id) == price - Decimal("0.01")
    assert _subs_of_plan(db, org_id, plan_id) == []
    assert not page.js_errors


def _set_price(engine, plan_id: int, price=lambda old: old) -> Decimal:
    """Set a plan's price to ``price(old price)`` (as a catalog import would); returns the old one."""
    from noventiq_panel.models import Plan

    with Session(engine) as s:
        plan = s.get(Plan, plan_id)
        old = plan.price
        plan.price = price(old)
        s.add(plan)
        s.commit()
        return old


def test_price_changed_between_preview_and_confirm_shows_the_new_amount_and_charges_nothing(page, db):
    """The catalog price changes while the dialog is open: the confirmation is refused, the dialog
    says so and shows the new amount; only a second confirmation charges, exactly the new amount."""
    email, org_id, user_id = _new_customer(db, Decimal("10000000.00"))
    plan_id, plan_code = _monthly_plan_not_held(db, org_id)
    sign_in(page, email)
    _open_order(page, plan_code)
    old_price = _amount_in(page.inner_text("#order-now"))
    expect(page.locator("#order-changed")).to_have_count(0)
    before, last_id = _balance(db, org_id), _last_entry_id(db)
    previous = _set_price(db, plan_id, lambda old: old + Decimal("1.00"))  # one unit of its currency more
    try:
        new_price = _order_quote(db, user_id, org_id, plan_id).price_now
        assert new_price != old_price
        page.click("#order-confirm")
        expect(page.locator("#order-changed")).to_contain_text("Цена или условия изменились")
        expect(page.locator("#order-now")).to_contain_text(_money(new_price, "UZS"))
        shot(page, "order-price-changed", "ru", full_page=False)
        assert _entries_after(db, org_id, last_id) == [] and _subs_of_plan(db, org_id, plan_id) == []

        page.click("#order-confirm")
        expect(page.locator("#order-done")).to_be_visible()
        entries = _entries_after(db, org_id, last_id)
        assert [e.kind for e in entries] == ["charge"] and -entries[0].amount == new_price
        assert before - _balance(db, org_id) == new_price
        assert len(_subs_of_plan(db, org_id, plan_id)) == 1
    finally:
        _set_price(db, plan_id, lambda _new: previous)
    assert not page.js_errors


# --- 3. licence count from the Resources tab --------------------------------------------------

def _licence_sub_without_open_window(engine, org_id: int):
    """An active, paid licence subscription in its term whose seats are all past their cancellation
    window, with room for +2 and -1 seats and no pending quantity change."""
    from noventiq_panel.models import LicenceBatch, Plan, ScheduledChange, Subscription
    from noventiq_panel.models.types import utcnow

    now = utcnow()
    with Session(engine) as s:
        rows = s.exec(select(Subscription, Plan).join(Plan, Plan.id == Subscription.plan_id)
                      .where(Subscription.org_id == org_id, Subscription.status == "active",
                             Subscription.is_trial == False, Plan.billing_type == "license",  # noqa: E712
                             Plan.price > 0)
                      .order_by(Subscription.id)).all()
        for sub, plan in rows:
            if sub.term_end is None or sub.term_end <= now:
                continue
            if not (plan.min_quantity <= sub.quantity - 1 and sub.quantity + 2 <= plan.max_quantity):
                continue
            open_window = s.exec(select(LicenceBatch.id).where(LicenceBatch.subscription_id == sub.id,
                                                               LicenceBatch.quantity > 0,
                                                               LicenceBatch.window_ends_at > now)).first()
            pending = s.exec(select(ScheduledChange.id).where(ScheduledChange.subscription_id == sub.id,
                                                              ScheduledChange.status == "pending")).first()
            if open_window is None and pending is None:
                return sub.id, sub.quantity
    raise AssertionError("no active licence subscription without seats in their window")


def _quantity_of(engine, sub_id: int) -> int:
    from noventiq_panel.models import Subscription

    with Session(engine) as s:
        return s.get(Subscription, sub_id).quantity


def _pending_changes(engine, sub_id: int):
    from noventiq_panel.models import ScheduledChange

    with Session(engine) as s:
        rows = s.exec(select(ScheduledChange).where(ScheduledChange.subscription_id == sub_id,
                                                    ScheduledChange.status == "pending")
                      .order_by(col(ScheduledChange.id))).all()
        for r in rows:
            s.expunge(r)
        return rows


def _preview_res(page, quantity: int) -> str:
    page.fill("#res-qty", str(quantity))
    page.click("#res-preview")
    expect(page.locator("#res-now")).to_be_visible()
    return plain(page.inner_text("#res-now"))


def test_licence_increase_charges_and_decrease_refunds_as_previewed(page, db):
    org, _role = org_of(db, OWNER)
    sub_id, old = _licence_sub_without_open_window(db, org.id)
    sign_in(page, OWNER)
    page.goto(f"/subscriptions/{sub_id}?tab=resources")
    expect(page.locator("#res-current")).to_have_text(str(old))

    # +2 seats: the preview names the pro rata charge; the confirmation posts exactly it.
    last_id, balance0 = _last_entry_id(db), _balance(db, org.id)
    now_text = _preview_res(page, old + 2)
    charge = _amount_in(now_text)
    assert charge > 0 and "списано" in now_text, now_text
    assert _entries_after(db, org.id, last_id) == [] and _quantity_of(db, sub_id) == old
    page.click("#res-confirm")
    expect(page.locator("#res-current")).to_have_text(str(old + 2))
    expect(page.locator("#res-preview")).to_be_visible()  # back to the form
    entries = _entries_after(db, org.id, last_id)
    assert [(e.kind, e.subscription_id, e.quantity) for e in entries] == [("charge", sub_id, Decimal(2))], entries
    assert -entries[0].amount == charge
    assert balance0 - _balance(db, org.id) == charge
    assert _quantity_of(db, sub_id) == old + 2

    # -3 seats: the 2 just added are inside their window (refunded now), the 3rd waits for the renewal.
    last_id, balance1 = _last_entry_id(db), _balance(db, org.id)
    now_text = _preview_res(page, old - 1)
    refund = _amount_in(now_text)
    assert "вернётся" in now_text and f"станет лицензий: {old}" in now_text, now_text
    later_text = plain(page.inner_text("#res-later"))
    assert f"лицензий станет {old - 1}" in later_text, later_text
    # the same seats, but today was used, so it is paid: the refund counts the days from tomorrow
    assert Decimal("0") < refund < charge
    page.click("#res-confirm")
    expect(page.locator("#res-current")).to_have_text(str(old))
    expect(page.locator("#scheduled-changes")).to_contain_text(str(old - 1))
    entries = _entries_after(db, org.id, last_id)
    assert [(e.kind, e.subscription_id, e.quantity) for e in entries] == [("refund", sub_id, Decimal(2))], entries
    assert entries[0].amount == refund
    assert _balance(db, org.id) - balance1 == refund
    assert balance0 - _balance(db, org.id) == charge - refund  # the day the 2 seats were held is paid
    assert _quantity_of(db, sub_id) == old
    changes = _pending_changes(db, sub_id)
    assert [(c.kind, c.new_quantity) for c in changes] == [("quantity", old - 1)], changes

    # Withdraw the scheduled decrease (leaves the demo subscription as it was); no money moves.
    last_id = _last_entry_id(db)
    page.locator("#scheduled-changes .withdraw-change").first.click()
    expect(page.locator("#scheduled-changes")).to_have_count(0)
    _wait_for(lambda: _pending_changes(db, sub_id) == [], "the scheduled change to be withdrawn")
    assert _entries_after(db, org.id, last_id) == []
    assert _quantity_of(db, sub_id) == old
    assert not page.js_errors


# --- 4. auto-renew from the list ----------------------------------------------------------------

def _auto_renew(engine, sub_id: int) -> bool:
    from noventiq_panel.models import Subscription

    with Session(engine) as s:
        return s.get(Subscription, sub_id).auto_renew


def _switchable_sub(engine, org_id: int) -> int:
    from noventiq_panel.models import Plan, Subscription

    with Session(engine) as s:
        sub_id = s.exec(select(Subscription.id).join(Plan, Plan.id == Subscription.plan_id)
                        .where(Subscription.org_id == org_id, Subscription.status == "active",
                               Subscription.is_trial == False, Subscription.cancel_at_term_end == False,  # noqa: E712
                               Plan.billing_type == "license")
                        .order_by(Subscription.id)).first()
    assert sub_id is not None
    return sub_id


def _switch_of(page, sub_id: int):
    row = page.locator("#subscriptions-table .nq-row").filter(has=page.locator(f"a[href='/subscriptions/{sub_id}']"))
    expect(row).to_have_count(1)
    return row.locator("button[role='switch']")


def test_auto_renew_switch_in_the_list_writes_the_subscription(page, db):
    org, _role = org_of(db, OWNER)
    sub_id = _switchable_sub(db, org.id)
    initial = _auto_renew(db, sub_id)
    sign_in(page, OWNER)
    page.goto("/subscriptions")
    switch = _switch_of(page, sub_id)
    expect(switch).to_have_attribute("aria-checked", str(initial).lower())

    for state in (not initial, initial):  # flip, then flip back (the demo data stays as it was)
        switch.click()
        _wait_for(lambda state=state: _auto_renew(db, sub_id) is state, f"auto_renew={state} in the database")
        expect(switch).to_have_attribute("aria-checked", str(state).lower())
        page.reload()
        switch = _switch_of(page, sub_id)
        expect(switch).to_have_attribute("aria-checked", str(state).lower())
        assert _auto_renew(db, sub_id) is state
    assert not page.js_errors


# --- 5. plan change: what happens now and when ----------------------------------------------------

def _order_sub(engine, user_id: int, org_id: int, code: str, quantity: int) -> int:
    """A paid subscription of the plan ``code`` ordered through the service (a fresh operation)."""
    from noventiq_panel.models import Plan
    from noventiq_panel.services.core.authz import Actor
    from noventiq_panel.services.subscriptions import ordering

    with Session(engine) as s:
        plan_id = s.exec(select(Plan.id).where(Plan.code == code)).one()
        return ordering.order(s, Actor(user_id, org_id), plan_id, quantity).subscription_id


def _plan_target(engine, sub_id: int, code: str):
    """(the option's product name, the target plan's name, the local renewal date) of a plan change."""
    from noventiq_panel.models import Organisation, Plan, Product, Subscription
    from noventiq_panel.services.core.clock import local_date

    with Session(engine) as s:
        plan, product = s.exec(select(Plan, Product).join(Product, Product.id == Plan.product_id)
                               .where(Plan.code == code)).one()
        sub = s.get(Subscription, sub_id)
        org = s.get(Organisation, sub.org_id)
        return product.name, plan.name, local_date(sub.term_end, org.timezone)


def _set_locale(engine, email: str, locale: str) -> None:
    from noventiq_panel.models import User

    with Session(engine) as s:
        user = s.exec(select(User).where(User.email == email)).one()
        user.locale = locale
        s.add(user)
        s.commit()


def _open_plan_dialog(page, sub_id: int, product: str, plan: str) -> None:
    page.goto(f"/subscriptions/{sub_id}?tab=options")
    page.click("#plan-choice")
    page.get_by_role("option").filter(has_text=product).filter(has_text=plan).click()
    page.click("#plan-preview")
    expect(page.locator("#plan-dialog")).to_be_visible()
    expect(page.locator("#plan-now")).to_be_visible()


def test_plan_change_dialog_says_when_a_change_waits_and_charges_the_exact_upgrade_amount(page, browser, base_url,
                                                                                            db):
    from noventiq_panel.services.core.authz import Actor
    from noventiq_panel.services.subscriptions import plan_change
    from noventiq_panel.state.formatting import text_date
    from tests.e2e.helpers import PHONE, new_page

    email, org_id, user_id = _new_customer(db, Decimal("10000000.00"))
    yearly = _order_sub(db, user_id, org_id, "m365-bs-1y", 1)  # Business Standard, a year
    monthly = _order_sub(db, user_id, org_id, "m365-bb-1m", 2)  # Business Basic, a month
    product, plan_name, renewal = _plan_target(db, yearly, "m365-bb-1y")  # cheaper: waits for the renewal

    # A downgrade waits: the dialog says until when and why, and that nothing moves now.
    sign_in(page, email)
    _open_plan_dialog(page, yearly, product, plan_name)
    expect(page.locator("#plan-now")).to_have_text(f"Вступит в силу при продлении {text_date(renewal, 'ru')}")
    expect(page.locator("#plan-later")).to_have_text("Новый план дешевле: он начнёт действовать со следующего срока.")
    assert plain(page.inner_text("#plan-amount")) == _money(Decimal(0), "UZS")
    shot(page, "plan-change-renewal", "ru", full_page=False)

    phone = new_page(browser, base_url, viewport=PHONE)
    try:
        sign_in(phone, email)
        _open_plan_dialog(phone, yearly, product, plan_name)
        expect(phone.locator("#plan-confirm")).to_be_in_viewport()
        shot(phone, "plan-change-renewal", "ru", phone=True, full_page=False)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    finally:
        phone.context.close()

    _set_locale(db, email, "en")
    english = new_page(browser, base_url)
    try:
        sign_in(english, email)
        _open_plan_dialog(english, yearly, product, plan_name)
        expect(english.locator("#plan-now")).to_have_text(f"Takes effect at renewal on {text_date(renewal, 'en')}")
        expect(english.locator("#plan-later")).to_have_text("The new plan is cheaper: it starts with the next term.")
        shot(english, "plan-change-renewal", "en", full_page=False)
    finally:
        english.context.close()
        _set_locale(db, email, "ru")

    last_id = _last_entry_id(db)
    page.click("#plan-confirm")
    expect(page.locator("#plan-dialog")).to_have_count(0)
    page.click("#tab-overview")
    expect(page.locator("#scheduled-changes")).to_contain_text(
        f"С {text_date(renewal, 'ru')}: переход на план «{plan_name}»")
    assert _entries_after(db, org_id, last_id) == []
    assert [(c.kind, c.effective_at) for c in _pending_changes(db, yearly)] == [
        ("plan", _subscription(db, yearly).term_end)]
    assert _subscription(db, yearly).plan_id != _plan_id_of(db, "m365-bb-1y")

    # An upgrade applies at once: the dialog names the exact pro rata charge, and exactly that is charged.
    product, plan_name, _renewal = _plan_target(db, monthly, "m365-bs-1m")
    with Session(db) as s:
        quote = plan_change.quote_plan_change(s, Actor(user_id, org_id), monthly, "m365-bs-1m")
    assert quote.direction == "upgrade" and quote.charge_now > 0
    _open_plan_dialog(page, monthly, product, plan_name)
    shown = plain(page.inner_text("#plan-amount"))
    assert shown == _money(quote.charge_now, "UZS") and shown in plain(page.inner_text("#plan-now"))
    expect(page.locator("#plan-later")).to_have_count(0)
    shot(page, "plan-change-upgrade", "ru", full_page=False)
    last_id, before = _last_entry_id(db), _balance(db, org_id)
    page.click("#plan-confirm")
    expect(page.locator("#plan-dialog")).to_have_count(0)
    _wait_for(lambda: _subscription(db, monthly).plan_id == _plan_id_of(db, "m365-bs-1m"), "the upgrade")
    entries = _entries_after(db, org_id, last_id)
    assert [(e.kind, e.subscription_id) for e in entries] == [("charge", monthly)], entries
    assert -entries[0].amount == quote.charge_now == before - _balance(db, org_id)
    assert not page.js_errors


def _subscription(engine, sub_id: int):
    from noventiq_panel.models import Subscription

    with Session(engine) as s:
        sub = s.get(Subscription, sub_id)
        s.expunge(sub)
        return sub


def _plan_id_of(engine, code: str) -> int:
    from noventiq_panel.models import Plan

    with Session(engine) as s:
        return s.exec(select(Plan.id).where(Plan.code == code)).one()


# --- a vendor without an API: the provisioning queue ------------------------------------------------

def test_manual_vendor_order_waits_reserved_until_the_operator_completes_it_with_the_cli(page, db):
    """Kaspersky has no connector in the end-to-end panel: the dialog says the price is reserved,
    the order waits ("awaiting activation"), nothing is charged and the reserved money cannot be
    spent again; the operator completes it with ``noventiq-panel provisioning complete`` and the
    customer sees it active, charged exactly the reserved amount once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from noventiq_panel.models import Organisation, Plan, ProvisioningTask
    from noventiq_panel.services.core import ledger

    email, org_id, _user = _new_customer(db, Decimal("5000000.00"))
    with Session(db) as s:
        plan = s.exec(select(Plan).where(Plan.code == "kes-cloud-1m")).one()
    sign_in(page, email)
    last_id = _last_entry_id(db)
    _open_order(page, "kes-cloud-1m", 2)
    expect(page.locator("#order-manual")).to_be_visible()
    shown = _amount_in(plain(page.inner_text("#order-now")))
    page.click("#order-confirm")
    expect(page.locator("#order-queued")).to_be_visible()
    shot(page, "catalog-order-queued", "ru")
    [sub] = _subs_of_plan(db, org_id, plan.id)
    assert sub.status == "pending" and _entries_after(db, org_id, last_id) == []
    with Session(db) as s:
        task = s.exec(select(ProvisioningTask).where(ProvisioningTask.subscription_id == sub.id)).one()
        assert task.status == "open" and task.reserved == shown
        assert ledger.available(s, s.get(Organisation, org_id)) == Decimal("5000000.00") - shown

    page.goto(f"/subscriptions/{sub.id}")
    expect(page.locator("#at-vendor")).to_be_visible()
    expect(page.locator("#sub-status")).to_have_text("Ожидает активации")
    assert "осталось" not in plain(page.inner_text("body"))  # no billing period before activation
    shot(page, "subscription-awaiting-activation", "ru")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "subscription-awaiting-activation", "ru", phone=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    cli = Path(sys.executable).parent / "noventiq-panel"
    env = {**os.environ, "REFLEX_DB_URL": str(db.url.render_as_string(hide_password=False))}
    done = subprocess.run([str(cli), "provisioning", "complete", str(task.id), "--operator", "E2E Operator",
                           "--vendor-ref", "KES-E2E-1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page.reload()
    expect(page.locator("#sub-status")).to_have_text("Активна")
    expect(page.locator("#at-vendor")).to_have_count(0)
    entries = _entries_after(db, org_id, last_id)
    assert [(e.kind, e.subscription_id, -e.amount) for e in entries] == [("charge", sub.id, shown)]
    assert not page.js_errors


def _cli(engine, *args: str) -> None:
    """Run ``noventiq-panel`` (the operator's CLI) on the server's database."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "noventiq-panel"
    env = {**os.environ, "REFLEX_DB_URL": str(engine.url.render_as_string(hide_password=False))}
    done = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _open_task(engine, sub_id: int):
    from noventiq_panel.models import ProvisioningTask

    with Session(engine) as s:
        return s.exec(select(ProvisioningTask).where(ProvisioningTask.subscription_id == sub_id,
                                                     ProvisioningTask.status == "open")).one()


def test_manual_vendor_decrease_changes_nothing_until_the_vendor_confirms_then_refunds(page, db):
    """A decrease of a manual vendor's licences inside their window: the preview says nothing
    changes until the vendor confirms; after the confirmation the customer keeps both seats and the
    page says what waits; the operator completes the task with the CLI and the seat goes, refunded."""
    from noventiq_panel.models import Plan

    email, org_id, _user = _new_customer(db, Decimal("5000000.00"))
    with Session(db) as s:
        plan = s.exec(select(Plan).where(Plan.code == "kes-cloud-1m")).one()
    sign_in(page, email)
    _open_order(page, "kes-cloud-1m", 2)
    page.click("#order-confirm")
    expect(page.locator("#order-queued")).to_be_visible()
    [sub] = _subs_of_plan(db, org_id, plan.id)
    _cli(db, "provisioning", "complete", str(_open_task(db, sub.id).id), "--operator", "E2E", "--vendor-ref", "KES-2")

    page.goto(f"/subscriptions/{sub.id}?tab=resources")
    expect(page.locator("#res-current")).to_have_text("2")
    last_id = _last_entry_id(db)
    now_text = _preview_res(page, 1)
    assert "до его подтверждения ничего не меняется" in now_text.lower(), now_text
    up_to = _amount_in(now_text)
    page.click("#res-confirm")
    expect(page.locator("#at-vendor")).to_contain_text("возврат после подтверждения")
    expect(page.locator("#res-current")).to_have_text("2")  # nothing changed yet
    expect(page.locator("#res-qty")).to_have_count(0)  # and no other change while it waits
    assert _entries_after(db, org_id, last_id) == [] and _quantity_of(db, sub.id) == 2
    shot(page, "subscription-decrease-at-vendor", "ru")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "subscription-decrease-at-vendor", "ru", phone=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    for locale, words in (("en", "refunded once confirmed"), ("uz", "tasdiqlangach qaytariladi")):
        _set_locale(db, email, locale)
        sign_out(page)
        sign_in(page, email)  # the language is the user's, taken at sign-in
        page.goto(f"/subscriptions/{sub.id}?tab=resources")
        expect(page.locator("#at-vendor")).to_contain_text(words)
        shot(page, "subscription-decrease-at-vendor", locale)
    _set_locale(db, email, "ru")

    _cli(db, "provisioning", "complete", str(_open_task(db, sub.id).id), "--operator", "E2E")
    page.reload()
    expect(page.locator("#res-current")).to_have_text("1")
    expect(page.locator("#at-vendor")).to_have_count(0)
    entries = _entries_after(db, org_id, last_id)
    assert [(e.kind, e.subscription_id, e.quantity) for e in entries] == [("refund", sub.id, Decimal(1))], entries
    assert Decimal("0") < entries[0].amount <= up_to
    assert not page.js_errors
