"""Pay-as-you-go credit control: the deposit to order, and an overdrawn organisation told at once,
its pay-as-you-go subscriptions suspended after the grace period and resumed by a top-up — once
each, whatever runs twice or at once, and never touching what the customer suspended or another
organisation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from jobs import registry
from noventiq_panel.config import reset_settings
from noventiq_panel.i18n import format as fmt
from noventiq_panel.models import (
    AuditEvent,
    LedgerEntry,
    Notification,
    Organisation,
    Plan,
    Role,
    Subscription,
)
from noventiq_panel.services.billing import invoices, payments
from noventiq_panel.services.catalog import catalog_import
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import InsufficientFunds
from noventiq_panel.services.subscriptions import credit_control, ordering
from noventiq_panel.services.vendors import connector as vendor_api
from tests.doubles.instant_vendor import InstantVendor
from noventiq_panel.services.usage import rating
from tests import factories as f
from tests.concurrency import at_once
from tests.services.subs_world import NOW, World, counts, make_world, world
from tests.services.usage_world import add_usage, payg_sub

GRACE = timedelta(hours=72)  # the default PANEL_CREDIT_GRACE_HOURS
HOUR = timedelta(hours=1)


class RecordingVendor(InstantVendor):
    """The vendor's connector: records what it was told; refuses while ``refuse`` is set."""

    def __init__(self):
        super().__init__()
        self.refuse = False

    @property
    def moves(self) -> list[tuple]:
        """What credit control told it (orders of the test's setup left out)."""
        return [c for c in self.calls if c[0] in ("suspend", "resume")]

    def suspend(self, vendor_ref: str) -> None:
        if self.refuse:
            raise RuntimeError("vendor unavailable")
        self.calls.append(("suspend", vendor_ref))

    def resume(self, vendor_ref: str) -> None:
        if self.refuse:
            raise RuntimeError("vendor unavailable")
        self.calls.append(("resume", vendor_ref))


@pytest.fixture
def vendor():
    connector = RecordingVendor()
    vendor_api.register("ms", connector)  # the vendor of the test catalogue
    yield connector
    vendor_api.unregister("ms")


def _setup(w: World) -> World:
    """Our organisation (100 000 сум, a licence subscription, two active pay-as-you-go ones and one
    the customer suspended) and another one with its own pay-as-you-go subscription and money."""
    s = w.session
    w.topup("100000")
    w.licence = ordering.order(s, w.a_owner, w.plan("basic-m").id, 1, now=NOW - timedelta(days=1)).subscription_id
    w.prod = payg_sub(s, w.org, w.plan("azure-h"), name="Azure prod", vendor_ref="REF-PROD").id
    w.dev = payg_sub(s, w.org, w.plan("azure-d"), name="Azure dev", vendor_ref="REF-DEV").id
    w.held = payg_sub(s, w.org, w.plan("azure-h"), name="Azure test", vendor_ref="REF-HELD", status="suspended",
                      suspended_at=NOW - timedelta(days=5), suspend_reason="customer").id
    w.topup("1000000", w.other_org)
    w.theirs = payg_sub(s, w.other_org, w.plan("azure-h"), name="Azure их", vendor_ref="REF-THEIRS").id
    return w


@pytest.fixture
def setup(world, vendor) -> World:
    return _setup(world)


def use(w: World, sub_id: int, usd: str, at) -> None:
    """One hour of usage costing ``usd`` (12 000 сум a dollar, no markup), rated."""
    add_usage(w.session, w.sub(sub_id), at, 1, services=1, cost=usd)
    rating.rate_usage(w.session, now=at + 2 * HOUR)


def overdraw(w: World, at=NOW - 3 * HOUR) -> None:
    """Usage of about 300 000 сум: 70 000 сум of balance become about −230 000 сум."""
    use(w, w.prod, "25", at)
    assert w.balance() < 0


def org_row(w: World, org: Organisation | None = None) -> Organisation:
    w.session.rollback()
    return w.session.get(Organisation, (org or w.org).id, populate_existing=True)


def mails(session: Session, kind: str) -> list[str]:
    session.rollback()
    return sorted(n.to_email for n in session.exec(select(Notification).where(Notification.kind == kind)).all())


def mail_to(session: Session, kind: str, email: str) -> Notification:
    session.rollback()
    return session.exec(select(Notification).where(Notification.kind == kind, Notification.to_email == email)).one()


def snapshot(session: Session) -> dict:
    """Everything a check could change: rows, balances, subscriptions and the overdrawn marks."""
    result = counts(session)
    result["suspension"] = [(s.id, s.status, s.suspend_reason, s.suspended_at)
                            for s in session.exec(select(Subscription).order_by(Subscription.id)).all()]
    result["overdrawn"] = [(o.id, o.overdrawn_since)
                           for o in session.exec(select(Organisation).order_by(Organisation.id)).all()]
    session.rollback()
    return result


def pay(w: World, amount, at, org: Organisation | None = None, actor=None):
    """A top-up invoice, paid: the operator confirms it (the payment hook runs)."""
    invoice = invoices.request_topup(w.session, actor or w.a_owner, amount, now=at - HOUR)
    return payments.confirm_payment(w.session, invoice.number, now=at)


# ---------------------------------------------------------------- the deposit

def test_prepaid_payg_order_without_the_plans_expected_month_is_refused_with_the_shortfall(world):
    s = world.session
    plan = world.plan("azure-h")
    plan.expected_monthly_cost = Decimal("50")  # USD: 600 000 сум at 12 000
    s.add(plan)
    s.commit()
    world.topup("100000")
    before = snapshot(s)
    org = s.get(Organisation, world.org.id)
    with pytest.raises(InsufficientFunds) as err:
        credit_control.require_deposit(s, org, plan, NOW.date())
    assert err.value.required == Decimal("600000.00")
    assert err.value.available == Decimal("100000.00")
    assert err.value.shortfall == Decimal("500000.00") and err.value.currency == "UZS"
    assert snapshot(s) == before
    world.topup("500000")
    credit_control.require_deposit(s, org, plan, NOW.date())  # exactly the deposit is enough


def test_deposit_comes_from_the_plan_converted_and_rounded_else_from_the_setting(world, monkeypatch):
    s = world.session
    org = s.get(Organisation, world.org.id)
    hourly, daily = world.plan("azure-h"), world.plan("azure-d")
    hourly.expected_monthly_cost = Decimal("12.345678")  # × 12 000 = 148 148.136 сум
    s.add(hourly)
    s.commit()
    assert credit_control.deposit_required(s, org, hourly, NOW.date()) == Decimal("148148.14")
    assert credit_control.deposit_required(s, org, daily, NOW.date()) == Decimal("100000.00")  # the default
    monkeypatch.setenv("PANEL_PAYG_DEPOSIT", "250000")
    reset_settings()
    assert credit_control.deposit_required(s, org, daily, NOW.date()) == Decimal("250000.00")
    world.topup("249999.99")
    with pytest.raises(InsufficientFunds) as err:
        credit_control.require_deposit(s, org, daily, NOW.date())
    assert err.value.shortfall == Decimal("0.01")
    hourly.expected_monthly_cost = Decimal("0")  # a plan that states it needs no deposit
    s.add(hourly)
    s.commit()
    assert credit_control.deposit_required(s, org, hourly, NOW.date()) == Decimal("0.00")


def test_postpaid_needs_no_deposit_but_cannot_order_payg_beyond_its_credit_limit(world):
    s = world.session
    post = f.org(s, name="ООО «Постоплата»", tax_id="300000009", billing_mode="postpaid",
                 credit_limit=Decimal("500000"))
    plan = world.plan("azure-h")
    plan.expected_monthly_cost = Decimal("50")
    s.add(plan)
    s.commit()
    assert credit_control.deposit_required(s, post, plan, NOW.date()) == Decimal("0.00")
    credit_control.require_deposit(s, post, plan, NOW.date())  # balance 0, within the limit
    ledger.post(s, org_id=post.id, kind="charge", amount=Decimal("-600000"), idempotency_key="post-spent")
    s.commit()
    with pytest.raises(InsufficientFunds) as err:
        credit_control.require_deposit(s, post, plan, NOW.date())
    assert err.value.available == Decimal("-100000.00") and err.value.shortfall == Decimal("100000.00")


def test_licence_plans_need_no_deposit(world):
    s = world.session
    org = s.get(Organisation, world.org.id)
    assert credit_control.deposit_required(s, org, world.plan("basic-m"), NOW.date()) == Decimal("0.00")
    credit_control.require_deposit(s, org, world.plan("basic-m"), NOW.date())  # its order checks its own price


def test_catalog_import_reads_expected_monthly_cost_for_payg_only(session):
    text = """
vendors: [{code: ms, name: Microsoft}]
products:
  - code: azure
    vendor: ms
    name: Azure
    plans:
      - {code: az-h, name: Hourly, billing_type: payg, granularity: hour, currency: USD,
         expected_monthly_cost: "75.50"}
      - {code: az-d, name: Daily, billing_type: payg, granularity: day, currency: USD}
"""
    catalog_import.import_catalog(session, text, filename="c.yaml")
    plans = {p.code: p for p in session.exec(select(Plan)).all()}
    assert plans["az-h"].expected_monthly_cost == Decimal("75.50")
    assert plans["az-d"].expected_monthly_cost is None
    for bad, message in (('"-1"', "greater than or equal to 0"), ('"abc"', "valid decimal"),
                         ('"1.1234567"', "decimal places")):
        broken = text.replace('"75.50"', bad)
        with pytest.raises(catalog_import.CatalogError) as err:
            catalog_import.import_catalog(session, broken, filename="c.yaml")
        assert "expected_monthly_cost" in str(err.value) and message in str(err.value)
    licence = text.replace("billing_type: payg, granularity: hour, currency: USD,",
                           "term: month, currency: USD,")
    with pytest.raises(catalog_import.CatalogError) as err:
        catalog_import.import_catalog(session, licence, filename="c.yaml")
    assert "expected_monthly_cost is for pay-as-you-go plans only" in str(err.value)
    session.rollback()
    assert session.get(Plan, plans["az-h"].id, populate_existing=True).expected_monthly_cost == Decimal("75.50")


# ---------------------------------------------------------------- negative balance → notice → suspension → top-up

def test_overdrawn_org_is_told_at_once_suspended_after_the_grace_and_resumed_by_a_top_up(setup, vendor):
    w, s = setup, setup.session
    overdraw(w)
    balance = w.balance()

    # 1. the notice, at once, to the owners and administrators (not the financial manager, not the other org)
    summary = credit_control.check(s, NOW)
    assert (summary.overdrawn, summary.suspended) == (1, 0)
    assert org_row(w).overdrawn_since == NOW
    assert mails(s, "credit_overdrawn") == ["admin@romashka.uz", "owner@romashka.uz"]
    notice = mail_to(s, "credit_overdrawn", "owner@romashka.uz")
    assert fmt.format_money(balance, "UZS", "ru") in notice.body_text
    assert "13 марта 2026, 14:00" in notice.body_text  # NOW + 72 h in Tashkent
    assert "/billing" in notice.body_text and "Azure prod" in notice.body_text
    assert "кредитный лимит" not in notice.body_text  # prepaid

    # 2. until the grace period ends nothing is suspended, and nothing is told twice
    before = snapshot(s)
    for at in (NOW + HOUR, NOW + GRACE - timedelta(minutes=1)):
        credit_control.check(s, at)
        assert snapshot(s) == before
    assert vendor.moves == []

    # 3. the grace period is over: the active pay-as-you-go subscriptions are suspended
    summary = credit_control.check(s, NOW + GRACE)
    assert summary.suspended == 2
    for sub_id in (w.prod, w.dev):
        sub = w.sub(sub_id)
        assert (sub.status, sub.suspend_reason, sub.suspended_at) == ("suspended", "credit", NOW + GRACE)
    held = w.sub(w.held)
    assert (held.status, held.suspend_reason, held.suspended_at) == ("suspended", "customer", NOW - timedelta(days=5))
    assert w.sub(w.licence).status == "active" and w.sub(w.theirs).status == "active"
    assert vendor.moves == [("suspend", "REF-PROD"), ("suspend", "REF-DEV")]
    assert mails(s, "credit_suspended") == ["admin@romashka.uz", "owner@romashka.uz"]
    suspended_mail = mail_to(s, "credit_suspended", "admin@romashka.uz")
    assert "Azure prod" in suspended_mail.body_text and "Azure dev" in suspended_mail.body_text
    assert "Azure test" not in suspended_mail.body_text
    events = s.exec(select(AuditEvent).where(AuditEvent.action == "subscription.suspended")).all()
    assert sorted((e.subscription_id, e.user_id, e.details["reason"]) for e in events) == [
        (w.prod, None, "credit"), (w.dev, None, "credit")]

    # 4. the check again changes and mails nothing
    before = snapshot(s)
    credit_control.check(s, NOW + GRACE + HOUR)
    assert snapshot(s) == before and len(vendor.moves) == 2

    # 5. a top-up that brings the balance back resumes them at once (the payment hook)
    vendor.calls.clear()
    debt = -w.balance()
    result = pay(w, debt + Decimal("50000"), NOW + GRACE + 3 * HOUR)
    assert result.credited == debt + Decimal("50000")
    for sub_id in (w.prod, w.dev):
        sub = w.sub(sub_id)
        assert (sub.status, sub.suspend_reason, sub.suspended_at) == ("active", "", None)
    held = w.sub(w.held)
    assert (held.status, held.suspend_reason) == ("suspended", "customer")
    assert org_row(w).overdrawn_since is None
    assert vendor.moves == [("resume", "REF-PROD"), ("resume", "REF-DEV")]
    assert mails(s, "credit_resumed") == ["admin@romashka.uz", "owner@romashka.uz"]
    assert w.balance() == Decimal("50000.00")  # resuming costs nothing
    resumed = s.exec(select(AuditEvent).where(AuditEvent.action == "subscription.resumed")).all()
    assert sorted(e.subscription_id for e in resumed) == sorted([w.prod, w.dev])

    # 6. and again nothing is doubled; the other organisation was never touched
    before = snapshot(s)
    credit_control.check(s, NOW + GRACE + 4 * HOUR)
    assert snapshot(s) == before
    assert org_row(w, w.other_org).overdrawn_since is None
    s.rollback()
    assert s.exec(select(Notification).where(Notification.org_id == w.other_org.id,
                                             Notification.kind.like("credit_%"))).all() == []


def test_a_new_overdraft_after_a_top_up_is_a_new_episode_told_again(setup, vendor):
    w, s = setup, setup.session
    overdraw(w)
    credit_control.check(s, NOW)
    credit_control.check(s, NOW + GRACE)
    pay(w, -w.balance() + Decimal("1000"), NOW + GRACE + HOUR)
    assert w.sub(w.prod).status == "active"
    use(w, w.prod, "25", NOW + GRACE + 2 * HOUR)
    again = NOW + GRACE + 5 * HOUR
    credit_control.check(s, again)
    assert org_row(w).overdrawn_since == again
    assert mails(s, "credit_overdrawn") == ["admin@romashka.uz", "admin@romashka.uz",
                                            "owner@romashka.uz", "owner@romashka.uz"]
    credit_control.check(s, again + GRACE)
    assert w.sub(w.prod).status == "suspended" and len(mails(s, "credit_suspended")) == 4


def test_a_top_up_that_does_not_cover_the_debt_resumes_nothing_and_keeps_the_episode(setup, vendor):
    w, s = setup, setup.session
    overdraw(w)
    credit_control.check(s, NOW)
    credit_control.check(s, NOW + GRACE)
    debt = -w.balance()
    pay(w, debt - Decimal("1000"), NOW + GRACE + HOUR)
    assert w.balance() == Decimal("-1000.00")
    assert w.sub(w.prod).status == "suspended" and w.sub(w.dev).status == "suspended"
    assert org_row(w).overdrawn_since == NOW  # the same episode: not told again
    assert len(mails(s, "credit_overdrawn")) == 2 and mails(s, "credit_resumed") == []
    pay(w, "1000", NOW + GRACE + 2 * HOUR)  # exactly zero is no longer overdrawn
    assert w.sub(w.prod).status == "active" and org_row(w).overdrawn_since is None


def test_usage_arriving_while_suspended_for_credit_is_still_charged(setup, vendor):
    w, s = setup, setup.session
    overdraw(w)
    credit_control.check(s, NOW)
    credit_control.check(s, NOW + GRACE)
    assert w.sub(w.prod).suspend_reason == "credit"
    late = NOW + GRACE + HOUR
    add_usage(s, w.sub(w.prod), late, 2, services=2, cost="1")
    before = max(e.id for e in s.exec(select(LedgerEntry)).all())
    rating.rate_usage(s, now=late + 3 * HOUR)
    s.rollback()
    # one entry for the local day holding ``late`` (rating posts per subscription and day), charged
    entries = s.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == w.prod,
                                               LedgerEntry.id > before)).all()
    assert len(entries) == 1 and entries[0].period_start <= late < entries[0].period_end
    assert entries[0].meta["records"] == 4 and entries[0].amount < 0 and not entries[0].meta.get("not_billed")


def test_postpaid_is_overdrawn_only_beyond_its_credit_limit(world, vendor):
    w, s = world, world.session
    post = f.org(s, name="ООО «Постоплата»", tax_id="300000009", billing_mode="postpaid",
                 credit_limit=Decimal("500000"))
    boss = f.user(s, post, Role.OWNER, email="boss@post.uz")
    sub = payg_sub(s, post, w.plan("azure-h"), name="Azure post", vendor_ref="REF-POST").id
    use(w, sub, "25", NOW - 10 * HOUR)  # about −300 000: within the limit
    assert -Decimal("500000") < w.balance(post) < 0
    before = snapshot(s)
    credit_control.check(s, NOW)
    assert snapshot(s) == before
    use(w, sub, "25", NOW - 5 * HOUR)  # about −600 000: beyond it
    credit_control.check(s, NOW)
    assert org_row(w, post).overdrawn_since == NOW
    notice = mail_to(s, "credit_overdrawn", "boss@post.uz")
    assert notice.subject.startswith("Кредитный лимит превышен")
    assert fmt.format_money(Decimal("500000"), "UZS", "ru") in notice.body_text
    credit_control.check(s, NOW + GRACE)
    assert w.sub(sub).status == "suspended" and vendor.moves == [("suspend", "REF-POST")]
    # back within the limit (still a negative balance): resumed
    pay(w, -w.balance(post) - Decimal("400000"), NOW + GRACE + HOUR, actor=f.actor(boss, post))
    assert w.balance(post) == Decimal("-400000.00")
    assert w.sub(sub).status == "active" and org_row(w, post).overdrawn_since is None
    assert mails(s, "credit_resumed") == ["boss@post.uz"]


def test_a_top_up_checks_its_own_organisation_only(setup, vendor):
    w, s = setup, setup.session
    use(w, w.theirs, "100", NOW - 3 * HOUR)  # the other organisation: about −200 000
    assert w.balance(w.other_org) < 0
    pay(w, "5000", NOW)
    assert org_row(w, w.other_org).overdrawn_since is None and mails(s, "credit_overdrawn") == []
    credit_control.check(s, NOW + HOUR)  # the hourly run finds it
    assert org_row(w, w.other_org).overdrawn_since == NOW + HOUR
    assert mails(s, "credit_overdrawn") == ["owner@lutik.uz"]
    assert org_row(w).overdrawn_since is None


def test_zero_hours_of_grace_suspend_on_the_first_check(setup, vendor, monkeypatch):
    monkeypatch.setenv("PANEL_CREDIT_GRACE_HOURS", "0")
    reset_settings()
    w, s = setup, setup.session
    overdraw(w)
    summary = credit_control.check(s, NOW)
    assert (summary.overdrawn, summary.suspended) == (1, 2)
    assert len(mails(s, "credit_overdrawn")) == 2 and len(mails(s, "credit_suspended")) == 2


def test_a_vendor_that_refuses_leaves_the_organisation_as_it_was_and_the_next_run_retries(setup, vendor):
    w, s = setup, setup.session
    overdraw(w)
    use(w, w.theirs, "100", NOW - 3 * HOUR)
    credit_control.check(s, NOW)
    vendor.refuse = True
    summary = credit_control.check(s, NOW + GRACE)
    assert summary.failed == [w.org.id, w.other_org.id] and summary.suspended == 0
    assert w.sub(w.prod).status == "active" and w.sub(w.dev).status == "active"
    assert mails(s, "credit_suspended") == [] and org_row(w).overdrawn_since == NOW
    vendor.refuse = False
    summary = credit_control.check(s, NOW + GRACE + HOUR)
    assert summary.failed == [] and summary.suspended == 3


def test_two_checks_at_once_suspend_and_mail_once(engine, vendor):
    with Session(engine, expire_on_commit=False) as s:
        w = _setup(make_world(s))
        overdraw(w)
        credit_control.check(s, NOW)

    def run():
        with Session(engine, expire_on_commit=False) as own:
            return credit_control.check(own, NOW + GRACE)

    results = at_once(run, run)
    assert sorted(r.suspended for r in results) == [0, 2]
    assert sorted(vendor.moves) == [("suspend", "REF-DEV"), ("suspend", "REF-PROD")]
    with Session(engine) as s:
        assert mails(s, "credit_suspended") == ["admin@romashka.uz", "owner@romashka.uz"]
        assert len(s.exec(select(AuditEvent).where(AuditEvent.action == "subscription.suspended")).all()) == 2


def test_the_hourly_rating_job_tells_an_organisation_its_usage_overdrew(engine, vendor):
    with Session(engine, expire_on_commit=False) as s:
        w = _setup(make_world(s))
        add_usage(s, w.sub(w.prod), NOW - 3 * HOUR, 1, services=1, cost="25")
    result = registry.run_job("rating", NOW)
    assert "credit control: overdrawn 1" in result
    with Session(engine) as s:
        assert s.get(Organisation, w.org.id).overdrawn_since == NOW
        assert mails(s, "credit_overdrawn") == ["admin@romashka.uz", "owner@romashka.uz"]
    assert "suspended 2" in registry.run_job("rating", NOW + GRACE)
