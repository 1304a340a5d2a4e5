"""Daily reminders: each sent once (dedupe keys), computed from now (after downtime only the
nearest threshold), renewals reminded only when the funds will not cover them, low balance once
per episode, payments due and overdue."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlmodel import select

from noventiq_panel.models import Notification, Payment, Subscription
from noventiq_panel.services.subscriptions import reminders

from tests import factories as f
from tests.services.usage_world import payg_sub, payg_world, tashkent

T = tashkent(2026, 12, 1)  # a term end: 1 Dec 2026 00:00 in Tashkent


def mails(session, kind=None):
    q = select(Notification).order_by(Notification.id)
    if kind:
        q = q.where(Notification.kind == kind)
    rows = session.exec(q).all()
    session.commit()
    return rows


def licence(session, org, plan, *, end=T, auto_renew=True, quantity=2, status="active", **kw):
    sub = Subscription(org_id=org.id, plan_id=plan.id, status=status, quantity=quantity, term_start=end - timedelta(days=30),
                       term_end=end, auto_renew=auto_renew, **kw)
    session.add(sub)
    session.commit()
    return sub


def world(session):
    org, plans, owner = payg_world(session)
    admin = f.user(session, org, role="admin")
    finance = f.user(session, org, role="finance")
    return org, plans, owner, admin, finance


def test_expiry_reminders_30_7_1_days_each_once(session):
    org, plans, owner, admin, finance = world(session)
    sub = licence(session, org, plans["basic-m"], auto_renew=False)
    f.topup(session, org, "10000000")
    for days_before, expected in ((40, 0), (29, 2), (28, 2), (20, 2), (6.5, 4), (6, 4), (0.5, 6), (0.2, 6)):
        reminders.send_reminders(session, now=T - timedelta(days=days_before))
        assert len(mails(session, "expiry_reminder")) == expected, days_before
    keys = sorted(m.dedupe_key for m in mails(session, "expiry_reminder"))
    assert keys == sorted(f"expiry_reminder:{sub.id}:20261201:{d}:u{u.id}" for d in (30, 7, 1) for u in (owner, admin))
    assert not any(m.to_email == finance.email for m in mails(session))
    reminders.send_reminders(session, now=T + timedelta(hours=1))  # ended: nothing more
    assert len(mails(session, "expiry_reminder")) == 6


def test_after_downtime_only_the_nearest_reminder_is_sent(session):
    org, plans, owner, admin, _ = world(session)
    licence(session, org, plans["basic-m"], auto_renew=False)
    f.topup(session, org, "10000000")
    reminders.send_reminders(session, now=T - timedelta(days=5))  # the 30-day mail was missed
    assert {m.dedupe_key.split(":")[3] for m in mails(session, "expiry_reminder")} == {"7"}


def test_renewal_reminded_only_when_the_funds_will_not_cover_it(session):
    org, plans, owner, admin, finance = world(session)
    first = licence(session, org, plans["basic-m"], end=T - timedelta(days=1), quantity=2)  # 60 000
    second = licence(session, org, plans["basic-m"], end=T, quantity=1)  # 30 000
    f.topup(session, org, "70000")  # covers the first renewal, not both
    reminders.send_reminders(session, now=T - timedelta(days=6, hours=12))
    sent = mails(session, "renewal_reminder")
    assert {m.dedupe_key.split(":")[1] for m in sent} == {str(second.id)}
    assert sorted(m.to_email for m in sent) == sorted([owner.email, admin.email, finance.email])
    f.topup(session, org, "100000")
    reminders.send_reminders(session, now=T - timedelta(days=2, hours=12))  # 3-day threshold, funds cover
    assert len(mails(session, "renewal_reminder")) == 3
    _ = first


def test_trial_reminder_three_days_before_the_end(session):
    org, plans, owner, admin, _ = world(session)
    trial = Subscription(org_id=org.id, plan_id=plans["basic-trial"].id, status="trial", quantity=5, is_trial=True,
                         trial_ends_at=T, term_start=T - timedelta(days=30), term_end=T)
    session.add(trial)
    session.commit()
    f.topup(session, org, "10000000")
    reminders.send_reminders(session, now=T - timedelta(days=4))
    assert mails(session, "trial_reminder") == []
    reminders.send_reminders(session, now=T - timedelta(days=2))
    reminders.send_reminders(session, now=T - timedelta(days=1))
    assert sorted(m.to_email for m in mails(session, "trial_reminder")) == sorted([owner.email, admin.email])


def test_low_balance_once_per_episode(session):
    from noventiq_panel.services.core import ledger

    org, plans, owner, admin, finance = world(session)
    sub = payg_sub(session, org, plans["azure-d"])
    f.topup(session, org, "1000000")
    for d in range(7):  # 100 000 a day of usage
        ledger.post(session, org_id=org.id, kind="usage", amount=Decimal("-100000"), idempotency_key=f"u{d}",
                    subscription_id=sub.id, occurred_at=T - timedelta(days=7 - d))
    session.commit()  # balance 300 000 < 700 000 projected for the next 7 days
    reminders.send_reminders(session, now=T)
    reminders.send_reminders(session, now=T + timedelta(hours=5))
    low = mails(session, "low_balance")
    assert sorted(m.to_email for m in low) == sorted([owner.email, finance.email])
    f.topup(session, org, "100000")  # still low: a new episode after a top-up
    reminders.send_reminders(session, now=T + timedelta(hours=6))
    assert len(mails(session, "low_balance")) == 4
    f.topup(session, org, "5000000")
    reminders.send_reminders(session, now=T + timedelta(hours=7))
    assert len(mails(session, "low_balance")) == 4


def test_low_balance_counts_renewals_due_within_a_week(session):
    org, plans, *_ = world(session)
    licence(session, org, plans["basic-m"], end=T + timedelta(days=3), quantity=10)  # 300 000 due
    f.topup(session, org, "200000")
    summary = reminders.send_reminders(session, now=T)
    assert summary.low_balance == 1
    [m, *_] = mails(session, "low_balance")
    assert "300" in m.body_text


def test_payment_due_then_overdue_each_once(session):
    org, plans, owner, admin, finance = world(session)
    payment = Payment(org_id=org.id, number="СЧ-2026-000777", amount=Decimal("500000.00"), currency="UZS",
                      status="pending", due_date=date(2026, 12, 3), created_by=None)
    session.add(payment)
    session.commit()
    reminders.send_reminders(session, now=tashkent(2026, 11, 28, 9))
    assert mails(session, "payment_due") == []
    reminders.send_reminders(session, now=tashkent(2026, 12, 1, 9))
    reminders.send_reminders(session, now=tashkent(2026, 12, 2, 9))
    assert sorted(m.to_email for m in mails(session, "payment_due")) == sorted([owner.email, finance.email])
    summary = reminders.send_reminders(session, now=tashkent(2026, 12, 4, 9))
    reminders.send_reminders(session, now=tashkent(2026, 12, 5, 9))
    assert summary.marked_overdue == 1
    session.refresh(payment)
    assert payment.status == "overdue"
    assert sorted(m.to_email for m in mails(session, "payment_overdue")) == sorted([owner.email, finance.email])
    session.commit()


def test_threshold_reached_picks_the_nearest():
    assert reminders.threshold_reached(T, T - timedelta(days=31), (30, 7, 1)) is None
    assert reminders.threshold_reached(T, T - timedelta(days=30), (30, 7, 1)) == 30
    assert reminders.threshold_reached(T, T - timedelta(hours=3), (30, 7, 1)) == 1
    assert reminders.threshold_reached(T, T, (30, 7, 1)) is None
