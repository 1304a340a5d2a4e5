"""Postpaid organisations' monthly invoices, and storing ``overdue`` on invoices past due.

- After a month closes in a postpaid organisation's time zone, one invoice for what it was charged
  in that month (:func:`month_charges`: charges + usage − refunds), due like any invoice; one per
  organisation and month (its ``pending_action`` names the period), none for a month without
  charges.
- :func:`mark_overdue` stores ``overdue`` on pending invoices whose due date has passed in the
  organisation's time zone (lists compute it anyway; the reminder job mails the newly overdue).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from noventiq_panel.models import BillingMode, LedgerEntry, Organisation, Payment, PaymentStatus
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import payment_methods
from noventiq_panel.services.billing.invoices import create_invoice
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.clock import local_date, month_bounds, month_start

# The ledger kinds a month's charges are made of (postpaid invoices, closing documents).


def month_charges(session: Session, org: Organisation, month: date) -> Decimal:
    """What the organisation was charged in the month (charges + usage − refunds), a positive figure."""
    start, end = month_bounds(month, org.timezone)
    total = session.exec(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.org_id == org.id, col(LedgerEntry.kind).in_(ledger.CONSUMPTION_KINDS),
            LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)
    ).one()
    return -(total if total is not None else Decimal("0.00"))


def _postpaid_invoice_of(session: Session, org_id: int, month: date) -> Payment | None:
    for payment in session.exec(select(Payment).where(Payment.org_id == org_id, Payment.kind == "postpaid")).all():
        if (payment.pending_action or {}).get("period") == month.isoformat():
            return payment
    return None


def issue_postpaid_invoices(session: Session, month: date, now: datetime | None = None) -> list[Payment]:
    """For each active postpaid organisation, one invoice for the month's charges with a due date.

    Idempotent per organisation and month (the organisation row is locked while checking), skips a
    month that has not closed in the organisation's time zone and a month without charges.
    Returns the invoices created by this call.
    """
    from noventiq_panel.services.billing.pdf import month_title

    now = now or utcnow()
    month = month_start(month)
    org_ids = session.exec(
        select(Organisation.id).where(Organisation.billing_mode == BillingMode.POSTPAID,
                                      Organisation.is_active == True)  # noqa: E712
        .order_by(Organisation.id)
    ).all()
    session.rollback()
    created: list[Payment] = []
    for org_id in org_ids:
        try:
            org = ledger.lock_organisation(session, org_id)
            if now < month_bounds(month, org.timezone)[1]:
                session.rollback()
                continue
            if _postpaid_invoice_of(session, org.id, month) is not None:
                session.rollback()
                continue
            amount = month_charges(session, org, month)
            if amount <= 0:
                session.rollback()
                continue
            payment = create_invoice(
                session, Actor.system(org.id), org, kind="postpaid", amount=amount,
                method=payment_methods.get("bank_transfer"), now=now,
                purpose=f"Облачные услуги за {month_title(month)}",
                pending_action={"type": "postpaid_period", "period": month.isoformat()})
            session.commit()
            created.append(payment)
        except Exception:
            session.rollback()
            raise
    return created


def mark_overdue(session: Session, now: datetime | None = None) -> list[Payment]:
    """Store ``overdue`` on pending payments past their due date (organisation's time zone).
    Returns the ones that became overdue now (the reminder job mails them)."""
    now = now or utcnow()
    horizon = now.date() + timedelta(days=1)  # no time zone is more than a day ahead of UTC
    candidates = session.exec(
        select(Payment).where(Payment.status == PaymentStatus.PENDING, col(Payment.due_date).is_not(None),
                              col(Payment.due_date) < horizon).order_by(col(Payment.id))
    ).all()
    changed: list[Payment] = []
    zones: dict[int, str] = {}
    try:
        for payment in candidates:
            if payment.org_id not in zones:
                zones[payment.org_id] = session.get(Organisation, payment.org_id).timezone
            if payment.due_date < local_date(now, zones[payment.org_id]):
                # Conditional: a payment confirmed meanwhile stays paid.
                result = session.execute(
                    update(Payment).where(Payment.id == payment.id, Payment.status == PaymentStatus.PENDING)
                    .values(status=PaymentStatus.OVERDUE).execution_options(synchronize_session=False))
                if result.rowcount:
                    changed.append(payment)
        session.commit()
        for payment in changed:
            session.refresh(payment)
    except Exception:
        session.rollback()
        raise
    return changed
