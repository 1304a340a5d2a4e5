"""Seat spans: every change of a subscription's plan, seat count, status or term closes its open
span and opens one with the new state, whoever writes it (an operation through the ORM, the renewal
jobs through Core UPDATEs, a caller that forgets), and a refused operation leaves none.

Hazards: a change that writes no span (the seat-days check would value the old state), a span
opened for a change of nothing billable, two open spans of one subscription, a span from a
rolled-back operation, a renewal run that leaves the old term's span open.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from noventiq_panel.models import SeatSpan, Subscription
from noventiq_panel.services.core import clock
from noventiq_panel.services.core.errors import InsufficientFunds
from noventiq_panel.services.subscriptions import (
    cancellation,
    licence_count,
    lifecycle,
    ordering,
    renewals,
    spans,
)

from tests.services.subs_world import NOW, World, make_world, tashkent

H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def w(session) -> World:
    world = make_world(session)
    spans.stamp(session, NOW)
    return world


def history(w: World, sub_id: int) -> list[tuple]:
    w.session.rollback()
    return [(s.plan_id, s.quantity, s.status, s.start, s.end) for s in w.session.exec(
        select(SeatSpan).where(SeatSpan.subscription_id == sub_id).order_by(SeatSpan.start, SeatSpan.id)).all()]


def buy(w: World, code: str, qty: int, at=NOW) -> int:
    spans.stamp(w.session, at)
    return ordering.order(w.session, w.a_owner, w.plan(code).id, qty, now=at).subscription_id


def test_an_order_opens_one_span_in_its_final_state(w):
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 3)
    # the order flushes the subscription as pending first: that span lasted no time and is gone
    assert history(w, sub_id) == [(w.plan("basic-m").id, 3, "active", NOW, None)]


def test_a_seat_change_closes_the_span_and_opens_the_next(w):
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 3)
    later = NOW + 2 * H
    spans.stamp(w.session, later)
    licence_count.change_quantity(w.session, w.a_owner, sub_id, 5, now=later)
    plan = w.plan("basic-m").id
    assert history(w, sub_id) == [(plan, 3, "active", NOW, later), (plan, 5, "active", later, None)]


def test_a_change_of_nothing_billable_opens_no_span(w):
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 3)
    spans.stamp(w.session, NOW + H)
    lifecycle.set_auto_renew(w.session, w.a_owner, sub_id, False, now=NOW + H)
    sub = w.session.get(Subscription, sub_id)
    sub.quantity = 3  # set to what it is: no change
    sub.name = "renamed"
    w.session.add(sub)
    w.session.commit()
    assert len(history(w, sub_id)) == 1


def test_a_direct_orm_write_cannot_forget_its_span(w):
    """The listener, not the operations, writes spans: a module that changes a subscription
    through the ORM gets its span without calling anything."""
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 3)
    spans.stamp(w.session, NOW + 3 * H)
    sub = w.session.get(Subscription, sub_id)
    sub.status = "suspended"
    w.session.add(sub)
    w.session.commit()
    assert [h[2:] for h in history(w, sub_id)] == [("active", NOW, NOW + 3 * H), ("suspended", NOW + 3 * H, None)]


def test_a_refused_operation_leaves_no_span(w):
    w.topup("100000")
    sub_id = buy(w, "basic-m", 3)
    before = history(w, sub_id)
    spans.stamp(w.session, NOW + H)
    with pytest.raises(InsufficientFunds):
        licence_count.change_quantity(w.session, w.a_owner, sub_id, 300, now=NOW + H)
    assert history(w, sub_id) == before


def test_suspend_resume_and_cancel_are_spans_of_their_own(w):
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 2)
    for hours, op in ((1, lifecycle.suspend), (2, lifecycle.resume), (3, cancellation.cancel)):
        spans.stamp(w.session, NOW + hours * H)
        op(w.session, w.a_owner, sub_id, now=NOW + hours * H)
    assert [(h[2], h[3], h[4]) for h in history(w, sub_id)] == [
        ("active", NOW, NOW + H), ("suspended", NOW + H, NOW + 2 * H), ("active", NOW + 2 * H, NOW + 3 * H),
        ("cancelled", NOW + 3 * H, None)]


def test_a_renewal_by_the_job_opens_the_new_terms_span_at_the_runs_moment(w):
    """The jobs write subscriptions with Core UPDATEs: the chunk writes their spans, set-based."""
    w.topup("10000000")
    ids = [buy(w, "basic-m", q) for q in (1, 2, 3)]
    run = tashkent(2026, 4, 10, 0, 30)
    renewals.renew_due(w.session, now=run)
    plan = w.plan("basic-m").id
    for sub_id, q in zip(ids, (1, 2, 3)):
        assert history(w, sub_id) == [(plan, q, "active", NOW, run), (plan, q, "active", run, None)]


def test_an_expiry_by_the_job_closes_the_active_span(w):
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 1)
    spans.stamp(w.session, NOW + H)
    lifecycle.set_auto_renew(w.session, w.a_owner, sub_id, False, now=NOW + H)
    run = tashkent(2026, 4, 10, 0, 30)
    renewals.renew_due(w.session, now=run)
    assert [(h[2], h[3], h[4]) for h in history(w, sub_id)] == [("active", NOW, run), ("expired", run, None)]


def test_a_second_renewal_run_changes_no_span(w):
    w.topup("1000000")
    sub_id = buy(w, "basic-m", 1)
    run = tashkent(2026, 4, 10, 0, 30)
    renewals.renew_due(w.session, now=run)
    before = history(w, sub_id)
    renewals.renew_due(w.session, now=run + H)
    assert history(w, sub_id) == before


def test_split_is_set_based_and_keeps_one_open_span_per_subscription(w):
    """Bulk: 1 200 subscriptions (more than one statement's worth of ids) split at once."""
    org, plan = w.org, w.plan("basic-m")
    w.session.add_all([Subscription(org_id=org.id, plan_id=plan.id, status="active", quantity=1, term_start=NOW,
                                    term_end=NOW + 30 * D) for _ in range(1200)])
    w.session.commit()
    ids = [s.id for s in w.session.exec(select(Subscription)).all()]
    later = NOW + D
    states = [spans.State(i, plan.id, 2, "active") for i in ids]
    assert spans.split(w.session, states, later) == 1200
    w.session.commit()
    rows = w.session.exec(select(SeatSpan)).all()
    assert len([r for r in rows if r.end is None]) == 1200
    assert {(r.quantity, r.start) for r in rows if r.end is None} == {(2, later)}
    assert {(r.quantity, r.end) for r in rows if r.end is not None} == {(1, later)}


def test_without_a_stamp_spans_start_at_the_clock(session: Session):
    w = make_world(session)
    w.topup("1000000")
    sub_id = ordering.order(session, w.a_owner, w.plan("basic-m").id, 1).subscription_id
    [(_plan, _q, _status, start, end)] = history(w, sub_id)
    assert end is None and abs(start - clock.utcnow()) < timedelta(minutes=5)
