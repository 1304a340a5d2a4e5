"""The provisioning queue (services/subscriptions/provisioning.py): a vendor without a connector.
An order reserves its price and waits; the operator completes it (charged once, then) or rejects
it (released); the customer may cancel it while it waits; changes become tasks; overdue tasks are
reported once a day. Also: two operators at once, forged ids, and a generated sequence of all of it
that must keep balance, reservations and charges in step."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, LicenceBatch, Notification, ProvisioningTask
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import Conflict, InsufficientFunds, InvalidInput, NotFound
from noventiq_panel.models import Organisation, Role
from tests import factories as f
from noventiq_panel.services.subscriptions import cancellation, credit_control, licence_count, ordering, provisioning, quotes, renewals
from noventiq_panel.services.usage import rating
from tests.services.usage_world import add_usage, payg_sub
from tests.conftest import _engine_for
from tests.services.subs_world import NOW, World, make_world, world  # noqa: F401 (fixture)
from tests.services.subscriptions.test_subscriptions import _race, buy

H = timedelta(hours=1)
GRACE = timedelta(hours=72)  # the default PANEL_CREDIT_GRACE_HOURS


pytestmark = pytest.mark.usefixtures("manual_vendors")  # every vendor without an API: the queue


def charges(w: World, sub_id: int) -> list[LedgerEntry]:
    w.session.rollback()
    return list(w.session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub_id)).all())


def tasks(w: World, sub_id: int) -> list[ProvisioningTask]:
    w.session.rollback()
    return list(w.session.exec(select(ProvisioningTask).where(ProvisioningTask.subscription_id == sub_id)
                               .order_by(ProvisioningTask.id)).all())


def cancel(session, actor, sid: int, at):
    quote = cancellation.quote_cancel(session, actor, sid, now=at)
    return cancellation.cancel(session, actor, sid, quote_id=quote.quote_id, amount=quote.amount_due, now=at)


def available(w: World) -> Decimal:
    w.session.rollback()
    return ledger.available(w.session, w.org)


def mails(w: World, kind: str) -> list[Notification]:
    w.session.rollback()
    return list(w.session.exec(select(Notification).where(Notification.kind == kind)).all())


def test_an_order_waits_with_its_price_reserved_and_is_charged_once_when_completed(world):
    w = world
    w.topup("100000")
    result = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 3, now=NOW)
    assert result.status == "pending" and result.charged == Decimal("0")
    sub = w.sub(result.subscription_id)
    assert sub.vendor_ref == "" and sub.activated_at is None
    [task] = tasks(w, sub.id)
    assert (task.action, task.status, task.reserved) == ("order", "open", Decimal("90000.00"))
    assert charges(w, sub.id) == [] and w.balance() == Decimal("100000.00")
    assert available(w) == Decimal("10000.00")
    assert [m.to_email for m in mails(w, "provisioning_requested")] == [w.owner.email]
    # the reserved money cannot pay for anything else
    with pytest.raises(InsufficientFunds):
        buy(w, "basic-m", 1)
    assert available(w) == Decimal("10000.00") and len(tasks(w, sub.id)) == 1

    later = NOW + 5 * H
    view = provisioning.complete(w.session, task.id, vendor_ref="KAS-123", operator="Ivan", now=later)
    assert view.status == "completed" and view.done_by == "Ivan" and view.vendor_ref == "KAS-123"
    sub = w.sub(sub.id)
    assert (sub.status, sub.vendor_ref, sub.term_start, sub.activated_at) == ("active", "KAS-123", later, later)
    [charge] = charges(w, sub.id)
    assert charge.amount == Decimal("-90000.00") and charge.idempotency_key == f"provisioning:{task.id}:charge"
    assert w.balance() == Decimal("10000.00") and available(w) == Decimal("10000.00")
    [batch] = w.session.exec(select(LicenceBatch).where(LicenceBatch.subscription_id == sub.id)).all()
    assert batch.quantity == 3 and batch.window_ends_at > later  # the window opens at activation
    assert {m.to_email for m in mails(w, "provisioning_done")} == {w.owner.email, w.admin.email}
    # a second completion (a retry, a second operator) changes nothing
    with pytest.raises(Conflict):
        provisioning.complete(w.session, task.id, vendor_ref="KAS-999", operator="Olga", now=later + H)
    assert len(charges(w, sub.id)) == 1 and w.sub(sub.id).vendor_ref == "KAS-123"
    assert len(mails(w, "provisioning_done")) == 2


def test_a_rejected_order_releases_its_reservation_and_tells_the_customer_why(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 2)
    [task] = tasks(w, sid)
    assert available(w) == Decimal("40000.00")
    provisioning.reject(w.session, task.id, reason="Licence not sold in Uzbekistan", operator="Ivan", now=NOW + H)
    sub = w.sub(sid)
    assert sub.status == "cancelled" and not sub.auto_renew and sub.next_billing_at is None
    assert charges(w, sid) == [] and w.balance() == available(w) == Decimal("100000.00")
    assert provisioning.last_rejection(w.session, sid)["reason"] == "Licence not sold in Uzbekistan"
    sent = mails(w, "provisioning_rejected")
    assert len(sent) == 2 and all("Licence not sold in Uzbekistan" in m.body_text for m in sent)
    with pytest.raises(Conflict):
        provisioning.complete(w.session, task.id, vendor_ref="X", operator="Olga")
    assert charges(w, sid) == []


def test_the_customer_cancels_an_order_that_still_waits(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    [task] = tasks(w, sid)
    cancel(w.session, w.a_owner, sid, NOW + H)
    [task] = tasks(w, sid)  # no second task: there is nothing at the vendor to cancel
    assert task.status == "cancelled" and w.sub(sid).status == "cancelled"
    assert charges(w, sid) == [] and available(w) == w.balance() == Decimal("100000.00")
    with pytest.raises(Conflict):
        provisioning.complete(w.session, task.id, vendor_ref="X", operator="Ivan")
    assert charges(w, sid) == []


def test_two_operators_completing_one_task_at_once_charge_once(engine, session):
    w = make_world(session)
    w.topup("100000")
    sid = buy(w, "basic-m", 2)
    [task] = tasks(w, sid)
    tid = task.id
    w.session.rollback()  # no transaction of ours in the way of the two below
    results = _race(engine, [
        lambda s: provisioning.complete(s, tid, vendor_ref="A-1", operator="Ivan", now=NOW + H),
        lambda s: provisioning.complete(s, tid, vendor_ref="B-2", operator="Olga", now=NOW + H)])
    done = [r for r in results if isinstance(r, provisioning.TaskView)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(done) == 1 and len(refused) == 1, results
    assert len(charges(w, sid)) == 1 and w.balance() == Decimal("40000.00")
    assert w.sub(sid).vendor_ref == done[0].vendor_ref


def test_completing_while_the_customer_cancels_never_charges_a_cancelled_subscription(engine, session):
    w = make_world(session)
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    [task] = tasks(w, sid)
    actor, tid = w.a_owner, task.id
    w.session.rollback()  # no transaction of ours in the way of the two below
    results = _race(engine, [
        lambda s: provisioning.complete(s, tid, vendor_ref="A-1", operator="Ivan", now=NOW + H),
        lambda s: cancel(s, actor, sid, NOW + H)])
    sub = w.sub(sid)
    if isinstance(results[0], provisioning.TaskView):
        # activated first: the customer's preview (nothing to refund) no longer holds and is refused,
        # or — previewed after the activation — the cancellation refunds in the window
        if isinstance(results[1], Conflict):
            assert sub.status == "active" and w.balance() == Decimal("70000.00")
        else:
            assert sub.status == "cancelled" and sum(e.amount for e in charges(w, sid)) == Decimal("0.00")
    else:
        assert isinstance(results[0], Conflict) and sub.status == "cancelled" and charges(w, sid) == []
    assert available(w) == w.balance()
    assert len([e for e in charges(w, sid) if e.kind == "charge"]) <= 1


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "1e3", str(10**30), "", None, "999999"])
def test_forged_or_missing_task_ids_are_not_found_and_change_nothing(world, raw):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    with pytest.raises(NotFound):
        provisioning.complete(w.session, raw, vendor_ref="X", operator="Ivan")
    with pytest.raises(NotFound):
        provisioning.reject(w.session, raw, reason="no", operator="Ivan")
    with pytest.raises(NotFound):
        provisioning.get_task(w.session, raw)
    assert [t.status for t in tasks(w, sid)] == ["open"] and charges(w, sid) == []


def test_bad_operator_input_is_refused_and_changes_nothing(world):
    w = world
    w.topup("100000")
    sid = buy(w, "basic-m", 1)
    [task] = tasks(w, sid)
    for kwargs in ({"vendor_ref": "", "operator": "Ivan"}, {"vendor_ref": "X", "operator": "  "},
                   {"vendor_ref": "X" * 256, "operator": "Ivan"}):
        with pytest.raises(InvalidInput):
            provisioning.complete(w.session, task.id, **kwargs)
    for kwargs in ({"reason": "", "operator": "Ivan"}, {"reason": "x" * 1001, "operator": "Ivan"},
                   {"reason": "ok", "operator": ""}):
        with pytest.raises(InvalidInput):
            provisioning.reject(w.session, task.id, **kwargs)
    with pytest.raises(InvalidInput):
        provisioning.list_tasks(w.session, status="weird")
    assert [t.status for t in tasks(w, sid)] == ["open"] and charges(w, sid) == []
    assert w.sub(sid).status == "pending"


def test_a_change_of_a_manual_subscription_is_a_task_with_what_to_do(world):
    w = world
    w.topup("1000000")
    sid = buy(w, "basic-m", 1)
    [order] = tasks(w, sid)
    provisioning.complete(w.session, order.id, vendor_ref="KAS-1", operator="Ivan", now=NOW + H)
    result = licence_count.change_quantity(w.session, w.a_owner, sid, 3, now=NOW + 2 * H)
    assert isinstance(result, quotes.Outcome) and w.sub(sid).quantity == 3
    change = tasks(w, sid)[-1]
    assert (change.action, change.status, change.params, change.reserved) == ("quantity", "open", {"quantity": 3},
                                                                              Decimal("0.00"))
    assert provisioning.open_tasks_of(w.session, sid)[0]["action"] == "quantity"
    view = provisioning.complete(w.session, change.id, operator="Olga", now=NOW + 3 * H)
    assert view.status == "completed" and view.vendor_ref == "KAS-1"
    assert provisioning.open_tasks_of(w.session, sid) == []


def test_the_queue_lists_open_tasks_oldest_first_with_their_organisation(world):
    w = world
    w.topup("1000000")
    a = buy(w, "basic-m", 1, at=NOW)
    b = buy(w, "basic-m", 1, at=NOW + H)
    views = provisioning.list_tasks(w.session)
    assert [v.subscription_id for v in views] == [a, b] and views[0].org_name == w.org.name
    provisioning.reject(w.session, views[0].id, reason="no", operator="Ivan")
    assert [v.subscription_id for v in provisioning.list_tasks(w.session)] == [b]
    assert {v.status for v in provisioning.list_tasks(w.session, status=None)} == {"open", "rejected"}


def test_overdue_tasks_are_reported_to_support_once_a_day(world):
    w = world
    w.topup("1000000")
    buy(w, "basic-m", 1, at=NOW)
    assert provisioning.report_overdue(w.session, now=NOW + 47 * H) == 0
    assert provisioning.report_overdue(w.session, now=NOW + 49 * H) == 1
    assert provisioning.report_overdue(w.session, now=NOW + 50 * H) == 0  # run twice: mailed once
    assert provisioning.report_overdue(w.session, now=NOW + 73 * H) == 1  # the next day: again
    sent = mails(w, "provisioning_overdue")
    assert len(sent) == 2 and sent[0].to_email == "support@noventiq.example"


def _task(w: World, sid: int, action: str = "order") -> ProvisioningTask:
    w.session.rollback()
    return w.session.exec(select(ProvisioningTask).where(ProvisioningTask.subscription_id == sid,
                                                         ProvisioningTask.action == action)
                          .order_by(ProvisioningTask.id.desc())).first()


def _available(w: World) -> Decimal:
    return available(w)


def _entries(w: World, sid: int) -> list[LedgerEntry]:
    return charges(w, sid)


# --- found in review: reserved money spent elsewhere -------------------------------------------

def test_renewal_job_spends_money_reserved_by_an_open_manual_order(world):
    """Every vendor manual. Subscription A is active (completed); the customer orders B, whose
    reservation holds the whole rest of the balance (available 0). A's renewal falls due: the
    renewal job (chunks.Chunk.available = ledger sum [+ credit limit], reservations ignored)
    charges it from the reserved money. The operator then completes B: its reserved price is charged
    too, and the prepaid organisation ends at -30 000 — a month of A given for nothing."""
    w = world
    w.topup("120000")
    a = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 1, now=NOW).subscription_id
    provisioning.complete(w.session, _task(w, a).id, vendor_ref="KAS-A", operator="Ivan", now=NOW)
    term_end = w.sub(a).term_end
    b = ordering.order(w.session, w.a_owner, w.plan("basic-m").id, 3, now=NOW + H).subscription_id
    assert w.balance() == Decimal("90000.00") and _available(w) == Decimal("0.00")
    renewals.renew_due(w.session, term_end + H)
    # the renewal must not have been paid from the reservation
    assert _available(w) >= 0, ("available after the renewal", _available(w))
    provisioning.complete(w.session, _task(w, b).id, vendor_ref="KAS-B", operator="Ivan", now=term_end + 2 * H)
    assert w.balance() >= 0, w.balance()


def test_usage_eating_a_reservation_is_never_seen_by_the_credit_control_job(world):
    """Prepaid: 100 000 сум, an active pay-as-you-go subscription, and a manual order reserving
    90 000 (available 10 000). Usage of about 24 000 сум is rated (forced): balance 76 000,
    available -14 000. _check_org judges by ledger.available (reservations counted) — but the job's
    _candidates picks organisations by the bare ledger sum, so this one is never looked at: never
    told, its pay-as-you-go never suspended, the usage keeps eating the money the open order holds
    (and the completion then overdraws the account)."""
    w = world
    s = w.session
    w.topup("100000")
    prod = payg_sub(s, w.org, w.plan("azure-h"), name="Azure prod", vendor_ref="REF-PROD").id
    ordering.order(s, w.a_owner, w.plan("basic-m").id, 3, now=NOW)
    add_usage(s, w.sub(prod), NOW - 3 * H, 1, services=1, cost="2")
    rating.rate_usage(s, now=NOW)
    s.rollback()
    assert ledger.available(s, w.org) < 0 <= ledger.balance(s, w.org.id)
    credit_control.check(s, NOW + H)  # the hourly job, over every organisation
    credit_control.check(s, NOW + H + GRACE)
    s.rollback()
    org = s.get(Organisation, w.org.id, populate_existing=True)
    assert org.overdrawn_since is not None, "the job never looked at an organisation overdrawn by its reservations"
    assert w.sub(prod).status == "suspended"


def test_usd_billed_org_orders_a_sum_plan_of_a_manual_vendor_and_is_charged_what_was_reserved(world):
    """A USD-billed organisation orders a сум-priced plan of a manual vendor: the order goes
    through (the rate 1/12000 has more decimals than a stored rate: the task keeps the order day
    instead) and the completion charges exactly what was quoted and reserved (found in review)."""
    w = world
    usd = f.org(w.session, name="ООО «Доллар»", billing_currency="USD")
    boss = f.user(w.session, usd, Role.OWNER, email="boss@dollar.uz")
    f.topup(w.session, usd, "10000")
    actor = f.actor(boss, usd)
    quote = ordering.quote_order(w.session, actor, w.plan("basic-y").id, 25, now=NOW)
    assert quote.price_now == Decimal("750.00")  # 9 000 000 сум / 12 000
    sid = ordering.order(w.session, actor, w.plan("basic-y").id, 25, quote_id=quote.quote_id,
                         amount=quote.amount_due, now=NOW).subscription_id
    task = _task(w, sid)
    assert task.reserved == Decimal("750.00")
    provisioning.complete(w.session, task.id, vendor_ref="KAS-USD", operator="Ivan", now=NOW + H)
    [charge] = [e for e in _entries(w, sid) if e.kind == "charge"]
    assert -charge.amount == task.reserved, f"reserved {task.reserved}, charged {-charge.amount}"


def test_the_completion_charge_states_the_order_days_rate_and_its_date(world):
    """A USD plan ordered at 12 000 and completed after the rate became 12 500: the charge is at
    the order day's rate (the reserved price) and says so — its rate date is the order day, whose
    rate it is (found in review: it stated the completion day)."""
    from datetime import date

    from noventiq_panel.services.core import rates

    w = world
    w.topup("1000000")
    sid = ordering.order(w.session, w.a_owner, w.plan("std-usd").id, 1, now=NOW).subscription_id
    f.usd_rate(w.session, date(2026, 3, 15), "12500.00")
    provisioning.complete(w.session, _task(w, sid).id, vendor_ref="KAS-1", operator="Ivan", now=NOW + 10 * 24 * H)
    [charge] = [e for e in _entries(w, sid) if e.kind == "charge"]
    w.session.rollback()
    assert charge.fx_rate == rates.rate_on(w.session, "USD", charge.fx_date).rate, (charge.fx_rate, charge.fx_date)


def test_a_trial_the_vendor_refused_is_not_the_one_trial_of_the_product(world):
    """A trial of a manual vendor the vendor refused was never had: the customer may order it
    again (found in review: the cancelled trial counted as the one trial of the product)."""
    w = world
    sid = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 5, now=NOW).subscription_id
    provisioning.reject(w.session, _task(w, sid, "order").id, reason="temporarily out of stock", operator="Ivan",
                        now=NOW + H)
    again = ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 5, now=NOW + 2 * H)
    assert again.status == "pending"


# --- generated sequences -----------------------------------------------------------------------

STEP = st.one_of(
    st.tuples(st.just("order"), st.integers(1, 4)),
    st.tuples(st.just("complete"), st.integers(0, 5)),
    st.tuples(st.just("reject"), st.integers(0, 5)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("decrease"), st.integers(0, 5)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_generated_queue_sequences_keep_balance_reservations_and_charges_in_step(tmp_path, steps):
    """Whatever orders, decreases, cancellations, completions and rejections happen in whatever
    order: the balance is the top-up less one charge per completed order (never more) plus the
    refunds of decreases and cancellations the vendor confirmed (only those), what is available is
    the balance less the open orders' reservations, a rejected or cancelled order costs nothing,
    and an active subscription holds as many seats as it has."""
    engine = _engine_for(f"sqlite:///{tmp_path / f'q{next(_RUNS)}.db'}")
    with Session(engine, expire_on_commit=False) as session:
        _run_sequence(make_world(session), steps)
    engine.dispose()


_RUNS = itertools.count()


def _run_sequence(w: World, steps) -> None:
    w.topup("200000")
    subs: list[int] = []
    at = NOW
    for op, arg in steps:
        at += H
        try:
            if op == "order":
                subs.append(buy(w, "basic-m", arg, at=at))
            elif subs:
                sid = subs[arg % len(subs)]
                waiting = [t for t in tasks(w, sid) if t.status == "open"]
                task = waiting[-1] if waiting else tasks(w, sid)[0]
                if op == "decrease":
                    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sid, 1, now=at)
                    licence_count.change_quantity(w.session, w.a_owner, sid, 1, quote_id=quote.quote_id,
                                                  amount=quote.amount_due, now=at)
                elif op == "complete":
                    provisioning.complete(w.session, task.id, vendor_ref=f"R-{sid}", operator="Ivan", now=at)
                elif op == "reject":
                    provisioning.reject(w.session, task.id, reason="refused", operator="Ivan", now=at)
                else:
                    cancel(w.session, w.a_owner, sid, at)
        except (Conflict, InsufficientFunds, InvalidInput):
            w.session.rollback()
    confirmed = {f"provisioning:{t.id}:refund" for sid in subs for t in tasks(w, sid)
                 if t.status == "completed" and t.params.get("refund")}
    for sid in subs:  # money back only where the vendor confirmed, once per task
        keys = [e.idempotency_key for e in charges(w, sid) if e.kind == "refund"]
        assert len(keys) == len(set(keys)) and set(keys) <= confirmed, keys
        sub = w.sub(sid)
        if sub.status == "active":
            held = sum(b.quantity for b in w.session.exec(select(LicenceBatch).where(LicenceBatch.subscription_id == sid)))
            assert held == sub.quantity, (sid, held, sub.quantity)
    all_tasks = [t for sid in subs for t in tasks(w, sid) if t.action == "order"]
    completed = {t.subscription_id: t.reserved for t in all_tasks if t.status == "completed"}
    open_reserved = sum((t.reserved for t in all_tasks if t.status == "open"), Decimal("0"))
    money = {sid: sum((e.amount for e in charges(w, sid)), Decimal("0")) for sid in subs}
    for t in all_tasks:
        if t.status in ("rejected", "cancelled") or t.status == "open":
            assert money[t.subscription_id] == 0, t
        else:  # completed: charged exactly once, less a refund if cancelled later in its window
            assert -completed[t.subscription_id] <= money[t.subscription_id] <= 0, t
            charges_of = [e for e in charges(w, t.subscription_id) if e.kind == "charge"]
            assert len(charges_of) == 1 and charges_of[0].amount == -t.reserved
    assert w.balance() == Decimal("200000.00") + sum(money.values())
    assert available(w) == w.balance() - open_reserved >= 0
