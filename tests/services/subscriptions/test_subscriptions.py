"""Subscriptions: ordering every billing variant, trials, licence counts (pro rata, cancellation
windows), plan changes, suspension, cancellation, listing, the shortfall path, concurrency, and
bad input that must change nothing."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from noventiq_panel.models import (
    AuditEvent,
    LedgerEntry,
    LicenceBatch,
    Notification,
    ScheduledChange,
    Subscription,
)
from noventiq_panel.services.core import rates
from noventiq_panel.services.subscriptions import renewals
from noventiq_panel.services.subscriptions import cancellation, licence_count, lifecycle, listing, ordering, pending_actions, plan_change, quotes
from noventiq_panel.services.core.errors import (
    Conflict,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    RateMissing,
)

from tests import factories as f
from tests.services.subs_world import NOW, World, counts, make_world, tashkent, world

H = timedelta(hours=1)
D = timedelta(days=1)


def buy(w: World, code: str, qty: int = 1, at: datetime = NOW, **kw) -> int:
    return ordering.order(w.session, w.a_owner, w.plan(code).id, qty, now=at, **kw).subscription_id


def entries(w: World, sub_id: int) -> list[LedgerEntry]:
    w.session.rollback()
    return list(w.session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub_id)
                               .order_by(LedgerEntry.id)).all())


def batches(w: World, sub_id: int) -> list[tuple[int, str]]:
    w.session.rollback()
    return [(b.quantity, b.source) for b in w.session.exec(
        select(LicenceBatch).where(LicenceBatch.subscription_id == sub_id).order_by(LicenceBatch.id)).all()]


def pending(w: World, sub_id: int) -> list[ScheduledChange]:
    w.session.rollback()
    return list(w.session.exec(select(ScheduledChange).where(ScheduledChange.subscription_id == sub_id,
                                                             ScheduledChange.status == "pending")).all())


# --- ordering --------------------------------------------------------------------------------

def test_monthly_upfront_order_charges_the_term_and_opens_a_168_hour_window(world):
    w = world
    w.topup("100000")
    quote = ordering.quote_order(w.session, w.a_owner, w.plan("basic-m").id, 3, now=NOW)
    assert quote.price_now == Decimal("90000.00") and quote.shortfall == 0
    assert quote.renewal_date == date(2026, 4, 10) and quote.recurring_period == "month"
    result = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, "3", now=NOW)
    assert result.charged == Decimal("90000.00") and result.status == "active"
    sub = w.sub(result.subscription_id)
    assert (sub.quantity, sub.term_start, sub.term_end) == (3, NOW, tashkent(2026, 4, 10, 0))
    assert sub.vendor_ref.startswith("DOUBLE-") and sub.auto_renew
    [batch] = w.session.exec(select(LicenceBatch).where(LicenceBatch.subscription_id == sub.id)).all()
    assert (batch.quantity, batch.source, batch.window_ends_at) == (3, "purchase", NOW + 168 * H)
    [entry] = entries(w, sub.id)
    assert (entry.kind, entry.amount, entry.quantity, entry.fx_rate) == ("charge", Decimal("-90000.00"), 3, 1)
    assert entry.idempotency_key.startswith("op:") and entry.idempotency_key.endswith(":charge")
    assert w.balance() == Decimal("10000.00")
    assert w.session.exec(select(AuditEvent).where(AuditEvent.action == "subscription.ordered")).one().user_id == w.owner.id
    mail = w.session.exec(select(Notification).where(Notification.kind == "order_confirmed")).one()
    assert mail.to_email == "owner@romashka.uz" and "90" in mail.body_text


def test_yearly_upfront_order_charges_the_whole_year(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-y", 2)
    sub = w.sub(sid)
    assert sub.term_end == tashkent(2027, 3, 10, 0) and sub.next_billing_at is None
    assert w.balance() == Decimal("280000.00")


def test_yearly_plan_billed_monthly_charges_only_the_first_instalment(world):
    w = world
    w.topup("100000")
    quote = ordering.quote_order(w.session, w.a_owner, w.plan("basic-ym").id, 2, now=NOW)
    assert quote.price_now == Decimal("60000.00") and quote.recurring_period == "month"
    sid = buy(w, "basic-ym", 2)
    sub = w.sub(sid)
    assert sub.term_end == tashkent(2027, 3, 10, 0)
    assert sub.next_billing_at == tashkent(2026, 4, 10, 0)
    [entry] = entries(w, sid)
    assert entry.period_end == tashkent(2026, 4, 10, 0) and entry.amount == Decimal("-60000.00")
    assert w.balance() == Decimal("40000.00")


def test_usd_plan_is_charged_at_the_days_rate_and_the_rate_is_stored(world):
    w = world
    w.topup("1000000")
    rates.store_rate(w.session, "USD", date(2026, 3, 10), Decimal("12500.00"), source="manual")
    w.session.commit()
    sid = buy(w, "std-usd", 2)
    [entry] = entries(w, sid)
    assert entry.amount == Decimal("-312500.00")  # 2 x 12.50 USD x 12 500
    assert (entry.fx_rate, entry.fx_date, entry.source_currency, entry.source_amount) == (
        Decimal("12500"), date(2026, 3, 10), "USD", Decimal("25"))


def test_usd_plan_without_any_rate_is_refused_and_changes_nothing(session):
    o = f.org(session)
    owner = f.user(session, o)
    plans = f.catalog(session)  # no USD rate stored
    f.topup(session, o, "1000000")
    before = counts(session)
    with pytest.raises(RateMissing):
        ordering.order(session, f.actor(owner, o), plans["std-usd"].id, 1, now=NOW)
    assert counts(session) == before


def test_pay_as_you_go_order_needs_the_deposit_costs_nothing_and_has_no_term(world):
    w = world
    before = counts(w.session)
    with pytest.raises(InsufficientFunds) as err:  # a prepaid organisation needs the deposit on its balance
        ordering.order(w.session, w.a_admin, w.plan("azure-d").id, 1, now=NOW)
    assert err.value.shortfall == Decimal("100000.00") and counts(w.session) == before
    w.topup("100000")
    result = ordering.order(w.session, w.a_admin, w.plan("azure-d").id, 1, now=NOW)
    assert w.balance() == Decimal("100000.00")
    sub = w.sub(result.subscription_id)
    assert (sub.status, sub.term_end, result.charged) == ("active", None, Decimal("0.00"))
    assert entries(w, sub.id) == [] and batches(w, sub.id) == []
    with pytest.raises(Conflict):
        licence_count.change_quantity(w.session, w.a_owner, sub.id, 2, now=NOW)


def test_order_with_too_little_balance_tells_the_shortfall_and_changes_nothing(world):
    w = world
    w.topup("50000")
    before = counts(w.session)
    with pytest.raises(InsufficientFunds) as err:
        ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 3, now=NOW)
    assert err.value.shortfall == Decimal("40000.00") and err.value.key == "error.insufficient_funds"
    assert counts(w.session) == before
    assert ordering.quote_order(w.session, w.a_owner, w.plan("basic-m").id, 3, now=NOW).shortfall == Decimal("40000.00")


def test_postpaid_organisation_orders_up_to_its_credit_limit(session):
    w = make_world(session)
    w.org.billing_mode, w.org.credit_limit = "postpaid", Decimal("100000")
    session.add(w.org)
    session.commit()
    buy(w, "basic-m", 3)  # 90 000 of 100 000 credit
    assert w.balance() == Decimal("-90000.00")
    before = counts(session)
    with pytest.raises(InsufficientFunds) as err:
        buy(w, "basic-m", 1)
    assert err.value.shortfall == Decimal("20000.00")
    assert counts(session) == before


def test_an_order_confirmed_twice_from_one_preview_charges_once(world):
    w = world
    w.topup("100000")
    q = ordering.quote_order(w.session, w.a_owner, w.plan("basic-m").id, 1, now=NOW)
    first = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 1, quote_id=q.quote_id,
                           amount=str(q.amount_due), now=NOW)
    again = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 1, quote_id=q.quote_id,
                           amount=str(q.amount_due), now=NOW + H)
    assert again.already_done and again.subscription_id == first.subscription_id
    assert w.balance() == Decimal("70000.00")
    assert len(w.session.exec(select(Subscription)).all()) == 1


@pytest.mark.parametrize("quantity", [0, -1, "0", "-3", "1.5", "abc", "", None, 1.5, True, "301", 301, [2]])
def test_bad_order_quantity_is_a_clear_error_and_changes_nothing(world, quantity):
    w = world
    w.topup("100000000")
    before = counts(w.session)
    with pytest.raises(InvalidInput) as err:
        ordering.order(w.session, w.a_owner, w.plan("basic-m").id, quantity, now=NOW)
    assert err.value.key in {"error.quantity_min", "error.quantity_max", "error.not_integer"}
    assert counts(w.session) == before


@pytest.mark.parametrize("plan_id", [999999, "abc", None, -1, "1; drop table plan"])
def test_unknown_plan_is_not_found_and_changes_nothing(world, plan_id):
    w = world
    w.topup("1000000")
    before = counts(w.session)
    with pytest.raises(NotFound):
        ordering.order(w.session, w.a_owner, plan_id, 1, now=NOW)
    with pytest.raises(NotFound):
        ordering.quote_order(w.session, w.a_owner, plan_id, 1, now=NOW)
    assert counts(w.session) == before


def test_withdrawn_plan_cannot_be_ordered(world):
    w = world
    w.topup("1000000")
    plan = w.plan("basic-y")
    plan.is_active = False
    w.session.add(plan)
    w.session.commit()
    with pytest.raises(NotFound):
        buy(w, "basic-y")


# --- trials ----------------------------------------------------------------------------------

def test_trial_is_free_limited_to_its_maximum_and_once_per_product(world):
    w = world
    before = counts(w.session)
    with pytest.raises(InvalidInput) as err:
        ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 26, now=NOW)
    assert err.value.key == "error.quantity_max"
    assert counts(w.session) == before
    result = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 25, trial_convert=True, now=NOW)
    sub = w.sub(result.subscription_id)
    assert (sub.status, sub.is_trial, sub.trial_convert, result.charged) == ("trial", True, True, Decimal("0.00"))
    assert sub.trial_ends_at == tashkent(2026, 4, 9, 0)  # 30 days
    assert w.balance() == Decimal("0.00")
    before = counts(w.session)
    with pytest.raises(Conflict) as err:
        ordering.order(w.session, w.a_admin, w.plan("basic-trial").id, 1, now=NOW + D)
    assert err.value.key == "error.trial_already_used"
    assert counts(w.session) == before
    # Cancelling the trial does not give a second one.
    cancellation.cancel(w.session, w.a_owner, sub.id, now=NOW + 2 * D)
    with pytest.raises(Conflict):
        ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 1, now=NOW + 3 * D)


def test_trial_of_another_organisation_does_not_count(world):
    w = world
    ordering.order(w.session, w.a_stranger, w.plan("basic-trial").id, 1, now=NOW)
    assert ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 1, now=NOW).status == "trial"


def test_trial_seats_change_for_free_within_the_trial_maximum(world):
    w = world
    sid = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 5, now=NOW).subscription_id
    result = licence_count.change_quantity(w.session, w.a_owner, sid, 25, now=NOW + D)
    assert (result.quantity, result.charged) == (25, Decimal("0.00"))
    with pytest.raises(InvalidInput):
        licence_count.change_quantity(w.session, w.a_owner, sid, 26, now=NOW + D)
    assert licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=NOW + 2 * D).quantity == 2
    assert w.balance() == Decimal("0.00")


# --- licence count: increases ------------------------------------------------------------------

def test_increase_mid_term_is_charged_pro_rata_by_local_days(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 3)
    at = tashkent(2026, 3, 25, 10)  # 16 of 31 days left (25 Mar .. 9 Apr)
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 5, now=at)
    assert (quote.remaining_days, quote.total_days) == (16, 31)
    assert quote.charge_now == Decimal("30967.74")  # 2 x 30 000 x 16/31
    result = licence_count.change_quantity(w.session, w.a_admin, sid, 5, now=at)
    assert result.charged == quote.charge_now and result.quantity == 5
    assert batches(w, sid) == [(3, "purchase"), (2, "increase")]
    assert entries(w, sid)[-1].meta["remaining_days"] == 16


def test_increase_on_the_first_day_of_the_term_costs_the_whole_term(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    assert licence_count.change_quantity(w.session, w.a_owner, sid, 3, now=tashkent(2026, 3, 10, 23, 59)).charged \
        == Decimal("60000.00")


def test_increase_on_the_last_day_of_the_term_costs_one_day(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    assert licence_count.change_quantity(w.session, w.a_owner, sid, 3, now=tashkent(2026, 4, 9, 23, 0)).charged \
        == Decimal("1935.48")  # 2 x 30 000 / 31


def test_increase_on_29_february(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1, at=tashkent(2028, 2, 10, 9))  # 10 Feb .. 9 Mar 2028: 29 days
    assert w.sub(sid).term_end == tashkent(2028, 3, 10, 0)
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 3, now=tashkent(2028, 2, 29, 15))
    assert (quote.remaining_days, quote.total_days) == (10, 29)
    assert quote.charge_now == Decimal("20689.66")  # 2 x 30 000 x 10/29


def test_term_from_31_january_ends_28_february_and_prorates_over_28_days(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1, at=tashkent(2026, 1, 31, 10))
    assert w.sub(sid).term_end == tashkent(2026, 2, 28, 0)
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 2, now=tashkent(2026, 2, 27, 20))
    assert (quote.remaining_days, quote.total_days, quote.charge_now) == (1, 28, Decimal("1071.43"))


def test_increase_on_a_yearly_plan_billed_monthly_costs_the_rest_of_the_month_only(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-ym", 2)  # first month 10 Mar .. 9 Apr (31 days)
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 4, now=tashkent(2026, 3, 25, 10))
    assert (quote.remaining_days, quote.total_days) == (16, 31)
    assert quote.charge_now == Decimal("30967.74")  # 2 x (360 000 / 12) x 16/31
    assert quote.recurring_price == Decimal("120000.00")  # 4 x 30 000 a month from now on
    assert licence_count.change_quantity(w.session, w.a_owner, sid, 4, now=tashkent(2026, 3, 25, 10)).charged \
        == quote.charge_now


def test_increase_without_funds_tells_the_shortfall_and_changes_nothing(world):
    w = world
    w.topup("40000")
    sid = buy(w, "basic-m", 1)  # 10 000 left
    before = counts(w.session)
    with pytest.raises(InsufficientFunds) as err:
        licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=NOW)
    assert err.value.shortfall == Decimal("20000.00")
    assert counts(w.session) == before


def test_an_increase_confirmed_twice_from_one_preview_charges_once(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    q = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 2, now=NOW)
    licence_count.change_quantity(w.session, w.a_owner, sid, 2, quote_id=q.quote_id, amount=str(q.amount_due), now=NOW)
    again = licence_count.change_quantity(w.session, w.a_owner, sid, 2, quote_id=q.quote_id, amount=str(q.amount_due),
                                          now=NOW + H)
    assert again.already_done and w.sub(sid).quantity == 2
    assert w.balance() == Decimal("1000000.00") - Decimal("60000.00")


@pytest.mark.parametrize("quantity", [0, -2, "1.5", "abc", 1.5, None, 301, "9999999999999"])
def test_bad_licence_count_is_a_clear_error_and_changes_nothing(world, quantity):
    w = world
    w.topup("100000000")
    sid = buy(w, "basic-m", 2)
    before = counts(w.session)
    with pytest.raises(InvalidInput):
        licence_count.change_quantity(w.session, w.a_owner, sid, quantity, now=NOW + D)
    with pytest.raises(InvalidInput):
        licence_count.quote_quantity_change(w.session, w.a_owner, sid, quantity, now=NOW + D)
    assert counts(w.session) == before


def test_unchanged_count_is_refused(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 2)
    with pytest.raises(InvalidInput) as err:
        licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=NOW)
    assert err.value.key == "error.quantity_unchanged"


# --- licence count: decreases and the cancellation window ------------------------------------

def test_decrease_inside_the_168_hour_window_refunds_at_once(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 5)
    at = NOW + 3 * D  # 13 Mar: 28 of 31 days left, today used (paid): 27 refunded
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 2, now=at)
    assert (quote.removed_now, quote.quantity_now, quote.scheduled_quantity) == (3, 2, None)
    assert quote.refund_now == Decimal("78387.10")  # 3 x 30 000 x 27/31
    result = licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=at)
    assert (result.refunded, result.quantity, result.scheduled_change_id) == (Decimal("78387.10"), 2, None)
    assert batches(w, sid) == [(2, "purchase")]
    assert entries(w, sid)[-1].kind == "refund" and entries(w, sid)[-1].amount == Decimal("78387.10")
    assert w.balance() == Decimal("1000000") - Decimal("150000") + Decimal("78387.10")


def test_decrease_outside_the_window_waits_for_the_renewal(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 5)
    at = NOW + 168 * H  # the window is half-open: at 168 h it has closed
    result = licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=at)
    assert (result.refunded, result.quantity) == (Decimal("0.00"), 5)
    [change] = pending(w, sid)
    assert (change.kind, change.new_quantity, change.effective_at) == ("quantity", 2, tashkent(2026, 4, 10, 0))
    assert w.balance() == Decimal("850000.00")
    detail = listing.get_subscription(w.session, w.a_finance, sid, now=at)
    assert detail["scheduled_changes"][0]["new_quantity"] == 2 and detail["refundable_now"] == 0
    renewals.renew_due(w.session, tashkent(2026, 4, 10, 0))
    sub = w.sub(sid)
    assert sub.quantity == 2 and entries(w, sid)[-1].amount == Decimal("-60000.00")


def test_one_minute_before_the_window_closes_the_seats_are_still_refundable(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 2)
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 1, now=NOW + 168 * H - timedelta(minutes=1))
    assert quote.removed_now == 1 and quote.refund_now > 0
    detail = listing.get_subscription(w.session, w.a_owner, sid, now=NOW + 167 * H)
    assert detail["batches"][0]["window_seconds_left"] == 3600


def test_decrease_removes_recent_seats_at_once_and_schedules_the_rest(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 5)
    licence_count.change_quantity(w.session, w.a_owner, sid, 7, now=NOW + 8 * D)  # 2 seats with a fresh window
    result = licence_count.change_quantity(w.session, w.a_owner, sid, 3, now=NOW + 9 * D)
    assert result.quantity == 5 and result.refunded > 0
    assert [c.new_quantity for c in pending(w, sid)] == [3]
    assert batches(w, sid) == [(5, "purchase"), (0, "increase")]


def test_new_quantity_change_replaces_the_scheduled_one(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 5)
    licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=NOW + 8 * D)
    licence_count.change_quantity(w.session, w.a_owner, sid, 4, now=NOW + 9 * D)
    assert [c.new_quantity for c in pending(w, sid)] == [4]
    licence_count.change_quantity(w.session, w.a_owner, sid, 6, now=NOW + 10 * D)  # an increase drops it
    assert pending(w, sid) == []


def test_decrease_on_a_yearly_plan_billed_monthly_refunds_the_rest_of_the_month(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-ym", 4)
    result = licence_count.change_quantity(w.session, w.a_owner, sid, 1, now=NOW + 3 * D)
    assert result.refunded == Decimal("78387.10")  # 3 x 30 000 x 27/31 (today used, so paid)


# --- plan changes ----------------------------------------------------------------------------

def test_upgrade_applies_at_once_for_the_pro_rata_difference(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 2)
    at = tashkent(2026, 3, 25, 10)  # 16/31 left
    quote = plan_change.quote_plan_change(w.session, w.a_owner, sid, "std-m", now=at)
    assert (quote.direction, quote.immediate) == ("upgrade", True)
    # (90 000 - 30 000) x 2 seats x 16/31, rounded once (one entry for the difference)
    assert quote.charge_now == Decimal("61935.48")
    result = plan_change.change_plan(w.session, w.a_owner, sid, "std-m", quote_id=quote.quote_id,
                                     amount=str(quote.amount_due), now=at)
    assert result.charged == Decimal("61935.48")
    sub = w.sub(sid)
    assert sub.plan_id == w.plan("std-m").id and sub.term_end == tashkent(2026, 4, 10, 0)
    assert w.balance() == Decimal("1000000") - Decimal("60000") - Decimal("61935.48")


def test_downgrade_waits_for_the_renewal(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "std-m", 2)
    result = plan_change.change_plan(w.session, w.a_owner, sid, "basic-m", now=NOW + 2 * D)
    assert result.scheduled_change_id and result.charged == 0
    assert w.sub(sid).plan_id == w.plan("std-m").id
    renewals.renew_due(w.session, tashkent(2026, 4, 10, 0))
    assert w.sub(sid).plan_id == w.plan("basic-m").id
    assert entries(w, sid)[-1].amount == Decimal("-60000.00")  # renewed at the cheaper plan


def test_a_change_of_term_waits_for_the_renewal_and_starts_no_term_today(world):
    w = world
    w.topup("10000000")
    plan = w.plan("basic-m")
    plan.allowed_changes = ["std-m", "basic-y"]
    w.session.add(plan)
    w.session.commit()
    sid = buy(w, "basic-m", 1)
    at = tashkent(2026, 3, 25, 10)
    quote = plan_change.quote_plan_change(w.session, w.a_owner, sid, "basic-y", now=at)
    assert (quote.direction, quote.immediate, quote.effective_date) == ("switch", False, date(2026, 4, 10))
    result = plan_change.change_plan(w.session, w.a_owner, sid, "basic-y", now=at)
    sub = w.sub(sid)
    assert result.charged == 0 and result.refunded == 0 and result.scheduled_change_id
    assert sub.plan_id == plan.id and sub.term_end == tashkent(2026, 4, 10, 0)
    renewals.renew_due(w.session, tashkent(2026, 4, 10, 0))
    sub = w.sub(sid)
    assert sub.plan_id == w.plan("basic-y").id and sub.term_end == tashkent(2027, 4, 10, 0)
    assert entries(w, sid)[-1].amount == Decimal("-360000.00")  # the yearly term, charged at the renewal


@pytest.mark.parametrize("code,error,key", [
    ("basic-y", Conflict, "error.plan_change_not_allowed"),
    ("no-such-plan", NotFound, "error.plan_not_found"),
    ("basic-m", InvalidInput, "error.plan_change_same"),
    (None, NotFound, "error.plan_not_found"),
])
def test_plan_change_outside_the_allowed_list_is_refused(world, code, error, key):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 2)
    before = counts(w.session)
    with pytest.raises(error) as err:
        plan_change.change_plan(w.session, w.a_owner, sid, code, now=NOW)
    assert err.value.key == key
    assert counts(w.session) == before


def test_upgrade_without_funds_changes_nothing(world):
    w = world
    w.topup("60000")
    sid = buy(w, "basic-m", 2)
    before = counts(w.session)
    with pytest.raises(InsufficientFunds):
        plan_change.change_plan(w.session, w.a_owner, sid, "std-m", now=NOW)
    assert counts(w.session) == before


def test_trial_cannot_change_plan(world):
    w = world
    sid = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 1, now=NOW).subscription_id
    with pytest.raises(Conflict):
        plan_change.change_plan(w.session, w.a_owner, sid, "basic-m", now=NOW)


def test_detail_lists_the_allowed_plans_with_their_direction(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "std-m", 1)
    detail = listing.get_subscription(w.session, w.a_owner, sid, now=NOW)
    assert [(o["code"], o["direction"]) for o in detail["plan_options"]] == [("basic-m", "downgrade")]


# --- suspension ------------------------------------------------------------------------------

def test_suspend_only_where_the_plan_allows(world):
    w = world
    w.topup("10000000")
    yearly = buy(w, "basic-y", 1)
    with pytest.raises(Conflict) as err:
        lifecycle.suspend(w.session, w.a_owner, yearly, now=NOW)
    assert err.value.key == "error.not_suspendable"
    monthly = buy(w, "basic-m", 1)
    assert lifecycle.suspend(w.session, w.a_owner, monthly, now=NOW + D).status == "suspended"
    with pytest.raises(Conflict):
        lifecycle.suspend(w.session, w.a_owner, monthly, now=NOW + D)
    with pytest.raises(Conflict):
        licence_count.change_quantity(w.session, w.a_owner, monthly, 3, now=NOW + D)
    resumed = lifecycle.resume(w.session, w.a_owner, monthly, now=NOW + 2 * D)
    assert (resumed.status, resumed.charged) == ("active", Decimal("0.00"))  # the term was paid


def test_resume_after_the_term_ended_starts_a_new_term_and_needs_funds(world):
    w = world
    w.topup("30000")
    sid = buy(w, "basic-m", 1)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + D)
    renewals.renew_due(w.session, tashkent(2026, 4, 12))  # suspended: not charged
    assert w.balance() == Decimal("0.00") and w.sub(sid).status == "suspended"
    before = counts(w.session)
    with pytest.raises(InsufficientFunds):
        lifecycle.resume(w.session, w.a_owner, sid, now=tashkent(2026, 4, 20, 10))
    assert counts(w.session) == before
    w.topup("30000")
    result = lifecycle.resume(w.session, w.a_owner, sid, now=tashkent(2026, 4, 20, 10))
    sub = w.sub(sid)
    assert result.charged == Decimal("30000.00")
    assert (sub.status, sub.term_start, sub.term_end) == ("active", tashkent(2026, 4, 20, 0), tashkent(2026, 5, 20, 0))


# --- cancellation ----------------------------------------------------------------------------

def test_cancel_inside_the_window_ends_at_once_with_a_pro_rata_refund(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 2)
    quote = cancellation.quote_cancel(w.session, w.a_owner, sid, now=NOW + 2 * D)
    # 2 x 30 000 x 28/31: 29 days left, today used (paid)
    assert quote.immediate and quote.refund_now == Decimal("54193.55")
    result = cancellation.cancel(w.session, w.a_owner, sid, now=NOW + 2 * D)
    assert (result.status, result.refunded) == ("cancelled", Decimal("54193.55"))
    assert batches(w, sid) == [(0, "purchase")]
    with pytest.raises(Conflict):
        cancellation.cancel(w.session, w.a_owner, sid, now=NOW + 3 * D)
    assert w.balance() == Decimal("1000000") - Decimal("60000") + Decimal("54193.55")


def test_cancel_outside_the_window_ends_the_subscription_at_the_term_end(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 2)
    result = cancellation.cancel(w.session, w.a_owner, sid, now=NOW + 8 * D)
    assert result.status == "active" and result.effective_at == tashkent(2026, 4, 10, 0)
    assert w.sub(sid).cancel_at_term_end
    # Withdrawn, then cancelled again.
    cancellation.cancel_scheduled_change(w.session, w.a_owner, result.scheduled_change_id, now=NOW + 9 * D)
    assert not w.sub(sid).cancel_at_term_end
    with pytest.raises(Conflict):
        cancellation.cancel_scheduled_change(w.session, w.a_owner, result.scheduled_change_id, now=NOW + 9 * D)
    cancellation.cancel(w.session, w.a_owner, sid, now=NOW + 10 * D)
    balance = w.balance()
    renewals.renew_due(w.session, tashkent(2026, 4, 10, 0))
    sub = w.sub(sid)
    assert sub.status == "cancelled" and w.balance() == balance


def test_foreign_scheduled_change_is_not_found(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 2)
    change_id = cancellation.cancel(w.session, w.a_owner, sid, now=NOW + 8 * D).scheduled_change_id
    for bad in (change_id, "abc", None, 10**9, 10**13):
        with pytest.raises(NotFound):
            cancellation.cancel_scheduled_change(w.session, w.a_stranger, bad, now=NOW + 9 * D)
    assert w.sub(sid).cancel_at_term_end


# --- reading ---------------------------------------------------------------------------------

def test_list_searches_filters_sorts_and_pages_only_the_own_subscriptions(world):
    w = world
    w.topup("100000000")
    w.topup("100000000", org=w.other_org)
    ids = [buy(w, "basic-m", q) for q in (1, 2, 3)]
    std = buy(w, "std-m", 4)
    ordering.order(w.session, w.a_stranger, w.plan("basic-m").id, 9, now=NOW)
    sub = w.session.get(Subscription, ids[0])
    sub.name = "Почта для отдела продаж"
    w.session.add(sub)
    w.session.commit()
    rows, total = listing.list_subscriptions(w.session, w.a_finance)
    assert total == 4 and {r["id"] for r in rows} == set(ids) | {std}
    rows, total = listing.list_subscriptions(w.session, w.a_owner, search="почта")
    assert [r["id"] for r in rows] == [ids[0]] and total == 1
    rows, total = listing.list_subscriptions(w.session, w.a_owner, search="standard")
    assert [r["id"] for r in rows] == [std]
    rows, total = listing.list_subscriptions(w.session, w.a_owner, sort="quantity", descending=True, limit=2)
    assert [r["quantity"] for r in rows] == [4, 3] and total == 4
    rows, _ = listing.list_subscriptions(w.session, w.a_owner, sort="quantity", descending=True, offset=2, limit=2)
    assert [r["quantity"] for r in rows] == [2, 1]
    cancellation.cancel(w.session, w.a_owner, ids[1], now=NOW + D)
    assert listing.list_subscriptions(w.session, w.a_owner, status="cancelled")[1] == 1
    assert listing.list_subscriptions(w.session, w.a_owner, status="current")[1] == 3
    assert listing.list_subscriptions(w.session, w.a_owner, vendor="ms")[1] == 4
    assert listing.list_subscriptions(w.session, w.a_owner, vendor="nobody")[1] == 0
    assert listing.list_subscriptions(w.session, w.a_owner, search="100%_")[1] == 0


@pytest.mark.parametrize("kw", [{"sort": "password_hash"}, {"status": "weird"}, {"limit": 0}, {"limit": 1000},
                                {"offset": -1}, {"limit": "abc"}, {"search": {"$ne": 1}}, {"descending": "yes"}])
def test_list_refuses_bad_parameters(world, kw):
    with pytest.raises(InvalidInput):
        listing.list_subscriptions(world.session, world.a_owner, **kw)


def test_foreign_or_missing_subscription_is_not_found_everywhere(world):
    w = world
    w.topup("1000000", org=w.other_org)
    foreign = ordering.order(w.session, w.a_stranger, w.plan("basic-m").id, 1, now=NOW).subscription_id
    before = counts(w.session)
    for sid in (foreign, 987654, "abc", None, -5, True, 2**40):
        with pytest.raises(NotFound) as err:
            listing.get_subscription(w.session, w.a_owner, sid, now=NOW)
        assert err.value.key == "error.subscription_not_found"
        for call in (lambda: licence_count.change_quantity(w.session, w.a_owner, sid, 2, now=NOW),
                     lambda: cancellation.cancel(w.session, w.a_owner, sid, now=NOW),
                     lambda: lifecycle.set_auto_renew(w.session, w.a_owner, sid, False, now=NOW),
                     lambda: listing.history(w.session, w.a_owner, sid)):
            with pytest.raises(NotFound):
                call()
    assert counts(w.session) == before


def test_history_shows_the_subscriptions_audit_events(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    lifecycle.set_auto_renew(w.session, w.a_admin, sid, False, now=NOW)
    events = listing.history(w.session, w.a_finance, sid)
    assert [e["action"] for e in events] == ["subscription.auto_renew", "subscription.ordered"]
    assert events[0]["user"] == "Анна Админ"


def test_auto_renew_takes_only_a_boolean(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    for bad in ("false", 0, None, "yes"):
        with pytest.raises(InvalidInput):
            lifecycle.set_auto_renew(w.session, w.a_owner, sid, bad, now=NOW)
    assert w.sub(sid).auto_renew is True


# --- the shortfall path ----------------------------------------------------------------------

def test_waiting_order_is_carried_out_once_when_its_invoice_is_paid(world):
    w = world
    w.topup("10000")
    with pytest.raises(InsufficientFunds) as err:
        ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 2, now=NOW)
    action = pending_actions.pending_action_for_order(w.a_owner, w.plan("basic-m").id, 2)
    assert action["type"] == "order" and action["org_id"] == w.org.id and len(action["operation_id"]) == 32
    w.topup(str(err.value.shortfall))
    first = pending_actions.complete_pending_action(w.session, dict(action), NOW + H)
    again = pending_actions.complete_pending_action(w.session, dict(action), NOW + 2 * H)
    assert again.already_done and again.subscription_id == first.subscription_id
    assert w.balance() == Decimal("0.00") and w.sub(first.subscription_id).quantity == 2


def test_waiting_increase_is_carried_out_once_and_never_shrinks_a_subscription(world):
    w = world
    w.topup("30000")
    sid = buy(w, "basic-m", 1)
    action = pending_actions.pending_action_for_quantity(w.a_owner, sid, 3)
    w.topup("60000")
    assert pending_actions.complete_pending_action(w.session, dict(action), NOW).quantity == 3
    assert pending_actions.complete_pending_action(w.session, dict(action), NOW).already_done
    assert w.balance() == Decimal("0.00")
    w.topup("90000")
    licence_count.change_quantity(w.session, w.a_owner, sid, 6, now=NOW)
    stale = pending_actions.pending_action_for_quantity(w.a_owner, sid, 4)
    assert pending_actions.complete_pending_action(w.session, stale, NOW).already_done and w.sub(sid).quantity == 6


def test_waiting_action_still_short_of_funds_changes_nothing(world):
    w = world
    action = pending_actions.pending_action_for_order(w.a_owner, w.plan("basic-m").id, 2)
    before = counts(w.session)
    with pytest.raises(InsufficientFunds):
        pending_actions.complete_pending_action(w.session, action, NOW)
    for bad in (None, {}, {"type": "drop"}, {"type": "order"}, {"type": "order", "org_id": "x"}):
        with pytest.raises(InvalidInput):
            pending_actions.complete_pending_action(w.session, bad, NOW)
    assert counts(w.session) == before


def test_waiting_action_of_a_user_who_left_runs_as_the_system(world):
    w = world
    from noventiq_panel.models import Membership

    action = pending_actions.pending_action_for_order(w.a_admin, w.plan("basic-m").id, 1)
    m = w.session.exec(select(Membership).where(Membership.user_id == w.admin.id)).one()
    m.is_active = False
    w.session.add(m)
    w.session.commit()
    w.topup("30000")
    result = pending_actions.complete_pending_action(w.session, action, NOW)
    event = w.session.exec(select(AuditEvent).where(AuditEvent.subscription_id == result.subscription_id)).one()
    assert event.user_id is None


# --- concurrency -----------------------------------------------------------------------------

def _race(engine, jobs) -> list:
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(i, job):
        with Session(engine, expire_on_commit=False) as s:
            barrier.wait()
            try:
                results[i] = job(s)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_concurrent_increases_on_a_small_balance_do_not_overdraw(engine, session):
    w = make_world(session)
    w.topup("90000")
    a, b = buy(w, "basic-m", 1), buy(w, "basic-m", 1)  # 30 000 left: one more seat
    actor = w.a_owner
    results = _race(engine, [lambda s: licence_count.change_quantity(s, actor, a, 2, now=NOW),
                             lambda s: licence_count.change_quantity(s, actor, b, 2, now=NOW)])
    ok = [r for r in results if isinstance(r, quotes.Outcome)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(ok) == 1 and len(refused) == 1, results
    assert w.balance() == Decimal("0.00")
    assert sorted([w.sub(a).quantity, w.sub(b).quantity]) == [1, 2]


def test_two_concurrent_identical_increases_charge_once(engine, session):
    w = make_world(session)
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    actor = w.a_owner
    results = _race(engine, [lambda s: licence_count.change_quantity(s, actor, sid, 2, now=NOW),
                             lambda s: licence_count.change_quantity(s, actor, sid, 2, now=NOW)])
    assert sum(isinstance(r, quotes.Outcome) for r in results) == 1, results
    assert w.sub(sid).quantity == 2 and w.balance() == Decimal("940000.00")


def test_every_error_key_of_these_services_has_a_message_in_both_languages():
    import re
    from pathlib import Path

    from noventiq_panel import i18n

    i18n.reload()
    services = Path(renewals.__file__).parents[1]
    keys = set()
    for path in [*sorted((services / "subscriptions").glob("*.py")), services / "usage" / "budgets.py",
                 services / "catalog" / "catalog.py", services / "core" / "proration.py", services / "core" / "money.py"]:
        keys |= set(re.findall(r'key="(error\.[a-z_.]+)"', path.read_text(encoding="utf-8")))
    assert len(keys) > 30
    for locale in ("ru", "en"):
        assert sorted(k for k in keys if not i18n.has(k, locale)) == [], locale


def test_sorting_by_name_uses_the_name_shown(world):
    w = world
    w.topup("10000000")
    a, b = buy(w, "basic-m", 1), buy(w, "std-m", 1)  # "Microsoft 365 Business Basic" / "... Standard"
    sub = w.session.get(Subscription, a)
    sub.name = "Zeta archive"  # shown instead of the product name: now it sorts last
    w.session.add(sub)
    w.session.commit()
    rows, _ = listing.list_subscriptions(w.session, w.a_owner, sort="name")
    assert [r["id"] for r in rows] == [b, a]
    rows, _ = listing.list_subscriptions(w.session, w.a_owner, sort="name", descending=True)
    assert [r["id"] for r in rows] == [a, b]
