"""A vendor without a connector (the provisioning queue): what gives money back waits for the
vendor. A decrease of seats inside their window and a cancellation with a refund change nothing when
asked; completing the task takes the seats back and refunds the rest of the period from that day;
rejecting it changes nothing; meanwhile the subscription takes no other change."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from noventiq_panel.models import LedgerEntry, LicenceBatch
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.subscriptions import cancellation, licence_count, lifecycle, plan_change, provisioning
from noventiq_panel.services.subscriptions.context import Ctx, current_period, refund_terms
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core.authz import Access

from tests.services.subs_world import NOW, World, make_world, world  # noqa: F401 (fixture)
from tests.services.subscriptions.test_provisioning import available, cancel, charges, mails, tasks
from tests.services.subscriptions.test_subscriptions import _race, buy

H = timedelta(hours=1)
D = timedelta(days=1)


pytestmark = pytest.mark.usefixtures("manual_vendors")  # every vendor without an API: the queue


def active(w: World, seats: int) -> int:
    """A manual vendor's monthly subscription of ``seats``, activated an hour after ``NOW``."""
    w.topup("1000000")
    sid = buy(w, "basic-m", seats)
    [order] = tasks(w, sid)
    provisioning.complete(w.session, order.id, vendor_ref="KAS-1", operator="Ivan", now=NOW + H)
    return sid


def decrease(w: World, sid: int, quantity: int, at):
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, quantity, now=at)
    outcome = licence_count.change_quantity(w.session, w.a_owner, sid, quantity, quote_id=quote.quote_id,
                                            amount=quote.amount_due, now=at)
    return quote, outcome


def refunds(w: World, sid: int) -> list[LedgerEntry]:
    return [e for e in charges(w, sid) if e.kind == "refund"]


def held(w: World, sid: int) -> int:
    w.session.rollback()
    return sum(b.quantity for b in w.session.exec(select(LicenceBatch).where(LicenceBatch.subscription_id == sid)))


def expected_refund(w: World, sid: int, seats: int, at) -> Decimal:
    """What refunding ``seats`` at ``at`` gives back, by the one rule (context.refund_terms)."""
    w.session.rollback()
    sub = w.sub(sid)
    info = catalog.get_plan(w.session, sub.plan_id, active_only=False)
    ctx = Ctx(Access(w.a_owner, "owner"), w.org, sub, info.plan, info.product, info.vendor, at)
    amount = refund_terms(w.session, ctx, seats, current_period(sub, info.plan, w.org, at))[2]
    w.session.rollback()
    return amount


def test_a_decrease_in_the_window_waits_for_the_vendor_then_takes_the_seats_back_and_refunds(world):
    w = world
    sid = active(w, 3)
    balance = w.balance()
    quote, outcome = decrease(w, sid, 1, NOW + 2 * H)
    assert quote.vendor_confirms and quote.refund_now > 0 and quote.removed_now == 2
    assert outcome.at_vendor and outcome.refunded == 0 and outcome.quantity == 3
    # nothing changed: the customer keeps the seats until the vendor takes them back
    assert w.sub(sid).quantity == 3 and held(w, sid) == 3 and refunds(w, sid) == [] and w.balance() == balance
    task = tasks(w, sid)[-1]
    assert (task.action, task.status, task.params) == (
        "quantity", "open", {"quantity": 1, "from_quantity": 3, "seats": 2, "refund": True})
    # meanwhile no other change of seats, plan or status
    for attempt in (lambda: decrease(w, sid, 2, NOW + 3 * H),
                    lambda: cancel(w.session, w.a_owner, sid, NOW + 3 * H),
                    lambda: plan_change.quote_plan_change(w.session, w.a_owner, sid, "std-m", now=NOW + 3 * H)):
        with pytest.raises(Conflict) as info:
            attempt()
        assert info.value.key == "error.provisioning.waiting"
        w.session.rollback()
    # the vendor confirms four days later: the seats go now, refunded from that day
    done = NOW + 4 * D
    due = expected_refund(w, sid, 2, done)
    provisioning.complete(w.session, task.id, operator="Olga", now=done)
    [refund] = refunds(w, sid)
    assert refund.amount == due > 0 and refund.idempotency_key == f"provisioning:{task.id}:refund"
    assert due < quote.refund_now  # the four days the seats were the customer's are paid
    assert w.sub(sid).quantity == 1 and held(w, sid) == 1 and w.balance() == balance + due
    told = [m for m in mails(w, "provisioning_done") if "refunded to your balance" in m.body_text
            or "возвращено на баланс" in m.body_text or "balansingizga qaytarildi" in m.body_text]
    assert {m.to_email for m in told} == {w.owner.email, w.admin.email}
    # a second completion changes nothing
    with pytest.raises(Conflict):
        provisioning.complete(w.session, task.id, operator="Olga", now=done + H)
    assert len(refunds(w, sid)) == 1 and w.balance() == balance + due
    decrease(w, sid, 2, done + H)  # and the subscription takes changes again (an increase)
    assert w.sub(sid).quantity == 2


def test_a_decrease_the_vendor_refused_changes_nothing(world):
    w = world
    sid = active(w, 3)
    balance = w.balance()
    decrease(w, sid, 1, NOW + 2 * H)
    task = tasks(w, sid)[-1]
    provisioning.reject(w.session, task.id, reason="Seats in use at the vendor", operator="Olga", now=NOW + 3 * H)
    assert w.sub(sid).quantity == 3 and held(w, sid) == 3 and refunds(w, sid) == [] and w.balance() == balance
    assert provisioning.last_rejection(w.session, sid)["reason"] == "Seats in use at the vendor"
    _quote, again = decrease(w, sid, 2, NOW + 4 * H)  # the customer may ask again
    assert again.at_vendor


def test_the_vendor_confirming_after_the_window_closed_still_refunds_what_was_asked_inside_it(world):
    w = world
    sid = active(w, 2)
    decrease(w, sid, 1, NOW + 100 * H)  # inside the 168-hour window
    task = tasks(w, sid)[-1]
    done = NOW + 200 * H  # the window has closed since
    due = expected_refund(w, sid, 1, done)
    provisioning.complete(w.session, task.id, operator="Olga", now=done)
    assert [e.amount for e in refunds(w, sid)] == [due] and due > 0
    assert w.sub(sid).quantity == 1 and held(w, sid) == 1


def test_a_cancellation_with_a_refund_waits_for_the_vendor(world):
    w = world
    sid = active(w, 2)
    balance = w.balance()
    quote = cancellation.quote_cancel(w.session, w.a_owner, sid, now=NOW + 2 * H)
    assert quote.immediate and quote.vendor_confirms and quote.refund_now > 0
    outcome = cancel(w.session, w.a_owner, sid, NOW + 2 * H)
    assert outcome.at_vendor and outcome.refunded == 0
    assert w.sub(sid).status == "active" and held(w, sid) == 2 and w.balance() == balance
    task = tasks(w, sid)[-1]
    assert (task.action, task.params) == ("cancel", {"refund": True})
    done = NOW + 2 * D
    due = expected_refund(w, sid, 2, done)
    provisioning.complete(w.session, task.id, operator="Olga", now=done)
    sub = w.sub(sid)
    assert (sub.status, sub.cancelled_at, sub.auto_renew) == ("cancelled", done, False)
    assert [e.amount for e in refunds(w, sid)] == [due] and held(w, sid) == 0
    assert w.balance() == balance + due == available(w)


def test_a_cancellation_the_vendor_refused_leaves_the_subscription_running(world):
    w = world
    sid = active(w, 2)
    balance = w.balance()
    cancel(w.session, w.a_owner, sid, NOW + 2 * H)
    task = tasks(w, sid)[-1]
    provisioning.reject(w.session, task.id, reason="Contract term", operator="Olga", now=NOW + 3 * H)
    sub = w.sub(sid)
    assert sub.status == "active" and held(w, sid) == 2 and refunds(w, sid) == [] and w.balance() == balance


def test_a_confirmation_replayed_by_the_customer_asks_the_vendor_once(world):
    w = world
    sid = active(w, 3)
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 1, now=NOW + 2 * H)
    first = licence_count.change_quantity(w.session, w.a_owner, sid, 1, quote_id=quote.quote_id,
                                          amount=quote.amount_due, now=NOW + 2 * H)
    second = licence_count.change_quantity(w.session, w.a_owner, sid, 1, quote_id=quote.quote_id,
                                           amount=quote.amount_due, now=NOW + 2 * H + timedelta(seconds=1))
    assert first.at_vendor and second.at_vendor and second.already_done
    assert [t.action for t in tasks(w, sid)] == ["order", "quantity"]


def test_two_operators_confirming_one_decrease_at_once_refund_once(engine, session):
    w = make_world(session)
    sid = active(w, 3)
    decrease(w, sid, 1, NOW + 2 * H)
    tid = tasks(w, sid)[-1].id
    w.session.rollback()
    results = _race(engine, [
        lambda s: provisioning.complete(s, tid, operator="Ivan", now=NOW + 3 * H),
        lambda s: provisioning.complete(s, tid, operator="Olga", now=NOW + 3 * H)])
    assert sum(isinstance(r, provisioning.TaskView) for r in results) == 1, results
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
    assert len(refunds(w, sid)) == 1 and w.sub(sid).quantity == 1 and held(w, sid) == 1


def test_a_subscription_no_longer_active_is_refused_at_completion_and_nothing_moves(world):
    w = world
    sid = active(w, 2)
    cancel(w.session, w.a_owner, sid, NOW + 2 * H)
    task = tasks(w, sid)[-1]
    sub = w.sub(sid)
    sub.status = "suspended"  # suspended by support meanwhile
    w.session.add(sub)
    w.session.commit()
    balance = w.balance()
    with pytest.raises(Conflict) as info:
        provisioning.complete(w.session, task.id, operator="Olga", now=NOW + 3 * H)
    assert info.value.key == "error.provisioning.not_active"
    assert w.balance() == balance and tasks(w, sid)[-1].status == "open" and held(w, sid) == 2


def test_a_suspension_and_a_resumption_that_meet_in_the_queue_cancel_out(world):
    w = world
    sid = active(w, 2)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + 2 * H)
    lifecycle.resume(w.session, w.a_owner, sid, now=NOW + 3 * H)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + 4 * H)
    states = [(t.action, t.status, t.done_by) for t in tasks(w, sid)[1:]]
    # the first pause was undone before the operator acted: nothing to do for it at the vendor
    assert states == [("suspend", "cancelled", "superseded"), ("suspend", "open", "")]


def test_auto_renewal_is_told_to_a_connector_and_is_the_panels_own_for_a_manual_vendor(world):
    from noventiq_panel.services.vendors import connector as vendor_api
    from tests.doubles.instant_vendor import InstantVendor

    w = world
    sid = active(w, 1)
    lifecycle.set_auto_renew(w.session, w.a_owner, sid, False, now=NOW + 2 * H)
    assert [t.action for t in tasks(w, sid)] == ["order"]  # no task: the renewal job tells the vendor
    double = InstantVendor()
    vendor_api.register("*", double)
    lifecycle.set_auto_renew(w.session, w.a_owner, sid, True, now=NOW + 3 * H)
    assert ("auto_renew", "KAS-1", True) in double.calls


def test_a_deactivated_organisations_order_is_not_completed_and_nothing_is_charged(world):
    from noventiq_panel.models import Organisation

    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    [order] = tasks(w, sid)
    org = w.session.get(Organisation, w.org.id)
    org.is_active = False
    w.session.add(org)
    w.session.commit()
    with pytest.raises(Conflict) as info:
        provisioning.complete(w.session, order.id, vendor_ref="KAS-9", operator="Ivan", now=NOW + H)
    assert info.value.key == "error.provisioning.org_inactive"
    assert charges(w, sid) == [] and tasks(w, sid)[0].status == "open" and w.sub(sid).status == "pending"
    provisioning.reject(w.session, order.id, reason="Customer deactivated", operator="Ivan", now=NOW + 2 * H)
    assert charges(w, sid) == [] and w.sub(sid).status == "cancelled"


def test_the_subscription_page_offers_no_licence_change_while_a_decrease_waits(world):
    from noventiq_panel.services.subscriptions import listing

    w = world
    sid = active(w, 3)
    assert listing.get_subscription(w.session, w.a_owner, sid)["can_change_quantity"]
    decrease(w, sid, 1, NOW + 2 * H)
    view = listing.get_subscription(w.session, w.a_owner, sid)
    assert not view["can_change_quantity"] and view["at_vendor"][0]["params"]["refund"]
    provisioning.reject(w.session, tasks(w, sid)[-1].id, reason="No", operator="Olga", now=NOW + 3 * H)
    assert listing.get_subscription(w.session, w.a_owner, sid)["can_change_quantity"]
