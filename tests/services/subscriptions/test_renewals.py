"""Renewals, monthly instalments, trial ends and reminders: once-only charges (twice, two threads),
grace → suspension → expiry, no charges while suspended, and 10 000 renewals in seconds."""

from __future__ import annotations

import os
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from noventiq_panel.i18n import format as fmt
from noventiq_panel.models import (
    LedgerEntry,
    LicenceBatch,
    Membership,
    Notification,
    Organisation,
    Plan,
    Product,
    Role,
    Subscription,
    User,
)
from noventiq_panel.services.core import ledger
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.subscriptions import renewals
from noventiq_panel.services.subscriptions import licence_count, lifecycle, ordering
from noventiq_panel.services.subscriptions.context import MONEY_ROLES

from tests import factories as f
from tests.services.subs_world import NOW, World, make_world, tashkent, world

H = timedelta(hours=1)
D = timedelta(days=1)
TERM_END = tashkent(2026, 4, 10, 0)  # of a monthly term bought at NOW (10 Mar)


def buy(w: World, code: str, qty: int = 1, at: datetime = NOW, **kw) -> int:
    return ordering.order(w.session, w.a_owner, w.plan(code).id, qty, now=at, **kw).subscription_id


def charges(w: World, sub_id: int) -> list[tuple[str, Decimal, str]]:
    w.session.rollback()
    return [(e.kind, e.amount, e.idempotency_key) for e in w.session.exec(
        select(LedgerEntry).where(LedgerEntry.subscription_id == sub_id).order_by(LedgerEntry.id)).all()]


def mails(w: World, kind: str) -> list[Notification]:
    """The owner's mails of ``kind`` (admins and financial managers get their own copies)."""
    w.session.rollback()
    return list(w.session.exec(select(Notification).where(Notification.kind == kind,
                                                          Notification.to_email == w.owner.email)).all())


# --- renewals --------------------------------------------------------------------------------

def test_renewal_charges_the_next_term_and_gives_all_seats_a_new_window(world):
    w = world
    w.topup("120000")
    sid = buy(w, "basic-m", 2)
    assert renewals.renew_due(w.session, TERM_END - timedelta(seconds=1))["renewed"] == 0  # not yet due
    summary = renewals.renew_due(w.session, TERM_END + 2 * H)
    assert summary["renewed"] == 1 and summary["charged"] == {"UZS": "60000.00"}
    sub = w.sub(sid)
    assert (sub.status, sub.term_start, sub.term_end) == ("active", TERM_END, tashkent(2026, 5, 10, 0))
    assert charges(w, sid)[-1] == ("charge", Decimal("-60000.00"), f"renewal:{sid}:20260410")
    rows = w.session.exec(select(LicenceBatch).where(LicenceBatch.subscription_id == sid)
                          .order_by(LicenceBatch.id)).all()
    assert [(b.quantity, b.source) for b in rows] == [(0, "purchase"), (2, "renewal")]
    assert rows[-1].window_ends_at == TERM_END + 2 * H + 168 * H
    [mail] = mails(w, "renewal_done")
    assert "09.05.2026" in mail.body_text or "9 мая 2026" in mail.body_text  # paid through the last day


def test_renewal_run_twice_charges_once(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    renewals.renew_due(w.session, TERM_END + H)
    again = renewals.renew_due(w.session, TERM_END + 2 * H)
    assert again["renewed"] == 0 and again["charged"] == {}
    assert len(charges(w, sid)) == 2 and w.balance() == Decimal("40000.00")


def test_renewals_from_two_threads_charge_once(engine, session):
    w = make_world(session)
    w.topup("1000000")
    ids = [buy(w, "basic-m", 1) for _ in range(5)]
    barrier = threading.Barrier(2)
    results: list = []

    def run():
        with Session(engine, expire_on_commit=False) as s:
            barrier.wait()
            try:
                results.append(renewals.renew_due(s, TERM_END + H, chunk_size=2))
            except Exception as exc:  # noqa: BLE001
                results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(r, dict) for r in results), results
    assert sum(r["renewed"] for r in results) == 5
    for sid in ids:
        assert len(charges(w, sid)) == 2
    assert w.balance() == Decimal("1000000") - 10 * Decimal("30000")


def test_auto_renew_off_expires_at_the_term_end_without_a_charge(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    lifecycle.set_auto_renew(w.session, w.a_owner, sid, False, now=NOW + D)
    assert renewals.renew_due(w.session, TERM_END + H)["expired"] == 1
    assert w.sub(sid).status == "expired" and w.balance() == Decimal("70000.00")
    assert len(mails(w, "expired")) == 1


def test_renewal_without_funds_grace_then_suspension_then_expiry(world):
    w = world
    w.topup("30000")
    sid = buy(w, "basic-m", 1)
    first = renewals.renew_due(w.session, TERM_END + H)
    sub = w.sub(sid)
    assert first["grace_started"] == 1 and sub.status == "active" and sub.grace_until == TERM_END + 7 * D
    renewals.renew_due(w.session, TERM_END + 2 * H)
    assert len(mails(w, "renewal_failed_funds")) == 1  # to the owner, once
    assert renewals.renew_due(w.session, TERM_END + 7 * D)["suspended"] == 1
    assert w.sub(sid).status == "suspended" and len(mails(w, "suspended")) == 1
    renewals.renew_due(w.session, TERM_END + 8 * D)
    assert w.sub(sid).status == "suspended"
    assert renewals.renew_due(w.session, TERM_END + 14 * D)["expired"] == 1
    # the seven grace days were used: charged at expiry (30 000 × 7/30), the balance overdrawn
    assert w.sub(sid).status == "expired" and w.balance() == Decimal("-7000.00")


def test_payment_during_the_grace_period_renews_from_the_old_term_end(world):
    w = world
    w.topup("30000")
    sid = buy(w, "basic-m", 1)
    renewals.renew_due(w.session, TERM_END + H)
    w.topup("30000")
    assert renewals.renew_due(w.session, TERM_END + 3 * D)["renewed"] == 1
    sub = w.sub(sid)
    assert (sub.term_start, sub.grace_until, sub.status) == (TERM_END, None, "active")


def test_payment_after_suspension_reactivates_with_a_term_that_counts_the_grace_days(world):
    w = world
    w.topup("30000")
    sid = buy(w, "basic-m", 1)
    renewals.renew_due(w.session, TERM_END + H)
    renewals.renew_due(w.session, TERM_END + 7 * D + H)
    assert w.sub(sid).status == "suspended"
    w.topup("30000")
    assert renewals.renew_due(w.session, tashkent(2026, 4, 20, 9))["reactivated"] == 1
    sub = w.sub(sid)
    # active 10 Apr .. the end of the grace period, 17 Apr 00:00 (7 days; the hour the job took to
    # suspend it is not counted), suspended until 20 Apr: the month paid runs from 20 Apr moved
    # back by those 7 days
    assert (sub.status, sub.term_start, sub.term_end) == ("active", tashkent(2026, 4, 13, 0), tashkent(2026, 5, 13, 0))
    assert w.balance() == Decimal("0.00")


def test_subscription_suspended_by_the_customer_is_not_charged_at_renewal(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + D)
    summary = renewals.renew_due(w.session, TERM_END + H)
    assert summary["renewed"] == 0 and summary["charged"] == {}
    assert w.sub(sid).status == "suspended" and w.balance() == Decimal("70000.00")
    lifecycle.set_auto_renew(w.session, w.a_owner, sid, False, now=TERM_END + 2 * H)
    renewals.renew_due(w.session, TERM_END + 3 * H)
    assert w.sub(sid).status == "expired" and w.balance() == Decimal("70000.00")


def test_yearly_plan_billed_monthly_renews_with_its_first_instalment(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-ym", 1)
    sub = w.sub(sid)
    sub.next_billing_at = None  # as if the eleven other instalments were paid
    w.session.add(sub)
    w.session.commit()
    renewals.renew_due(w.session, tashkent(2027, 3, 10, 1))
    sub = w.sub(sid)
    assert sub.term_end == tashkent(2028, 3, 10, 0) and sub.next_billing_at == tashkent(2027, 4, 10, 0)
    assert charges(w, sid)[-1][1] == Decimal("-30000.00")


def test_renewal_mails_are_what_render_gives_each_recipient(world):
    """The outbox rows written in bulk for a chunk hold exactly what ``notifications.render`` gives
    for each recipient's own context (name, locale), as ``notifications.enqueue`` would write them."""
    w = world
    w.finance.locale = "en"
    w.session.add(w.finance)
    w.session.commit()
    w.topup("1000000")
    ids = [buy(w, "basic-m", 2), buy(w, "std-usd", 1), buy(w, "basic-m", 3)]
    assert renewals.renew_due(w.session, TERM_END + H)["renewed"] == 3
    expected = set()
    for sid in ids:
        sub = w.sub(sid)
        product = w.session.get(Product, w.session.get(Plan, sub.plan_id).product_id)
        amount = -charges(w, sid)[-1][1]
        for user in notifications.recipients(w.session, w.org.id, MONEY_ROLES):
            context = {"product": product.name, "quantity": sub.quantity, "amount": amount, "currency": "UZS",
                       "period_end": date(2026, 5, 9), "subscription_id": sid,
                       "org_name": w.org.name, "tz": w.org.timezone, "user_name": user.name}
            rendered = notifications.render("renewal_done", context, user.locale)
            expected.add((user.email, fmt.normalize_locale(user.locale), rendered.subject, rendered.text, rendered.html))
    w.session.rollback()
    written = {(m.to_email, m.locale, m.subject, m.body_text, m.body_html)
               for m in w.session.exec(select(Notification).where(Notification.kind == "renewal_done")).all()}
    assert len(written) == 9 and written == expected
    assert {locale for _to, locale, *_rest in written} == {"ru", "en"}


def test_remembered_formatting_gives_what_the_formatters_give():
    """Mail rendering remembers formatted values; values that are equal but print differently
    (one wall-clock time twice at a DST change, Decimal exponents, int and Decimal) never share one."""
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2025, 10, 26, 2, 30, tzinfo=berlin)  # 00:30 UTC
    second = datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=berlin)  # 01:30 UTC, yet == first
    assert first == second
    for moment in (first, second, first):
        rendered = notifications.render("password_reset", {"link": "https://x/reset/t", "expires_at": moment}, "ru")
        assert fmt.format_datetime(moment, fmt.DEFAULT_TZ, "ru", format="text") in rendered.text
    for value in (Decimal("1.5"), Decimal("1.50"), Decimal("-0.00"), 2, Decimal(2), "12.5", Decimal("1234567.891")):
        for locale in ("ru", "en"):
            rendered = notifications.render("low_balance", {"balance": value, "threshold": value, "currency": "UZS"},
                                            locale)
            assert fmt.format_money(value, "UZS", locale) in rendered.text


# --- instalments -----------------------------------------------------------------------------

def test_monthly_instalments_are_charged_once_each_and_catch_up(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-ym", 2)  # 60 000 a month
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 9, 23))["instalments"] == 0
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 10, 0))["instalments"] == 1
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 10, 5))["instalments"] == 0
    # The job was down for two months: both are charged, each once.
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 6, 11))["instalments"] == 2
    assert [k for _kind, _a, k in charges(w, sid)][1:] == [
        f"instalment:{sid}:20260410", f"instalment:{sid}:20260510", f"instalment:{sid}:20260610"]
    assert w.sub(sid).next_billing_at == tashkent(2026, 7, 10, 0)
    assert w.balance() == Decimal("1000000") - 4 * Decimal("60000")


def test_instalments_follow_an_increase(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-ym", 1)
    licence_count.change_quantity(w.session, w.a_owner, sid, 3, now=tashkent(2026, 3, 25))
    renewals.bill_instalments_due(w.session, tashkent(2026, 4, 10, 1))
    assert charges(w, sid)[-1][1] == Decimal("-90000.00")


def test_no_instalment_while_suspended_and_resume_charges_the_rest_of_the_month(world):
    w = world
    w.topup("1000000")
    plan = w.plan("basic-ym")
    plan.suspendable = True
    w.session.add(plan)
    w.session.commit()
    sid = buy(w, "basic-ym", 1)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + D)
    summary = renewals.bill_instalments_due(w.session, tashkent(2026, 5, 15))
    assert summary["instalments"] == 0 and summary["charged"] == {}
    balance = w.balance()
    result = lifecycle.resume(w.session, w.a_owner, sid, now=tashkent(2026, 5, 25, 10))  # 16 of 31 days of May
    assert result.charged == Decimal("15483.87")  # 30 000 x 16/31
    assert w.balance() == balance - Decimal("15483.87")
    assert w.sub(sid).next_billing_at == tashkent(2026, 6, 10, 0)
    renewals.bill_instalments_due(w.session, tashkent(2026, 6, 10, 1))
    assert charges(w, sid)[-1] == ("charge", Decimal("-30000.00"), f"instalment:{sid}:20260610")


def test_unpaid_instalment_grace_suspension_and_reactivation(world):
    w = world
    w.topup("30000")
    sid = buy(w, "basic-ym", 1)
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 10, 1))["grace_started"] == 1
    assert w.sub(sid).status == "active"
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 17, 1))["suspended"] == 1
    w.topup("30000")
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 22, 10))["reactivated"] == 1
    sub = w.sub(sid)
    assert sub.status == "active" and sub.next_billing_at == tashkent(2026, 5, 10, 0)
    # 30 000 x 25/30: the 7 grace days (10 .. 16 Apr) and 22 Apr .. 9 May; not the suspended days
    assert charges(w, sid)[-1][1] == Decimal("-25000.00")


# --- trials ----------------------------------------------------------------------------------

def test_trial_converts_to_the_paid_plan_when_chosen_and_paid(world):
    w = world
    w.topup("100000")
    sid = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 3, trial_convert=True, now=NOW).subscription_id
    ends = tashkent(2026, 4, 9, 0)
    assert renewals.end_trials(w.session, ends - H)["trials_converted"] == 0
    assert renewals.end_trials(w.session, ends + H)["trials_converted"] == 1
    assert renewals.end_trials(w.session, ends + 2 * H)["trials_converted"] == 0
    sub = w.sub(sid)
    assert (sub.status, sub.is_trial, sub.plan_id, sub.term_start, sub.term_end) == (
        "active", False, w.plan("basic-m").id, ends, tashkent(2026, 5, 9, 0))
    assert charges(w, sid) == [("charge", Decimal("-90000.00"), f"trial:{sid}")]


def test_trial_without_funds_or_without_the_choice_expires(world):
    w = world
    a = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 3, trial_convert=True, now=NOW).subscription_id
    summary = renewals.end_trials(w.session, tashkent(2026, 4, 9, 1))
    assert summary["trials_expired"] == 1 and w.sub(a).status == "expired"
    assert w.balance() == Decimal("0.00")


# --- scale -----------------------------------------------------------------------------------

BENCH_SIZE = int(os.environ.get("PANEL_BENCH_RENEWALS", "600"))


def test_ten_thousand_due_renewals_run_in_seconds(sqlite_engine):
    """Parameterised by PANEL_BENCH_RENEWALS (default 600; run once with 10000)."""
    n = BENCH_SIZE
    orgs_count = max(1, n // 100)
    with Session(sqlite_engine, expire_on_commit=False) as s:
        plans = f.catalog(s)
        plan = plans["basic-m"]
        orgs = [Organisation(name=f"Org {i}", tax_id=f"{300000000 + i}") for i in range(orgs_count)]
        s.add_all(orgs)
        s.flush()
        users = [User(email=f"owner{i}@bench.uz", name=f"Owner {i}") for i in range(orgs_count)]
        s.add_all(users)
        s.flush()
        s.add_all([Membership(user_id=u.id, org_id=o.id, role=Role.OWNER) for u, o in zip(users, orgs)])
        for o in orgs:
            ledger.post(s, org_id=o.id, kind="topup", amount=Decimal("100000000"), idempotency_key=f"bench:{o.id}")
        start = TERM_END - 30 * D
        s.add_all([Subscription(org_id=orgs[i % orgs_count].id, plan_id=plan.id, status="active", quantity=1 + i % 5,
                                term_start=start, term_end=TERM_END, activated_at=start, auto_renew=True,
                                vendor_ref=f"DOUBLE-{i}") for i in range(n)])
        s.commit()
    with Session(sqlite_engine, expire_on_commit=False) as s:
        t0 = time.perf_counter()
        summary = renewals.renew_due(s, TERM_END + H)
        elapsed = time.perf_counter() - t0
    assert summary["renewed"] == n, summary
    with Session(sqlite_engine) as s:
        assert len(s.exec(select(LedgerEntry.id).where(LedgerEntry.kind == "charge")).all()) == n
    print(f"\nrenewed {n} subscriptions in {elapsed:.2f}s")
    assert elapsed < max(3.0, n / 1000), f"{n} renewals took {elapsed:.1f}s"
