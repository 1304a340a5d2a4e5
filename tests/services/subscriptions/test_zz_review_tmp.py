from decimal import Decimal

from sqlmodel import select

from noventiq_panel import models
from noventiq_panel.models import LedgerEntry
from tests.services.subscriptions.test_money_conservation import replay


def _entries(state):
    state.session.rollback()
    rows = [(e.idempotency_key, e.amount, (e.meta or {}).get("action"), e.period_start, e.period_end)
            for e in state.session.exec(select(LedgerEntry).order_by(LedgerEntry.id)).all()]
    state.session.rollback()
    return rows


def test_instalment_grace_days_escape_when_customer_suspends_in_grace_and_resumes_on_next_period_start(sqlite_engine):
    """std-ym x10 (900 000 a month) bought 28 Jan; the 28 Feb instalment is unpaid (grace to 7 Mar);
    the customer uses 28 Feb - 6 Mar (7 days), suspends on 6 Mar, resumes on 28 Mar (first day of
    the next monthly period): the 7 grace days (225 000) are never charged."""
    state = replay(sqlite_engine)
    state.order(code="std-ym", quantity=10, trial_convert=False)
    for n in (11, 11, 7, 4):  # 9 Feb, 21 Feb, 1 Mar (grace), 6 Mar 10:00 (still in grace)
        state.travel(how="days", n=n, after=False)
    state.suspend(index=0)               # 6 Mar 10:00: grace_until cleared, reason customer
    state.top_up(amount="3000000")
    state.travel(how="days", n=9, after=False)   # 16 Mar
    state.travel(how="days", n=11, after=False)  # 28 Mar 10:00: first day of the 28 Mar - 28 Apr period
    before = state.charged
    state.resume(index=0)
    print("resumed 28 Mar, charged", state.charged - before)
    for e in _entries(state):
        print(e)
    state.money_is_conserved()


def test_instalment_grace_days_charged_when_resumed_later_in_the_same_period(sqlite_engine):
    """Control: the same, resumed on 16 Mar instead of 28 Mar: the comeback starts 9 Mar (7 days back)."""
    state = replay(sqlite_engine)
    state.order(code="std-ym", quantity=10, trial_convert=False)
    for n in (11, 11, 7, 4):
        state.travel(how="days", n=n, after=False)
    state.suspend(index=0)
    state.top_up(amount="3000000")
    state.travel(how="days", n=9, after=False)   # 16 Mar
    before = state.charged
    state.resume(index=0)
    print("resumed 16 Mar, charged", state.charged - before)
    state.money_is_conserved()


def test_renewal_grace_days_are_never_charged_when_customer_suspends_in_grace_and_walks_away(sqlite_engine):
    """std-m x6 (540 000) renewal of 28 Feb unpaid: grace to 7 Mar; the customer uses 28 Feb - 6 Mar,
    suspends on 6 Mar and never comes back. The job path would expire it on 14 Mar charging 7 days
    (126 000); after the customer's suspension nothing ever charges them (months later, jobs run)."""
    state = replay(sqlite_engine)
    state.order(code="std-m", quantity=6, trial_convert=False)
    state.order(code="basic-yu", quantity=1, trial_convert=False)
    for n in (11, 11, 7, 4):  # ... 1 Mar (grace), 6 Mar
        state.travel(how="days", n=n, after=False)
    state.suspend(index=0)
    charged_before = state.charged
    for _ in range(12):
        state.travel(how="days", n=11, after=False)  # ~5 months, jobs run at every due moment
    state.money_is_conserved()  # the ledger check does not see it either (pending days are not counted)
    state.session.rollback()
    sub = state.session.get(models.Subscription, 1, populate_existing=True)
    print(sub.status, sub.suspend_reason, sub.grace_until, state.charged - charged_before)
    assert state.charged - charged_before >= Decimal("126000.00"), "7 grace days used, never charged"


def test_control_job_path_charges(sqlite_engine):
    state = replay(sqlite_engine)
    state.order(code="std-m", quantity=6, trial_convert=False)
    state.order(code="basic-yu", quantity=1, trial_convert=False)
    for n in (11, 11, 7, 4):
        state.travel(how="days", n=n, after=False)
    before = state.charged
    for _ in range(3):
        state.travel(how="days", n=11, after=False)
    print("job path lapse charged", state.charged - before)
    state.money_is_conserved()
