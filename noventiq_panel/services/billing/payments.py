"""Money received for an invoice: crediting the balance, operator confirmation, and the waiting
action of a paid shortfall invoice.

Money rules:
- A payment moves money only through ``ledger.post`` (kind ``topup``) under a deterministic key:
  ``payment:<id>`` for a payment settled in one go (operator confirmation, or one statement line of
  exactly the invoice amount), ``payment:<id>:line:<hash>`` for each other statement line (partial
  payments, over payments) and ``payment:<id>:operator:<paid before>`` for a partial operator
  confirmation. The same money confirmed by the operator and then found in a statement therefore
  credits once; confirming twice credits once. A part payment confirmed by hand and a part that
  came through a statement line cannot be told apart by their keys: crediting one after the
  other is refused unless the operator says it is more money (:func:`require_no_other_part`).
- ``paid_amount`` accumulates the money received; the status becomes ``paid`` once it covers the
  amount. An over payment is credited in full to the balance.

The waiting action. A shortfall invoice carries a ``pending_action`` (an order or a licence
increase) that the subscriptions service carries out once the invoice is paid. Billing sits below
subscriptions and does not import it: the subscriptions area registers its handler here with
:func:`on_payment_confirmed` when it is imported, and :func:`complete_action` calls it after the
payment's own transaction has committed (the money stays credited whatever happens next). The
handler commits its own work; then the action is stored ``done``, or ``failed`` with the domain
error's key when it cannot be carried out now (the money stays on the balance). While no handler
is registered (a process that never imported the subscriptions area) the action stays
``waiting`` and the next confirmation of the invoice runs it. Callers that confirm payments (the
CLI) import the subscriptions area first.

Money received. Other areas react to any money credited (a top-up may bring an overdrawn balance
back: credit control resumes what it suspended). They register with :func:`on_payment_received`
(a list, called in registration order); :func:`complete_action` calls them after the payment's
transaction has committed and after the waiting action, each with ``(session, payment, now)``. Each
commits its own work; one that raises is logged and rolled back, and neither the payment nor the
next handler is affected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, select

from noventiq_panel.models import EntryKind, LedgerEntry, Organisation, Payment, PaymentStatus
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing.invoice_document import normalize_number
from noventiq_panel.services.billing.invoices import mail_billing_contacts
from noventiq_panel.services.core import audit, ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, DomainError, NotFound
from noventiq_panel.services.core.money import parse_amount

log = logging.getLogger(__name__)

PendingActionHandler = Callable[[Session, dict, datetime], object]
"""``handler(session, action, now)``: carry out a paid invoice's waiting action and commit; raise a
``DomainError`` when it cannot be carried out now (having changed nothing)."""

_handler: PendingActionHandler | None = None


def on_payment_confirmed(handler: PendingActionHandler) -> PendingActionHandler:
    """Register the handler of the waiting actions of paid shortfall invoices (one; a later
    registration replaces it). Returns ``handler``, so it can decorate the function."""
    global _handler
    _handler = handler
    return handler


PaymentHandler = Callable[[Session, Payment, datetime], object]
"""``handler(session, payment, now)``: react to money credited for ``payment`` (committed); commits
its own work."""

_received: list[PaymentHandler] = []


def on_payment_received(handler: PaymentHandler) -> PaymentHandler:
    """Add a handler of money received (module documentation); they run in registration order.
    Registering the same handler again changes nothing. Returns ``handler`` (a decorator)."""
    if handler not in _received:
        _received.append(handler)
    return handler


def payment_received(session: Session, payment_id: int, now: datetime) -> None:
    """Run the handlers of money received for ``payment_id``, after its transaction committed."""
    for handler in list(_received):
        payment = session.get(Payment, payment_id)
        if payment is None:
            return
        try:
            handler(session, payment, now)
        except Exception:
            session.rollback()
            log.exception("payment %s: handler %s of money received failed", payment_id,
                          getattr(handler, "__qualname__", handler))


@dataclass
class ConfirmResult:
    payment: Payment
    credited: Decimal  # money added to the balance by this call (0 when nothing changed)
    changed: bool
    action_status: str | None = None  # shortfall path: done | failed | unavailable | error | None


def lock_payment(session: Session, payment_id: int) -> Payment:
    """The payment, read again under a row lock (PostgreSQL; SQLite holds the write lock)."""
    payment = session.exec(
        select(Payment).where(Payment.id == payment_id).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if payment is None:
        raise NotFound("payment not found", key="error.billing.payment_not_found")
    return payment


OPERATOR_PART = "operator"  # payment:<id>:operator:<paid before>
STATEMENT_PART = "line"  # payment:<id>:line:<hash>, statement:<line id> (an assigned line)


def has_part(session: Session, payment: Payment, channel: str) -> bool:
    """Whether ``channel`` (``OPERATOR_PART`` or ``STATEMENT_PART``) credited a part of ``payment``."""
    keys = session.exec(select(LedgerEntry.idempotency_key).where(LedgerEntry.payment_id == payment.id)).all()
    prefix = f"payment:{payment.id}:{channel}:"
    return any(k and (k.startswith(prefix) or (channel == STATEMENT_PART and k.startswith("statement:"))) for k in keys)


def require_no_other_part(session: Session, payment: Payment, channel: str, over_payment: bool) -> None:
    """Before a part payment of ``payment`` is credited through ``channel`` (``OPERATOR_PART``: a
    confirmation by hand; ``STATEMENT_PART``: a bank statement line): Conflict
    ``error.billing.part_payment_elsewhere`` when the other channel already credited a part of it
    — it may be the same money — unless the operator says this is more money (``over_payment``)."""
    if over_payment:
        return
    other = STATEMENT_PART if channel == OPERATOR_PART else OPERATOR_PART
    if has_part(session, payment, other):
        raise Conflict(f"invoice {payment.number} has part payments credited "
                       f"{'from the bank statement' if other == STATEMENT_PART else 'by hand'}; "
                       "if this is more money, say it is an over payment", key="error.billing.part_payment_elsewhere",
                       number=payment.number)


def credit(session: Session, payment: Payment, org: Organisation, amount: Decimal, key: str, now: datetime,
           source: str, *, line_hash: str | None = None) -> tuple[Decimal, bool]:
    """Post ``amount`` for ``payment`` under ``key`` unless that key was posted already; mail the
    receipt and record it. The caller holds the organisation's and the payment's locks.

    Returns (credited, became_paid). Flush only.
    """
    if ledger.find(session, key) is not None:
        return Decimal("0.00"), False
    meta = {"source": source}
    if line_hash:
        meta["statement_line"] = line_hash
    ledger.post(session, org_id=org.id, kind=EntryKind.TOPUP, amount=amount, idempotency_key=key,
                description=f"Оплата по счёту {payment.number}", currency=payment.currency, payment_id=payment.id,
                occurred_at=now, meta=meta)
    payment.paid_amount = (payment.paid_amount or Decimal("0.00")) + amount
    became_paid = False
    if payment.status in (PaymentStatus.PENDING, PaymentStatus.OVERDUE, PaymentStatus.FAILED) \
            and payment.paid_amount >= payment.amount:
        payment.status = PaymentStatus.PAID
        payment.paid_at = now
        became_paid = True
    session.add(payment)
    session.flush()
    context = {"amount": amount, "currency": payment.currency, "balance": ledger.balance(session, org.id),
               "method": payment.method}
    mail_billing_contacts(session, org, payment.created_by, "payment_received", context,
                          dedupe_key=f"payment_received:{key}", now=now)
    audit.record(session, Actor.system(org.id), "payment.received", number=payment.number, amount=str(amount),
                 source=source, paid=became_paid)
    return amount, became_paid


def complete_action(session: Session, payment_id: int, now: datetime, *, received: bool = True) -> str | None:
    """Run the paid shortfall invoice's waiting action (module documentation), then, with
    ``received``, the handlers of money received. Its own transaction(s).

    Returns "done", "failed" (a domain error: the money stays on the balance), "unavailable" (no
    handler registered: it stays waiting and a later confirmation retries), "error" (the handler
    raised something else: it stays waiting) or None when there is nothing to do.
    """
    status = _waiting_action(session, payment_id, now)
    if received:
        payment_received(session, payment_id, now)
    return status


def _waiting_action(session: Session, payment_id: int, now: datetime) -> str | None:
    payment = session.get(Payment, payment_id)
    if payment is None or payment.kind != "shortfall" or payment.status != PaymentStatus.PAID:
        return None
    action = dict(payment.pending_action or {})
    if not action or action.get("status") in ("done", "failed"):
        return action.get("status") if action else None
    if _handler is None:
        log.warning("payment %s paid; no handler of waiting actions is registered", payment.number)
        return "unavailable"
    try:
        _handler(session, dict(action), now)
        session.flush()
    except DomainError as exc:
        session.rollback()
        payment = session.get(Payment, payment_id)
        payment.pending_action = {**action, "status": "failed", "error": exc.key, "message": str(exc)[:300]}
        session.add(payment)
        session.commit()
        log.warning("payment %s: pending action failed: %s", payment.number, exc)
        return "failed"
    except Exception:
        session.rollback()
        log.exception("payment %s: pending action raised; it stays waiting", payment_id)
        return "error"
    payment = session.get(Payment, payment_id)
    payment.pending_action = {**action, "status": "done", "done_at": now.isoformat()}
    session.add(payment)
    session.commit()
    return "done"


def confirm_payment(session: Session, number: str, *, amount=None, now: datetime | None = None,
                    source: str = "operator", over_payment: bool = False) -> ConfirmResult:
    """The operator confirms that money for invoice ``number`` arrived (CLI).

    Without ``amount``: the rest of the invoice is credited under ``payment:<id>`` and it is paid.
    With ``amount``: that much arrived (a partial payment or an over payment). Confirming an invoice
    that is already paid changes nothing. A cancelled invoice is refused (Conflict). A part
    confirmed by hand after a statement line credited a part is refused unless ``over_payment``
    (:func:`require_no_other_part`).
    """
    now = now or utcnow()
    canonical = normalize_number(number) or (number or "").strip()
    try:
        found = session.exec(select(Payment.id).where(Payment.number == canonical)).first()
        if found is None:
            raise NotFound(f"payment {number!r} not found", key="error.billing.payment_not_found", number=number)
        org = ledger.lock_organisation(session, session.get(Payment, found).org_id)
        payment = lock_payment(session, found)
        if payment.status == PaymentStatus.CANCELLED:
            raise Conflict(f"payment {payment.number} is cancelled", key="error.billing.payment_cancelled",
                           number=payment.number)
        if payment.status == PaymentStatus.PAID:
            session.rollback()
            return ConfirmResult(payment, Decimal("0.00"), False,
                                 complete_action(session, payment.id, now, received=False))
        paid_before = payment.paid_amount or Decimal("0.00")
        remaining = payment.amount - paid_before
        if amount is None:
            credit_amount = remaining
        else:
            credit_amount = parse_amount(amount, payment.currency)
        if paid_before == 0 and credit_amount >= payment.amount:
            key = f"payment:{payment.id}"
        else:  # "this much (or the rest) arrived": maybe the part a statement line brought
            require_no_other_part(session, payment, OPERATOR_PART, over_payment)
            key = f"payment:{payment.id}:{OPERATOR_PART}:{paid_before}"
        credited, became_paid = credit(session, payment, org, credit_amount, key, now, source)
        session.commit()
    except Exception:
        session.rollback()
        raise
    if became_paid:
        action_status = complete_action(session, payment.id, now)
    else:
        action_status = None
        if credited > 0:
            payment_received(session, payment.id, now)
    session.refresh(payment)
    return ConfirmResult(payment, credited, credited > 0, action_status)
