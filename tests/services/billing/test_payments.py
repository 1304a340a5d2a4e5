"""Payments: top-up invoices, validation that changes nothing, operator confirmation (twice = once),
overdue in the organisation's time zone, the shortfall path, postpaid monthly invoices, access."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import select

from noventiq_panel.models import (
    AuditEvent,
    LedgerEntry,
    Notification,
    NotificationAttachment,
    Payment,
    Role,
    Sequence,
)
from noventiq_panel.services.core import ledger
from noventiq_panel.services.billing import invoice_document, invoices, payment_methods, payments, postpaid
from noventiq_panel.services.core.errors import Conflict, Forbidden, InsufficientFunds, InvalidInput, NotFound

from tests import factories as f

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)  # 13:00 in Tashkent


def _counts(session) -> dict:
    session.rollback()
    return {
        "payments": session.exec(select(func.count()).select_from(Payment)).one(),
        "ledger": session.exec(select(func.count()).select_from(LedgerEntry)).one(),
        "mail": session.exec(select(func.count()).select_from(Notification)).one(),
        "audit": session.exec(select(func.count()).select_from(AuditEvent)).one(),
        "sequences": [(s.name, s.value) for s in session.exec(select(Sequence).order_by(Sequence.name)).all()],
    }


@pytest.fixture
def owner(session):
    o = f.org(session, name="ООО «Ромашка»", tax_id="300000001")
    u = f.user(session, o, Role.OWNER, email="owner@romashka.uz")
    return o, u, f.actor(u, o)


def test_topup_creates_a_pending_invoice_mailed_with_its_pdf(session, owner):
    o, u, a = owner
    p = invoices.request_topup(session, a, "1200000", now=NOW)
    assert re.fullmatch(r"СЧ-2026-\d{6}", p.number)
    assert p.status == "pending" and p.kind == "topup" and p.method == "bank_transfer"
    assert p.amount == Decimal("1200000.00") and p.currency == "UZS"
    assert p.due_date == date(2026, 11, 25) + timedelta(days=5)
    assert ledger.balance(session, o.id) == Decimal("0.00")  # an invoice is not money
    mail = session.exec(select(Notification).where(Notification.kind == "invoice_to_pay")).one()
    assert mail.to_email == "owner@romashka.uz" and mail.org_id == o.id
    att = session.exec(select(NotificationAttachment).where(NotificationAttachment.notification_id == mail.id)).one()
    assert att.filename == invoice_document.invoice_filename(p) == f"invoice-{p.number[3:]}.pdf"
    assert att.mime_type == "application/pdf" and att.data.startswith(b"%PDF")


def test_invoice_numbers_are_consecutive_without_gaps_even_after_a_refused_request(session, owner):
    _o, _u, a = owner
    first = invoices.request_topup(session, a, "5000", now=NOW)
    with pytest.raises(InvalidInput):
        invoices.request_topup(session, a, "-1", now=NOW)
    second = invoices.request_topup(session, a, "6000.50", now=NOW)
    third = invoices.request_topup(session, a, 7000, now=NOW)
    seqs = [int(p.number.rsplit("-", 1)[1]) for p in (first, second, third)]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


@pytest.mark.parametrize("amount", ["-100", "0", "1000.123", "abc", 1500.5, "10000000001", "999.99", "", None,
                                    "NaN", "Infinity", {"a": 1}, True])
def test_invalid_topup_amount_changes_nothing(session, owner, amount):
    _o, _u, a = owner
    invoices.request_topup(session, a, "5000", now=NOW)  # the counter exists: it must not move
    before = _counts(session)
    with pytest.raises(InvalidInput):
        invoices.request_topup(session, a, amount, now=NOW)
    assert _counts(session) == before


def test_unknown_payment_method_is_refused_and_only_working_methods_are_listed(session, owner):
    _o, _u, a = owner
    assert [m.code for m in payment_methods.available()] == ["bank_transfer"]
    before = _counts(session)
    with pytest.raises(InvalidInput) as err:
        invoices.request_topup(session, a, "5000", method="card", now=NOW)
    assert err.value.key == "error.billing.method_unknown"
    assert _counts(session) == before


def test_finance_role_cannot_request_a_topup(session, owner):
    o, _u, _a = owner
    fin = f.user(session, o, Role.FINANCE)
    before = _counts(session)
    with pytest.raises(Forbidden):
        invoices.request_topup(session, f.actor(fin, o), "5000", now=NOW)
    with pytest.raises(Forbidden):
        invoices.request_shortfall_invoice(session, f.actor(fin, o), "5000", {"type": "order"}, now=NOW)
    assert _counts(session) == before
    # ...but reads the organisation's payments
    rows, total = invoices.list_payments(session, f.actor(fin, o))
    assert total == 0 and rows == []


def test_foreign_organisation_payments_are_invisible(session, owner):
    o, _u, a = owner
    other = f.org(session, name="ООО «Чужая»", tax_id="300000002")
    stranger = f.user(session, other, Role.OWNER)
    theirs = invoices.request_topup(session, f.actor(stranger, other), "5000", now=NOW)
    mine = invoices.request_topup(session, a, "6000", now=NOW)
    rows, total = invoices.list_payments(session, a, now=NOW)
    assert total == 1 and [r.number for r in rows] == [mine.number]
    with pytest.raises(NotFound):
        invoices.invoice_pdf(session, a, theirs.id)
    with pytest.raises(NotFound):
        invoices.invoice_pdf(session, a, "1 OR 1=1")
    # a member of another organisation acting in ours is refused
    with pytest.raises(Forbidden):
        invoices.list_payments(session, f.actor(stranger, o))
    name, pdf = invoices.invoice_pdf(session, a, mine.id)
    assert name.endswith(".pdf") and pdf.startswith(b"%PDF")


def test_confirm_twice_credits_once(session, owner):
    o, _u, a = owner
    p = invoices.request_topup(session, a, "1200000", now=NOW)
    first = payments.confirm_payment(session, p.number, now=NOW + timedelta(hours=2))
    assert first.changed and first.credited == Decimal("1200000.00")
    assert first.payment.status == "paid" and first.payment.paid_at == NOW + timedelta(hours=2)
    before = _counts(session)
    second = payments.confirm_payment(session, p.number, now=NOW + timedelta(hours=3))
    assert not second.changed and second.credited == 0
    assert _counts(session) == before
    assert ledger.balance(session, o.id) == Decimal("1200000.00")
    entry = session.exec(select(LedgerEntry).where(LedgerEntry.payment_id == p.id)).one()
    assert entry.kind == "topup" and entry.idempotency_key == f"payment:{p.id}"
    received = session.exec(select(Notification).where(Notification.kind == "payment_received")).all()
    assert len(received) == 1 and received[0].to_email == "owner@romashka.uz"


def test_partial_confirmation_then_the_rest(session, owner):
    o, _u, a = owner
    p = invoices.request_topup(session, a, "10000", now=NOW)
    r1 = payments.confirm_payment(session, p.number, amount="4000.50", now=NOW)
    assert r1.payment.status == "pending" and r1.payment.paid_amount == Decimal("4000.50")
    r2 = payments.confirm_payment(session, p.number, now=NOW)
    assert r2.credited == Decimal("5999.50") and r2.payment.status == "paid"
    assert ledger.balance(session, o.id) == Decimal("10000.00")
    assert not payments.confirm_payment(session, p.number, amount="10000", now=NOW).changed


@pytest.mark.parametrize("amount", ["-5", "0", "1.005", "x"])
def test_confirm_with_a_bad_amount_changes_nothing(session, owner, amount):
    _o, _u, a = owner
    p = invoices.request_topup(session, a, "10000", now=NOW)
    before = _counts(session)
    with pytest.raises(InvalidInput):
        payments.confirm_payment(session, p.number, amount=amount, now=NOW)
    assert _counts(session) == before


def test_confirm_unknown_or_cancelled_invoice_is_refused(session, owner):
    _o, _u, a = owner
    with pytest.raises(NotFound):
        payments.confirm_payment(session, "СЧ-2026-999999", now=NOW)
    p = invoices.request_topup(session, a, "10000", now=NOW)
    invoices.cancel_payment(session, a, p.id)
    before = _counts(session)
    with pytest.raises(Conflict):
        payments.confirm_payment(session, p.number, now=NOW)
    assert _counts(session) == before


def test_overdue_is_decided_in_the_organisation_time_zone(session, owner):
    _o, _u, a = owner
    p = invoices.request_topup(session, a, "10000", now=NOW)
    due = p.due_date  # 30 Nov 2026
    last_minute = datetime(due.year, due.month, due.day, 18, 59, tzinfo=timezone.utc)  # 23:59 Tashkent
    next_day = datetime(due.year, due.month, due.day, 19, 30, tzinfo=timezone.utc)  # 00:30 Tashkent, next day
    assert invoices.list_payments(session, a, now=last_minute)[0][0].status == "pending"
    assert postpaid.mark_overdue(session, last_minute) == []
    rows, total = invoices.list_payments(session, a, status="overdue", now=next_day)
    assert total == 1 and rows[0].status == "overdue"
    assert invoices.list_payments(session, a, status="pending", now=next_day)[1] == 0
    assert invoices.list_payments(session, a, status="pending", now=last_minute)[1] == 1
    newly = postpaid.mark_overdue(session, next_day)
    assert [x.number for x in newly] == [p.number]
    assert postpaid.mark_overdue(session, next_day) == []  # once
    assert session.get(Payment, p.id).status == "overdue"
    # an overdue invoice can still be paid
    assert payments.confirm_payment(session, p.number, now=next_day).payment.status == "paid"


def test_mark_overdue_leaves_paid_invoices_alone(session, owner):
    _o, _u, a = owner
    p = invoices.request_topup(session, a, "10000", now=NOW)
    payments.confirm_payment(session, p.number, now=NOW)
    assert postpaid.mark_overdue(session, NOW + timedelta(days=30)) == []
    assert session.get(Payment, p.id).status == "paid"


def test_list_filters_and_paging(session, owner):
    _o, _u, a = owner
    made = [invoices.request_topup(session, a, str(5000 + i), now=NOW + timedelta(minutes=i)) for i in range(7)]
    payments.confirm_payment(session, made[0].number, now=NOW)
    rows, total = invoices.list_payments(session, a, offset=0, limit=3, now=NOW)
    assert total == 7 and [r.number for r in rows] == [m.number for m in made[::-1][:3]]
    rows, _ = invoices.list_payments(session, a, offset=6, limit=3, now=NOW)
    assert [r.number for r in rows] == [made[0].number]
    assert invoices.list_payments(session, a, status="paid", now=NOW)[1] == 1
    assert invoices.list_payments(session, a, status="pending", now=NOW)[1] == 6
    for bad in ({"status": "stolen"}, {"offset": -1}, {"limit": 0}, {"limit": "x"}):
        with pytest.raises(InvalidInput):
            invoices.list_payments(session, a, **bad)
    soon = invoices.needing_attention(session, a, days=5, now=NOW)
    assert len(soon) == 6


# ---------------------------------------------------------------- the shortfall path

@pytest.fixture
def stub_completion(monkeypatch):
    """A stand-in handler of waiting actions (registered as the subscriptions service registers
    ``complete_pending_action``) that charges the action's amount."""
    calls = []

    def complete(session, action, now):
        calls.append(dict(action))
        if action.get("fail"):
            raise InsufficientFunds(Decimal(action["charge"]), Decimal("0"), "UZS")
        ledger.post(session, org_id=action["org_id"], kind="charge", amount=-Decimal(action["charge"]),
                    idempotency_key=f"stub:{action['request_id']}", occurred_at=now)
        session.commit()

    monkeypatch.setattr(payments, "_handler", payments._handler)  # the registered one comes back afterwards
    assert payments.on_payment_confirmed(complete) is complete
    return calls


def test_paid_shortfall_invoice_completes_the_waiting_action_once(session, owner, stub_completion):
    o, _u, a = owner
    f.topup(session, o, "20000")
    action = {"type": "order", "plan_id": 1, "quantity": 3, "request_id": "req-12345678", "charge": "50000"}
    p = invoices.request_shortfall_invoice(session, a, "30000", action, now=NOW)
    assert p.kind == "shortfall" and p.amount == Decimal("30000.00") and p.pending_action["status"] == "waiting"
    result = payments.confirm_payment(session, p.number, now=NOW)
    assert result.action_status == "done"
    assert len(stub_completion) == 1 and stub_completion[0]["request_id"] == "req-12345678"
    assert session.get(Payment, p.id).pending_action["status"] == "done"
    assert ledger.balance(session, o.id) == Decimal("0.00")  # 20000 + 30000 - 50000
    payments.confirm_payment(session, p.number, now=NOW)
    assert len(stub_completion) == 1  # confirm twice completes once


def test_failed_waiting_action_keeps_the_money_on_the_balance(session, owner, stub_completion):
    o, _u, a = owner
    p = invoices.request_shortfall_invoice(session, a, "30000", {"type": "order", "request_id": "r-87654321",
                                                                 "charge": "90000", "fail": True}, now=NOW)
    result = payments.confirm_payment(session, p.number, now=NOW)
    assert result.action_status == "failed"
    stored = session.get(Payment, p.id)
    assert stored.status == "paid" and stored.pending_action["status"] == "failed"
    assert stored.pending_action["error"] == "error.insufficient_funds"
    assert ledger.balance(session, o.id) == Decimal("30000.00")


def test_shortfall_invoice_refuses_a_foreign_or_malformed_action(session, owner):
    o, _u, a = owner
    before = _counts(session)
    for action in (None, [], "order", {}, {"type": "order", "org_id": o.id + 100}):
        with pytest.raises(InvalidInput):
            invoices.request_shortfall_invoice(session, a, "1000", action, now=NOW)
    assert _counts(session) == before


def test_shortfall_order_completes_through_the_subscriptions_service(session, owner):
    from noventiq_panel.models import Subscription
    from noventiq_panel.services.subscriptions import ordering, pending_actions

    assert payments._handler is pending_actions.complete_pending_action  # registered at import
    o, _u, a = owner
    plans = f.catalog(session)
    f.topup(session, o, "10000")
    with pytest.raises(InsufficientFunds) as err:
        ordering.order(session, a, plans["basic-m"].id, 2, now=NOW)
    shortfall = err.value.shortfall
    assert shortfall == Decimal("50000.00")
    action = pending_actions.pending_action_for_order(a, plans["basic-m"].id, 2)
    p = invoices.request_shortfall_invoice(session, a, shortfall, action, now=NOW)
    assert p.amount == shortfall
    assert session.exec(select(Subscription)).all() == []
    result = payments.confirm_payment(session, p.number, now=NOW + timedelta(hours=1))
    assert result.action_status == "done"
    sub = session.exec(select(Subscription)).one()
    assert sub.quantity == 2 and sub.status == "active"
    assert ledger.balance(session, o.id) == Decimal("0.00")


# ---------------------------------------------------------------- postpaid

def test_postpaid_invoice_is_issued_once_per_org_and_month(session):
    post = f.org(session, name="ООО «Постоплата»", tax_id="300000009", billing_mode="postpaid",
                 credit_limit=Decimal("5000000"))
    f.user(session, post, Role.OWNER, email="boss@post.uz")
    pre = f.org(session, name="ООО «Аванс»", tax_id="300000010")
    for org, key in ((post, "a"), (pre, "b")):
        ledger.post(session, org_id=org.id, kind="charge", amount=Decimal("-700000"), idempotency_key=f"{key}1",
                    occurred_at=datetime(2026, 10, 31, 18, 30, tzinfo=timezone.utc))  # 23:30 on 31 Oct, Tashkent
        ledger.post(session, org_id=org.id, kind="usage", amount=Decimal("-12345.67"), idempotency_key=f"{key}2",
                    occurred_at=datetime(2026, 10, 10, tzinfo=timezone.utc))
        ledger.post(session, org_id=org.id, kind="charge", amount=Decimal("-99"), idempotency_key=f"{key}3",
                    occurred_at=datetime(2026, 10, 31, 19, 30, tzinfo=timezone.utc))  # 1 Nov in Tashkent
    session.commit()
    assert postpaid.issue_postpaid_invoices(session, date(2026, 10, 1), now=datetime(2026, 10, 31, 18, 0,
                                                                                     tzinfo=timezone.utc)) == []
    created = postpaid.issue_postpaid_invoices(session, date(2026, 10, 1), now=NOW)
    assert [(p.org_id, p.amount, p.kind) for p in created] == [(post.id, Decimal("712345.67"), "postpaid")]
    assert created[0].due_date == date(2026, 11, 30)
    assert postpaid.issue_postpaid_invoices(session, date(2026, 10, 1), now=NOW) == []
    assert session.exec(select(func.count()).select_from(Payment)).one() == 1
    mail = session.exec(select(Notification).where(Notification.kind == "invoice_to_pay")).one()
    assert mail.to_email == "boss@post.uz"
