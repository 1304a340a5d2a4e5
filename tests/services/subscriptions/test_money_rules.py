"""Issue 13: no sequence of customer actions creates or loses money.

Regression tests for the plan-change cycle that created money (A -> B -> A on one day reused the
charge keys ``plan:<sub>:<code>:<day>``), for confirmations bound to their quote (a rate change, an
organisation switch in another tab, two confirmations at once), for the ledger's one-intent-per-key
rule, and for the new-commerce plan-change rules. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, Membership, Plan, Quote, Role
from noventiq_panel.services.core import ledger, rates
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, NotFound
from noventiq_panel.services.subscriptions import cancellation, confirmation, licence_count, ordering, plan_change

from tests import factories as f
from tests.concurrency import at_once
from tests.services.subs_world import NOW, counts, make_world, tashkent, world  # noqa: F401

H = timedelta(hours=1)
D = timedelta(days=1)


def confirm_order(w, code: str, seats: int, at):
    q = ordering.quote_order(w.session, w.a_owner, w.plan(code).id, seats, now=at)
    return ordering.order(w.session, w.a_owner, w.plan(code).id, seats, quote_id=q.quote_id,
                          amount=str(q.amount_due), now=at)


def confirm_plan(w, sid: int, code: str, at):
    q = plan_change.quote_plan_change(w.session, w.a_owner, sid, code, now=at)
    return plan_change.change_plan(w.session, w.a_owner, sid, code, quote_id=q.quote_id, amount=str(q.amount_due),
                                   now=at)


def confirm_cancel(w, sid: int, at):
    q = cancellation.quote_cancel(w.session, w.a_owner, sid, now=at)
    return cancellation.cancel(w.session, w.a_owner, sid, quote_id=q.quote_id, amount=str(q.amount_due), now=at)


def mutual_plans(w) -> tuple[Plan, Plan]:
    """A yearly plan paid upfront and the same plan billed monthly, each allowing the other."""
    upfront, monthly = w.plan("basic-y"), w.plan("basic-ym")
    upfront.allowed_changes, monthly.allowed_changes = ["basic-ym"], ["basic-y"]
    w.session.add_all([upfront, monthly])
    w.session.commit()
    return upfront, monthly


def spent(w) -> Decimal:
    w.session.rollback()
    total = Decimal("0.00")
    for e in w.session.exec(select(LedgerEntry).where(LedgerEntry.org_id == w.org.id)).all():
        if e.kind in ("charge", "refund"):
            total -= e.amount
    return total


def test_switching_a_to_b_to_a_on_one_day_and_cancelling_creates_no_money(world):
    w = world
    mutual_plans(w)
    w.topup("100000000")
    sid = confirm_order(w, "basic-y", 10, NOW).subscription_id
    paid = spent(w)
    assert paid == Decimal("3600000.00")
    for code in ("basic-ym", "basic-y", "basic-ym", "basic-y"):  # frequency changes wait for the renewal
        outcome = confirm_plan(w, sid, code, NOW + 2 * H)
        assert outcome.charged == 0 and outcome.refunded == 0
    assert w.sub(sid).plan_id == w.plan("basic-y").id and w.sub(sid).term_end == tashkent(2027, 3, 10, 0)
    cancelled = confirm_cancel(w, sid, NOW + 3 * H)
    assert cancelled.status == "cancelled"
    # the refund of the unused year never exceeds what the year was charged: nothing was created
    assert Decimal("0.00") <= spent(w) <= paid
    assert w.balance() == Decimal("100000000") - spent(w)


def test_equal_priced_plans_are_no_upgrade_in_either_direction(world):
    w = world
    a, b = mutual_plans(w)
    twin = Plan(code="basic-y2", product_id=a.product_id, name="Basic, year (twin)", term="year",
                billing_frequency="upfront", price=a.price, currency="UZS", allowed_changes=["basic-y"])
    a.allowed_changes = ["basic-ym", "basic-y2"]
    w.session.add_all([twin, a])
    w.session.commit()
    w.topup("100000000")
    sid = confirm_order(w, "basic-y", 2, NOW).subscription_id
    q = plan_change.quote_plan_change(w.session, w.a_owner, sid, "basic-y2", now=NOW + H)
    assert (q.direction, q.immediate, q.charge_now, q.refund_now) == ("same_price", False, 0, 0)
    assert q.effective_date == date(2027, 3, 10)


def test_an_upgrade_keeps_the_term_end_and_opens_no_new_cancellation_window(world):
    w = world
    w.topup("10000000")
    sid = confirm_order(w, "basic-m", 2, NOW).subscription_id
    later = NOW + 8 * D  # the seats' 168-hour window has closed
    up = confirm_plan(w, sid, "std-m", later)
    assert up.charged > 0 and w.sub(sid).term_end == tashkent(2026, 4, 10, 0)
    q = cancellation.quote_cancel(w.session, w.a_owner, sid, now=later + H)
    assert not q.immediate and q.refund_now == 0  # no fresh window: the cancellation waits for the term end


def test_a_confirmation_after_a_rate_change_is_refused_and_charges_nothing(world):
    w = world
    w.topup("10000000")
    plan = w.plan("std-usd")
    q = ordering.quote_order(w.session, w.a_owner, plan.id, 1, now=NOW)
    rates.store_rate(w.session, "USD", date(2026, 3, 10), Decimal("12500.00"), source="manual")
    w.session.commit()
    before = counts(w.session)
    with pytest.raises(Conflict) as err:
        ordering.order(w.session, w.a_owner, plan.id, 1, quote_id=q.quote_id, amount=str(q.amount_due), now=NOW + H)
    assert err.value.key == "error.price_changed"
    assert counts(w.session) == before
    fresh = ordering.quote_order(w.session, w.a_owner, plan.id, 1, now=NOW + H)
    assert fresh.amount_due == Decimal("156250.00") != q.amount_due  # 12.50 x 12 500


def test_a_confirmation_after_an_organisation_switch_in_another_tab_is_refused(world):
    w = world
    w.topup("10000000")
    w.topup("10000000", w.other_org)
    w.session.add(Membership(user_id=w.owner.id, org_id=w.other_org.id, role=Role.OWNER))
    w.session.commit()
    q = ordering.quote_order(w.session, w.a_owner, w.plan("basic-m").id, 1, now=NOW)
    in_other_org = Actor(user_id=w.owner.id, org_id=w.other_org.id)
    before = counts(w.session)
    with pytest.raises(Conflict) as err:
        ordering.order(w.session, in_other_org, w.plan("basic-m").id, 1, quote_id=q.quote_id,
                       amount=str(q.amount_due), now=NOW)
    assert err.value.key == "error.price_changed"
    assert counts(w.session) == before


@pytest.mark.parametrize("tamper", ["amount", "quantity", "expired", "other_user", "garbage"])
def test_a_confirmation_that_does_not_match_its_quote_changes_nothing(world, tamper):
    w = world
    w.topup("10000000")
    q = ordering.quote_order(w.session, w.a_owner, w.plan("basic-m").id, 2, now=NOW)
    kwargs = dict(quote_id=q.quote_id, amount=str(q.amount_due), now=NOW)
    actor, seats = w.a_owner, 2
    if tamper == "amount":
        kwargs["amount"] = str(q.amount_due - 1)
    elif tamper == "quantity":
        seats = 3
    elif tamper == "expired":
        kwargs["now"] = NOW + timedelta(minutes=confirmation.QUOTE_MINUTES + 1)
    elif tamper == "other_user":
        actor = w.a_admin
    else:
        kwargs["quote_id"] = "'; drop table quote; --"
    before = counts(w.session)
    with pytest.raises((Conflict, NotFound)):
        ordering.order(w.session, actor, w.plan("basic-m").id, seats, **kwargs)
    assert counts(w.session) == before


def test_a_read_only_preview_gets_no_quote_to_confirm(world):
    w = world
    q = ordering.quote_order(w.session, w.a_finance, w.plan("basic-m").id, 1, now=NOW)
    assert q.quote_id is None and q.amount_due == Decimal("30000.00")
    assert w.session.exec(select(Quote)).all() == []


def test_two_confirmations_of_one_quote_at_once_charge_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        w = make_world(s)
        w.topup("10000000")
        q = ordering.quote_order(s, w.a_owner, w.plan("basic-m").id, 3, now=NOW)
        plan_id, owner, org_id = w.plan("basic-m").id, w.a_owner, w.org.id

    def confirm():
        with Session(engine, expire_on_commit=False) as s2:
            return ordering.order(s2, owner, plan_id, 3, quote_id=q.quote_id, amount=str(q.amount_due), now=NOW)

    first, second = at_once(confirm, confirm)
    assert first.subscription_id == second.subscription_id
    assert sorted([first.already_done, second.already_done]) == [False, True]
    with Session(engine) as s:
        assert ledger.balance(s, org_id) == Decimal("10000000") - Decimal("90000.00")


def test_a_ledger_key_reused_for_another_amount_is_a_conflict_not_a_skipped_charge(world):
    w = world
    first = ledger.post(w.session, org_id=w.org.id, kind="charge", amount=Decimal("-100.00"), idempotency_key="k-1")
    assert ledger.post(w.session, org_id=w.org.id, kind="charge", amount=Decimal("-100.00"),
                       idempotency_key="k-1").id == first.id  # the same intent: the first entry
    for org_id, kind, amount in ((w.org.id, "charge", Decimal("-99.00")), (w.org.id, "refund", Decimal("-100.00")),
                                 (w.other_org.id, "charge", Decimal("-100.00"))):
        with pytest.raises(Conflict) as err:
            ledger.post(w.session, org_id=org_id, kind=kind, amount=amount, idempotency_key="k-1")
        assert err.value.key == "error.ledger_key_reused"
    rows = [ledger.entry_row(org_id=w.org.id, kind="charge", amount=Decimal("-5"), currency="UZS", idempotency_key="k-1")]
    with pytest.raises(Conflict):
        ledger.post_many(w.session, rows)


def test_picking_the_current_plan_again_withdraws_the_scheduled_change(world):
    w = world
    mutual_plans(w)
    w.topup("100000000")
    sid = confirm_order(w, "basic-y", 1, NOW).subscription_id
    scheduled = confirm_plan(w, sid, "basic-ym", NOW + H)
    assert scheduled.scheduled_change_id
    back = confirm_plan(w, sid, "basic-y", NOW + 2 * H)
    assert back.scheduled_change_id is None and back.charged == 0
    with pytest.raises(Exception):
        plan_change.quote_plan_change(w.session, w.a_owner, sid, "basic-y", now=NOW + 3 * H)  # nothing pending now
