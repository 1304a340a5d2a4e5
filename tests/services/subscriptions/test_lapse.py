"""Issue 13: the days a subscription is used after a payment fell due unpaid are paid for, however
it ends (services/subscriptions/lapse.py). basic-m × 10 (300 000 a month) bought on 10 March with
nothing left: the renewal of 10 April is unpaid, the seats run in grace until 17 April."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.models import LedgerEntry, Subscription
from noventiq_panel.services.subscriptions import cancellation, lifecycle, renewals

from tests.services.subs_world import NOW, counts, tashkent, world  # noqa: F401
from tests.services.subscriptions.test_money_rules import confirm_cancel, confirm_order


@pytest.fixture
def lapsed(world):
    """The renewal job of 10 April 00:30 found no funds: grace until 17 April 00:00."""
    w = world
    w.topup("300000")
    sid = confirm_order(w, "basic-m", 10, NOW).subscription_id
    summary = renewals.renew_due(w.session, now=tashkent(2026, 4, 10, 0, 30))
    assert summary["grace_started"] == 1 and w.balance() == 0
    return w, sid


def lapse_entries(w) -> list[LedgerEntry]:
    w.session.rollback()
    return [e for e in w.session.exec(select(LedgerEntry).order_by(LedgerEntry.id)).all()
            if (e.meta or {}).get("action") == "lapse"]


def test_cancelling_in_grace_charges_the_days_used_and_says_so_first(lapsed):
    w, sid = lapsed
    at = tashkent(2026, 4, 12, 14)
    quote = cancellation.quote_cancel(w.session, w.a_owner, sid, now=at)
    assert quote.immediate and quote.refund_now == 0
    assert quote.charge_now == Decimal("30000.00")  # 10, 11, 12 April of a 30-day period
    assert quote.amount_due == Decimal("30000.00")
    outcome = confirm_cancel(w, sid, at)
    assert outcome.status == "cancelled" and outcome.charged == Decimal("30000.00")
    [entry] = lapse_entries(w)
    assert entry.amount == Decimal("-30000.00") and entry.kind == "charge" and entry.meta["days"] == 3
    assert entry.period_start == tashkent(2026, 4, 10, 0) and entry.period_end == tashkent(2026, 5, 10, 0)
    assert w.balance() == Decimal("-30000.00")  # owed, shown; credit control tells the owners
    renewals.renew_due(w.session, now=at + timedelta(days=20))  # a job afterwards charges nothing more
    assert w.balance() == Decimal("-30000.00")


def test_turning_auto_renew_off_in_grace_charges_the_days_used_at_expiry(lapsed):
    w, sid = lapsed
    lifecycle.set_auto_renew(w.session, w.a_owner, sid, False, now=tashkent(2026, 4, 12, 14))
    summary = renewals.renew_due(w.session, now=tashkent(2026, 4, 12, 15))
    assert summary["expired"] == 1 and summary["lapses_charged"] == 1
    assert w.balance() == Decimal("-30000.00")
    assert renewals.renew_due(w.session, now=tashkent(2026, 4, 12, 16))["lapses_charged"] == 0


def test_suspending_while_a_payment_is_due_is_refused_and_changes_nothing(lapsed):
    """A customer's pause would take the seats out of the grace → suspension → expiry path and park
    the days used unpaid for ever (attacker review): refused until paid or cancelled."""
    from noventiq_panel.services.core.errors import Conflict

    w, sid = lapsed
    before = counts(w.session)
    with pytest.raises(Conflict) as exc:
        lifecycle.suspend(w.session, w.a_owner, sid, now=tashkent(2026, 4, 11, 9))
    assert exc.value.key == "error.suspend_payment_due" and counts(w.session) == before


def test_a_subscription_that_expires_unpaid_pays_its_seven_grace_days_not_the_hour_the_job_took(lapsed):
    w, sid = lapsed
    renewals.renew_due(w.session, now=tashkent(2026, 4, 17, 0, 40))  # suspended 40 minutes into the 17th
    assert w.sub(sid).status == "suspended" and w.balance() == 0
    summary = renewals.renew_due(w.session, now=tashkent(2026, 4, 24, 0, 40))
    assert summary["expired"] == 1
    assert w.balance() == Decimal("-70000.00")  # 10–16 April


def test_paying_in_grace_renews_from_the_due_day_and_charges_no_lapse(lapsed):
    w, sid = lapsed
    w.topup("300000")
    renewals.renew_due(w.session, now=tashkent(2026, 4, 12, 15))
    sub = w.sub(sid)
    assert sub.status == "active" and sub.term_start == tashkent(2026, 4, 10, 0)
    assert w.balance() == 0 and not lapse_entries(w)


def test_an_expiry_without_a_lapse_charges_nothing_however_late_the_job_runs(world):
    w = world
    w.topup("300000")
    sid = confirm_order(w, "basic-m", 10, NOW).subscription_id
    lifecycle.set_auto_renew(w.session, w.a_owner, sid, False, now=NOW)
    renewals.renew_due(w.session, now=tashkent(2026, 4, 11, 15))  # a day and a half late
    assert w.sub(sid).status == "expired" and w.balance() == 0


def test_a_cancelled_lapse_is_not_charged_twice_by_a_replayed_confirmation(lapsed):
    w, sid = lapsed
    at = tashkent(2026, 4, 12, 14)
    quote = cancellation.quote_cancel(w.session, w.a_owner, sid, now=at)
    for _ in range(2):
        cancellation.cancel(w.session, w.a_owner, sid, quote_id=quote.quote_id, amount=str(quote.amount_due), now=at)
    assert w.balance() == Decimal("-30000.00") and len(lapse_entries(w)) == 1
    w.session.rollback()
    assert w.session.exec(select(Subscription).where(Subscription.id == sid)).one().status == "cancelled"


def test_a_yearly_commitment_billed_monthly_is_not_left_by_skipping_an_instalment_and_cancelling(world):
    """Found in the issue-13 review: basic-ym × 10 (30 000 a month each), the April instalment left
    unpaid, then "cancel": it used to end at once, the eleven months still committed forgotten.
    Now it is cancelled as a paid one would be: at the term's end, nothing moves now."""
    w = world
    w.topup("300000")
    sid = confirm_order(w, "basic-ym", 10, NOW).subscription_id
    assert renewals.bill_instalments_due(w.session, tashkent(2026, 4, 10, 1))["grace_started"] == 1
    at = tashkent(2026, 4, 12, 14)
    quote = cancellation.quote_cancel(w.session, w.a_owner, sid, now=at)
    assert not quote.immediate and quote.amount_due == 0 and quote.effective_at == tashkent(2027, 3, 10, 0)
    outcome = confirm_cancel(w, sid, at)
    assert outcome.status == "active" and w.balance() == 0
    # still unpaid: suspended after the grace period, expired after the second; the 7 days used paid
    renewals.bill_instalments_due(w.session, tashkent(2026, 4, 17, 1))
    renewals.bill_instalments_due(w.session, tashkent(2026, 4, 24, 1))
    assert w.sub(sid).status == "expired"
    assert w.balance() == Decimal("-70000.00")
