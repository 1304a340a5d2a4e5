"""Review of issue 18 (a manual vendor's decrease/cancellation waits for the vendor, a24bb8f):
failing tests for sequences of legitimate calls that leave money or seats wrong.

- the customer suspends while a refunded cancellation waits for the vendor (a status change the
  README says is refused): the operator cannot complete it any more;
- a cancellation asked while the subscription is suspended is quoted with a refund and queued, but
  can never be completed (completion refuses a suspended subscription);
- completing while the subscription is in grace (renewal unpaid) is not refused as documented: a
  cancellation ends it without charging the grace days (the lapse), a decrease takes seats back
  whose grace days are then never paid;
- the "licence count changed" mail of a decrease that waits for the vendor tells the customer the
  count is already the new one.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.subscriptions import cancellation, lifecycle, provisioning, renewals

from tests.services.subs_world import NOW, World, world  # noqa: F401 (fixture)
from tests.services.subscriptions.test_provisioning import cancel, charges, mails, tasks
from tests.services.subscriptions.test_subscriptions import buy
from tests.services.subscriptions.test_vendor_confirms_refunds import active, decrease, held, refunds

H = timedelta(hours=1)
D = timedelta(days=1)


pytestmark = pytest.mark.usefixtures("manual_vendors")  # every vendor without an API: the queue


def _unfunded(w: World, seats: int) -> int:
    """A manual monthly subscription activated an hour after NOW with a balance that pays exactly
    its first term (its renewal will go into grace)."""
    w.topup(str(30000 * seats))
    sid = buy(w, "basic-m", seats)
    [order] = tasks(w, sid)
    provisioning.complete(w.session, order.id, vendor_ref="KAS-1", operator="Ivan", now=NOW + H)
    return sid


def test_suspending_is_refused_while_a_refunded_cancellation_waits_for_the_vendor(world):
    """README: "While such a task is open the subscription takes no other change of seats, plan or
    status". Suspend is not guarded: the subscription becomes suspended, and the operator who has
    cancelled it at the vendor can no longer complete the task (not_active): the vendor has taken
    the seats back, the panel keeps them, renews them, and refunds nothing."""
    w = world
    sid = active(w, 2)
    cancel(w.session, w.a_owner, sid, NOW + 2 * H)
    task = tasks(w, sid)[-1]
    assert task.params == {"refund": True}
    with pytest.raises(Conflict) as info:
        lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + 3 * H)
    assert info.value.key == "error.provisioning.waiting"
    w.session.rollback()
    provisioning.complete(w.session, task.id, operator="Olga", now=NOW + 4 * H)
    assert w.sub(sid).status == "cancelled" and len(refunds(w, sid)) == 1


def test_a_cancellation_asked_while_suspended_can_be_completed_as_quoted(world):
    """A subscription the customer suspended inside its window: the quote promises a refund that
    waits for the vendor and the task is queued, but completion refuses every suspended
    subscription — the operator must reject, the customer asking again gets the same task, and
    once the window closes the refund is gone (a connector vendor refunds at once)."""
    w = world
    sid = active(w, 2)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW + 2 * H)
    quote = cancellation.quote_cancel(w.session, w.a_owner, sid, now=NOW + 3 * H)
    assert quote.vendor_confirms and quote.refund_now > 0
    outcome = cancel(w.session, w.a_owner, sid, NOW + 3 * H)
    assert outcome.at_vendor
    task = tasks(w, sid)[-1]
    assert (task.action, task.params) == ("cancel", {"refund": True})
    provisioning.complete(w.session, task.id, operator="Olga", now=NOW + 4 * H)  # Conflict: not_active
    assert w.sub(sid).status == "cancelled" and held(w, sid) == 0
    assert [e.amount > 0 for e in refunds(w, sid)] == [True]


def test_completing_a_cancellation_in_grace_charges_the_grace_days_or_is_refused(world):
    """The cancellation waits; the term ends and the renewal is unpaid (grace: status stays
    'active'). _confirmed's docstring says a subscription "in grace since" is refused, but only the
    status is checked: the subscription is cancelled, refunding nothing, and the days it was used
    in grace (lapse, charged by every other way out of grace: the customer's cancel, expiry) are
    never charged."""
    w = world
    sid = _unfunded(w, 2)
    cancel(w.session, w.a_owner, sid, NOW + 2 * H)
    task = tasks(w, sid)[-1]
    end = w.sub(sid).term_end
    renewals.renew_due(w.session, now=end + H)
    sub = w.sub(sid)
    assert sub.status == "active" and sub.grace_until is not None  # in grace
    try:
        provisioning.complete(w.session, task.id, operator="Olga", now=end + 2 * D)
    except Conflict as exc:  # refused as documented: the grace path goes on and charges the lapse
        assert exc.key == "error.provisioning.not_active"
        return
    assert w.sub(sid).status == "cancelled"
    lapses = [e for e in charges(w, sid) if (e.idempotency_key or "").startswith(f"lapse:{sid}:")]
    assert lapses and lapses[0].amount < 0, "two grace days of two seats used and never charged"


def test_completing_a_decrease_in_grace_is_refused_as_documented(world):
    """Same for a decrease: completed in grace it takes the seats back without a refund (nothing
    paid for the new period) and the renewal, once paid, charges the new term from its start for
    the smaller count — the seats taken back were used in grace unpaid."""
    w = world
    sid = _unfunded(w, 3)
    decrease(w, sid, 1, NOW + 2 * H)
    task = tasks(w, sid)[-1]
    end = w.sub(sid).term_end
    renewals.renew_due(w.session, now=end + H)
    assert w.sub(sid).grace_until is not None
    with pytest.raises(Conflict) as info:
        provisioning.complete(w.session, task.id, operator="Olga", now=end + 3 * D)
    assert info.value.key == "error.provisioning.not_active"


def test_the_licence_mail_of_a_decrease_waiting_for_the_vendor_does_not_say_it_is_done(world):
    """change_quantity mails 'licence_changed' with new_quantity = the count asked for: "The number
    of licences has been changed … Licences now: 1" while nothing changed (3 seats, no refund)."""
    w = world
    sid = active(w, 3)
    _quote, outcome = decrease(w, sid, 1, NOW + 2 * H)
    assert outcome.at_vendor and w.sub(sid).quantity == 3
    sent = mails(w, "licence_changed")  # (fixed: none is sent; the vendor's confirmation is mailed)
    for m in sent:
        for claim in ("Licences now: 1", "Стало лицензий: 1", "Yangi litsenziyalar soni: 1"):
            assert claim not in m.body_text, m.body_text
