"""Findings of the attacker review of issue 13 (each failed before its fix): sequences of
legitimate calls that gave service without paying for it, or refunded more than was charged."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.models import LedgerEntry, Plan
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.subscriptions import (
    cancellation, confirmation, credit_control, licence_count, lifecycle, ordering, renewals,
)

from tests.services.subs_world import NOW, tashkent, world  # noqa: F401
from tests.services.usage_world import add_usage, payg_sub

H = timedelta(hours=1)
D = timedelta(days=1)


def confirm_order(w, code: str, seats: int, at):
    q = ordering.quote_order(w.session, w.a_owner, w.plan(code).id, seats, now=at)
    return ordering.order(w.session, w.a_owner, w.plan(code).id, seats, quote_id=q.quote_id, amount=str(q.amount_due),
                          now=at).subscription_id


def change(w, sid: int, seats: int, at):
    q = licence_count.quote_quantity_change(w.session, w.a_owner, sid, seats, now=at)
    return licence_count.change_quantity(w.session, w.a_owner, sid, seats, quote_id=q.quote_id,
                                         amount=str(q.amount_due), now=at)


def charged_total(w, sid: int) -> Decimal:
    w.session.rollback()
    return -sum((e.amount for e in w.session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sid))),
                Decimal("0.00"))


def test_the_grace_week_is_paid_when_a_customer_suspends_and_resumes_at_its_end(world):
    w = world
    w.topup("300000")
    sid = confirm_order(w, "basic-m", 10, NOW)  # 30 000 a seat a month, suspendable
    end = w.sub(sid).term_end
    renewals.renew_due(w.session, end + H)  # nothing on the balance: 7 days of grace, service goes on
    assert w.sub(sid).grace_until is not None
    last_grace_day = w.sub(sid).grace_until - 2 * H
    w.topup("300000")
    with pytest.raises(Conflict):  # no pause while the renewal is due (lapse rule): pay or cancel
        lifecycle.suspend(w.session, w.a_owner, sid, now=last_grace_day)
    renewals.renew_due(w.session, last_grace_day + timedelta(minutes=1))  # the payment renews it
    sub = w.sub(sid)
    # one month paid for each month of service: the new term covers the grace days too
    served = (sub.term_end - tashkent(2026, 3, 10, 0)).days
    assert served <= 62, served  # 10 Mar .. 10 May at the most, not 10 Mar .. 17 May
    assert charged_total(w, sid) == Decimal("600000.00")


def test_the_grace_week_is_paid_when_the_renewal_job_brings_a_suspended_subscription_back(world):
    w = world
    plan = w.plan("std-m")
    plan.suspendable = False
    w.session.add(plan)
    w.session.commit()
    w.topup("90000")
    sid = confirm_order(w, "std-m", 1, NOW)
    end = w.sub(sid).term_end
    renewals.renew_due(w.session, end + 30 * timedelta(minutes=1))  # grace starts
    grace = w.sub(sid).grace_until
    renewals.renew_due(w.session, grace + 30 * timedelta(minutes=1))  # suspended for payment
    assert w.sub(sid).status == "suspended"
    w.topup("90000")
    renewals.renew_due(w.session, grace + 90 * timedelta(minutes=1))  # paid: back
    sub = w.sub(sid)
    assert sub.status == "active"
    # the 7 grace days were service: the new month is counted from the old term end (+ a day begun)
    assert sub.term_end <= tashkent(2026, 5, 11, 0), sub.term_end


def test_seats_added_and_removed_on_one_day_pay_for_that_day(world):
    w = world
    w.topup("2000000")
    sid = confirm_order(w, "basic-m", 1, NOW)
    before = w.balance()
    change(w, sid, 51, tashkent(2026, 3, 11, 8))
    change(w, sid, 1, tashkent(2026, 3, 11, 20))
    # the day the 50 seats were held is paid: 50 x 30 000 x 1/31 = 48 387.10, less a tiyin of the
    # two entries' own rounding
    assert before - w.balance() == Decimal("48387.09")


def test_a_price_rise_does_not_refund_more_than_the_seats_were_charged(world):
    w = world
    w.topup("1000000")
    sid = confirm_order(w, "basic-m", 10, NOW)  # 300 000 for the month
    plan = w.session.get(Plan, w.plan("basic-m").id)
    plan.price = Decimal("60000")
    w.session.add(plan)
    w.session.commit()
    at = NOW + 2 * D  # 12 Mar: 29 of 31 days left, 2 days used
    refund = change(w, sid, 1, at).refunded
    # 9 seats x 30 000 (what they were charged) x 28/31 (today is used, so paid)
    assert refund == Decimal("243870.97")


def test_a_customer_cannot_resume_a_pay_as_you_go_subscription_while_overdrawn(world):
    w = world
    plan = w.session.get(Plan, w.plan("azure-h").id)
    plan.suspendable = True
    w.session.add(plan)
    w.session.commit()
    w.topup("100000")
    sub = payg_sub(w.session, w.org, w.plan("azure-h"), name="Azure prod", vendor_ref="REF-PROD")
    add_usage(w.session, w.sub(sub.id), NOW - 3 * H, 1, services=1, cost="25")
    from noventiq_panel.services.usage import rating
    rating.rate_usage(w.session, now=NOW)
    credit_control.check(w.session, NOW)
    assert w.balance() < 0
    later = NOW + 72 * H
    lifecycle.suspend(w.session, w.a_owner, sub.id, now=later - timedelta(minutes=1))
    credit_control.check(w.session, later)
    with pytest.raises(Conflict) as err:
        lifecycle.resume(w.session, w.a_owner, sub.id, now=later + timedelta(minutes=1))
    assert err.value.key == "error.suspended_for_credit"


def test_an_increase_while_an_instalment_is_due_is_refused_not_charged_twice(world):
    w = world
    w.topup("1000000")
    sid = confirm_order(w, "basic-ym", 1, NOW)
    due = w.sub(sid).next_billing_at
    with pytest.raises(Conflict) as err:
        licence_count.quote_quantity_change(w.session, w.a_owner, sid, 2, now=due + H)
    assert err.value.key == "error.instalment_due"


def test_a_confirmed_quote_does_not_answer_for_another_subscription(world):
    w = world
    w.topup("1000000")
    one, two = confirm_order(w, "basic-m", 1, NOW), confirm_order(w, "basic-m", 1, NOW)
    q = cancellation.quote_cancel(w.session, w.a_owner, one, now=NOW + H)
    cancellation.cancel(w.session, w.a_owner, one, quote_id=q.quote_id, amount=str(q.amount_due), now=NOW + H)
    with pytest.raises(Conflict):
        cancellation.cancel(w.session, w.a_owner, two, quote_id=q.quote_id, amount=str(q.amount_due), now=NOW + H)
    assert w.sub(two).status == "active"
    assert confirmation.QUOTE_MINUTES > 0
