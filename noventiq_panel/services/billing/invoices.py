"""Invoices to pay: creating them (top-ups and shortfall invoices), listing and reading them,
cancelling an unpaid one.

- An invoice is a pending ``Payment`` with a number (``invoice_document``), a due date
  ``settings.invoice_due_days`` after its local creation day, and a method that starts collecting
  the money (bank transfer: the invoice PDF, mailed to the requester or, without one, to the
  organisation's Owners and Financial managers).
- ``overdue`` is a pending payment whose due date has passed in the organisation's time zone. Lists
  compute it (a read writes nothing); ``postpaid.mark_overdue`` stores it for the reminder job.
- A shortfall invoice carries the ``pending_action`` (an order or licence increase) that waits for
  it; ``payments`` hands it on once the invoice is paid.

Money arrives in ``payments`` (operator confirmation) and ``statement_import`` (bank statements).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import Organisation, Payment, PaymentStatus, Role, User
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import payment_methods
from noventiq_panel.services.billing.invoice_document import (
    DEFAULT_PURPOSE,
    invoice_filename,
    new_number,
    render_invoice_pdf,
)
from noventiq_panel.services.billing.transactions import MAX_PAGE, page
from noventiq_panel.services.core import audit, ledger
from noventiq_panel.services.core.authz import Actor, can_read, can_write, load_owned
from noventiq_panel.services.core.clock import local_date
from noventiq_panel.services.core.errors import Conflict, InvalidInput
from noventiq_panel.services.core.money import parse_amount
from noventiq_panel.services.notify import notifications

STATUSES = tuple(s.value for s in PaymentStatus)
KINDS = ("topup", "shortfall", "postpaid")
# Who gets mail about an organisation's money when no requesting user is known.
BILLING_ROLES = (Role.OWNER.value, Role.FINANCE.value)


# ---------------------------------------------------------------- view rows

@dataclass(frozen=True)
class PaymentRow:
    """A payment as lists show it (plain data, safe to hand to the UI)."""

    id: int
    number: str
    kind: str
    method: str
    amount: Decimal
    paid_amount: Decimal
    currency: str
    status: str  # effective status: a pending payment past its due date is "overdue"
    created_at: datetime
    due_date: date | None
    paid_at: datetime | None
    purpose: str


def local_today(org: Organisation, now: datetime | None = None) -> date:
    return local_date(now or utcnow(), org.timezone)


def effective_status(payment: Payment, today: date) -> str:
    if payment.status == PaymentStatus.PENDING and payment.due_date is not None and payment.due_date < today:
        return PaymentStatus.OVERDUE.value
    return str(payment.status)


def status_condition(status: str, today: date):
    """SQL for "the effective status is ``status``" on the organisation's ``today``."""
    if status == PaymentStatus.OVERDUE:
        return or_(Payment.status == PaymentStatus.OVERDUE,
                   and_(Payment.status == PaymentStatus.PENDING, col(Payment.due_date) < today))
    if status == PaymentStatus.PENDING:
        return and_(Payment.status == PaymentStatus.PENDING,
                    or_(col(Payment.due_date).is_(None), col(Payment.due_date) >= today))
    return Payment.status == status


def to_row(payment: Payment, today: date) -> PaymentRow:
    return PaymentRow(
        id=payment.id, number=payment.number, kind=payment.kind, method=payment.method, amount=payment.amount,
        paid_amount=payment.paid_amount, currency=payment.currency, status=effective_status(payment, today),
        created_at=payment.created_at, due_date=payment.due_date, paid_at=payment.paid_at, purpose=payment.purpose,
    )


# ---------------------------------------------------------------- listing and reading

def list_payments(session: Session, actor: Actor, *, status: str | None = None, kind: str | None = None,
                  offset: int = 0, limit: int = 20, now: datetime | None = None) -> tuple[list[PaymentRow], int]:
    """The organisation's payments and invoices, newest first, and how many match in all.

    ``status`` filters by the effective status (``overdue`` includes pending ones past due).
    """
    access = can_read(session, actor)
    offset, limit = page(offset, limit)
    if status not in (None, "") and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}", field="status", key="error.billing.status_unknown")
    if kind not in (None, "") and kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}", field="kind", key="error.billing.kind_unknown")
    org = session.get(Organisation, access.org_id)
    today = local_today(org, now)
    conditions = [Payment.org_id == org.id]
    if status:
        conditions.append(status_condition(status, today))
    if kind:
        conditions.append(Payment.kind == kind)
    total = session.exec(select(func.count()).select_from(Payment).where(*conditions)).one()
    rows = session.exec(
        select(Payment).where(*conditions)
        .order_by(col(Payment.created_at).desc(), col(Payment.id).desc()).offset(offset).limit(limit)
    ).all()
    return [to_row(p, today) for p in rows], int(total)


def needing_attention(session: Session, actor: Actor, *, days: int = 3, now: datetime | None = None,
                      limit: int = 10) -> list[PaymentRow]:
    """Unpaid invoices that are overdue or due within ``days`` days (for the home page), soonest first."""
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    today = local_today(org, now)
    rows = session.exec(
        select(Payment).where(
            Payment.org_id == org.id,
            col(Payment.status).in_([PaymentStatus.PENDING, PaymentStatus.OVERDUE]),
            col(Payment.due_date).is_not(None),
            col(Payment.due_date) <= today + timedelta(days=max(0, int(days))),
        ).order_by(col(Payment.due_date), col(Payment.id)).limit(max(1, min(int(limit), MAX_PAGE)))
    ).all()
    return [to_row(p, today) for p in rows]


def operator_list(session: Session, *, status: str | None = None, org_id: int | None = None,
                  limit: int = 50) -> list[tuple[int, PaymentRow]]:
    """(organisation id, row) of the newest invoices of one organisation or of all of them
    (operators: ``noventiq-panel payments list``)."""
    if org_id is not None:
        org_ids = [org_id]
    else:
        org_ids = list(session.exec(select(Organisation.id).order_by(col(Organisation.id))).all())
    rows: list[tuple[int, PaymentRow]] = []
    for oid in org_ids:
        found, _ = list_payments(session, Actor.system(oid), status=status, limit=limit)
        rows += [(oid, r) for r in found]
    rows.sort(key=lambda x: x[1].created_at, reverse=True)
    return rows[:limit]


@dataclass(frozen=True)
class BillingSummary:
    """What the billing page shows above its tabs and needs for the top-up dialog."""

    balance: Decimal
    available: Decimal
    currency: str
    timezone: str
    billing_mode: str
    credit_limit: Decimal
    topup_min: Decimal
    topup_max: Decimal
    methods: tuple[tuple[str, str], ...]  # (code, title key) of the methods that work
    can_write: bool


def billing_summary(session: Session, actor: Actor) -> BillingSummary:
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    settings = get_settings()
    return BillingSummary(
        balance=ledger.balance(session, org.id), available=ledger.available(session, org),
        currency=org.billing_currency, timezone=org.timezone, billing_mode=str(org.billing_mode),
        credit_limit=org.credit_limit, topup_min=settings.topup_min, topup_max=settings.topup_max,
        methods=tuple((m.code, m.title_key) for m in payment_methods.available()), can_write=access.can_write,
    )


def get_payment(session: Session, actor: Actor, payment_id) -> Payment:
    """One of the organisation's payments; NotFound for a malformed, missing or foreign id."""
    access = can_read(session, actor)
    return load_owned(session, access, Payment, payment_id, "payment", key="error.billing.payment_not_found")


def invoice_pdf(session: Session, actor: Actor, payment_id) -> tuple[str, bytes]:
    """(file name, PDF bytes) of one of the organisation's invoices; NotFound for a foreign id."""
    payment = get_payment(session, actor, payment_id)
    return invoice_filename(payment), render_invoice_pdf(session, payment)


# ---------------------------------------------------------------- creating invoices

def mail_billing_contacts(session: Session, org: Organisation, user_id: int | None, kind: str,
                          context: dict[str, Any], *, attachments=(), dedupe_key: str, now: datetime) -> None:
    """Mail ``kind`` to the user who asked (while active), else to the organisation's
    :data:`BILLING_ROLES`. Flush only."""
    user = session.get(User, user_id) if user_id else None
    if user is not None and user.is_active:
        notifications.notify_user(session, user, kind, context, org_id=org.id, attachments=attachments,
                                  dedupe_key=dedupe_key, now=now)
    else:
        notifications.notify_org_roles(session, org.id, BILLING_ROLES, kind, context, attachments=attachments,
                                       dedupe_key=dedupe_key, now=now)


def create_invoice(session: Session, actor: Actor, org: Organisation, *, kind: str, amount: Decimal,
                   method: payment_methods.PaymentMethod, now: datetime, purpose: str = "",
                   pending_action: dict | None = None) -> Payment:
    """Create a pending payment, start its method, mail the invoice. Flushes; the caller commits."""
    settings = get_settings()
    number = new_number(session, org, now)
    payment = Payment(
        org_id=org.id,
        number=number,
        kind=kind,
        method=method.code,
        amount=amount,
        currency=org.billing_currency,
        status=PaymentStatus.PENDING,
        purpose=(purpose or DEFAULT_PURPOSE.get(kind, ""))[:500],
        due_date=local_today(org, now) + timedelta(days=settings.invoice_due_days),
        pending_action=pending_action,
        created_at=now,
        created_by=actor.user_id,
    )
    session.add(payment)
    session.flush()
    started = method.start(session, payment)
    context = {"invoice_number": number, "amount": amount, "currency": payment.currency,
               "due_date": payment.due_date}
    mail_billing_contacts(session, org, actor.user_id, "invoice_to_pay", context,
                          attachments=started.documents, dedupe_key=f"invoice_to_pay:{payment.id}", now=now)
    audit.record(session, actor, "payment.invoice_created", number=number, amount=str(amount), kind=kind,
                 method=method.code)
    return payment


def request_topup(session: Session, actor: Actor, amount, method: str = "bank_transfer",
                  now: datetime | None = None) -> Payment:
    """A top-up: a pending payment with an invoice to pay, mailed to the requester. Owner/Admin only.

    ``amount``: a positive number with at most two decimals within ``settings.topup_min/max``
    (a string as typed, a Decimal or an int; a float is refused).
    """
    access = can_write(session, actor)
    org = session.get(Organisation, access.org_id)
    settings = get_settings()
    value = parse_amount(amount, org.billing_currency, minimum=settings.topup_min, maximum=settings.topup_max)
    pm = payment_methods.get(method)
    now = now or utcnow()
    try:
        payment = create_invoice(session, actor, org, kind="topup", amount=value, method=pm, now=now)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return payment


def _check_action(action) -> dict:
    if not isinstance(action, dict) or not action:
        raise InvalidInput("pending action must be a non-empty object", field="pending_action",
                           key="error.billing.pending_action_invalid")
    try:
        text = json.dumps(action, default=str)
    except (TypeError, ValueError):
        raise InvalidInput("pending action must be JSON", field="pending_action",
                           key="error.billing.pending_action_invalid") from None
    if len(text) > 10_000:
        raise InvalidInput("pending action too large", field="pending_action", key="error.billing.pending_action_invalid")
    return json.loads(text)


def request_shortfall_invoice(session: Session, actor: Actor, amount, pending_action: dict,
                              method: str = "bank_transfer", now: datetime | None = None,
                              purpose: str = "") -> Payment:
    """An invoice for exactly the missing ``amount``; once it is paid, ``pending_action`` (the
    waiting order or licence increase) is handed to the handler registered with
    ``payments.on_payment_confirmed`` (the subscriptions service).

    The minimum top-up does not apply (the shortfall may be small); the maximum does.
    """
    access = can_write(session, actor)
    org = session.get(Organisation, access.org_id)
    settings = get_settings()
    value = parse_amount(amount, org.billing_currency, maximum=settings.topup_max)
    action = _check_action(pending_action)
    action.setdefault("org_id", org.id)
    if action["org_id"] != org.id:
        raise InvalidInput("pending action of another organisation", field="pending_action",
                           key="error.billing.pending_action_invalid")
    action.setdefault("requested_by", access.user_id)
    action["status"] = "waiting"
    pm = payment_methods.get(method)
    now = now or utcnow()
    try:
        payment = create_invoice(session, actor, org, kind="shortfall", amount=value, method=pm, now=now,
                                 purpose=purpose, pending_action=action)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return payment


# ---------------------------------------------------------------- cancelling

def cancel_payment(session: Session, actor: Actor, payment_id, now: datetime | None = None) -> Payment:
    """Cancel an unpaid invoice nothing was paid on (Owner/Admin)."""
    access = can_write(session, actor)
    payment = load_owned(session, access, Payment, payment_id, "payment")
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.OVERDUE) or payment.paid_amount > 0:
        raise Conflict("only an unpaid invoice can be cancelled", key="error.billing.payment_not_cancellable")
    payment.status = PaymentStatus.CANCELLED
    session.add(payment)
    audit.record(session, actor, "payment.cancelled", number=payment.number)
    session.commit()
    return payment
