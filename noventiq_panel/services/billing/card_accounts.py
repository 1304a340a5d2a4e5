"""What the card gateways (``payme``, ``click``) share: the accounts a card payment pays, and how
its money reaches the ledger.

Accounts. A card payment pays one of two accounts:

- ``org`` — a balance top-up (an accumulative account: any number of payments, each between
  ``settings.card_min`` and ``settings.card_max`` сум). The customer names the organisation by its
  account number (:func:`account_number`: the organisation id padded to six digits and a Luhn check
  digit, so a mistyped number is "not found" rather than another organisation's account). The
  billing page shows it. The gateway's transaction opens a pending top-up ``Payment`` (method
  ``payme``/``click``, number ``PAYME-<id>``/``CLICK-<id>``), so the billing page lists the payment
  as pending until the money arrives.
- ``invoice`` — an issued invoice (a one-time account): its number (``СЧ-2026-000123`` or
  ``2026-000123``) and exactly the amount still to pay. A paid or cancelled invoice is closed.

Only organisations billed in сум (UZS) can pay by card: the gateways move сум.

Money. :func:`post` credits the payment through ``payments.credit`` (the same ledger entry, mail
and history entry as a bank transfer) under the gateway's ledger key (``payme:<id>``,
``click:<id>``), so a repeated call posts nothing more. The caller holds the organisation's lock
(``ledger.lock_organisation``) and commits; :func:`after_commit` then runs what a confirmed payment
starts (a paid shortfall invoice's waiting action, the handlers of money received).
:func:`reverse` takes a performed top-up back, only while the balance still covers it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import (
    CardAccountKind,
    EntryKind,
    LedgerEntry,
    Organisation,
    Payment,
    PaymentStatus,
)
from noventiq_panel.services.billing import payments
from noventiq_panel.services.billing.invoice_document import normalize_number
from noventiq_panel.services.core import audit, ledger
from noventiq_panel.services.core.authz import Actor, can_read, can_write
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.core.money import parse_amount

log = logging.getLogger(__name__)

CARD_CURRENCY = "UZS"
CARD_METHODS = ("payme", "click")
_BODY_DIGITS = 6


# ---------------------------------------------------------------- the organisation's account number

def _luhn_digit(body: str) -> int:
    """The Luhn check digit of the digit string ``body``."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def account_number(org_id: int) -> str:
    """The organisation's account number for card payments (Payme ``ac.org``, Click
    ``transaction_param``): its id padded to six digits and a Luhn check digit (``0000427``)."""
    body = f"{int(org_id):0{_BODY_DIGITS}d}"
    return body + str(_luhn_digit(body))


def parse_account_number(text) -> int | None:
    """The organisation id an account number names, or None (not digits, wrong check digit)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        return None
    raw = str(text).strip().replace(" ", "")
    if not raw.isascii() or not raw.isdigit() or not (_BODY_DIGITS + 1 <= len(raw) <= 18):
        return None
    body, check = raw[:-1], int(raw[-1])
    if _luhn_digit(body) != check:
        return None
    org_id = int(body)
    return org_id if org_id > 0 else None


# ---------------------------------------------------------------- resolving an account

class AccountRefused(Exception):
    """The account cannot be paid: ``reason`` is ``org_not_found``, ``invoice_not_found``,
    ``not_payable`` (not billed in сум, a card payment's own top-up), ``invoice_paid`` or
    ``invoice_cancelled``; ``field`` is the account field at fault."""

    def __init__(self, reason: str, field: str):
        super().__init__(f"{field}: {reason}")
        self.reason = reason
        self.field = field


@dataclass
class Target:
    """A resolved account."""

    kind: str  # CardAccountKind
    org: Organisation
    invoice: Payment | None = None  # kind invoice

    @property
    def due(self) -> Decimal | None:
        """What an invoice still needs (сум), None for a top-up."""
        if self.invoice is None:
            return None
        return self.invoice.amount - (self.invoice.paid_amount or Decimal("0.00"))


def find_org(session: Session, number) -> Organisation:
    """The active organisation with account number ``number``; AccountRefused otherwise."""
    org_id = parse_account_number(number)
    org = session.get(Organisation, org_id) if org_id else None
    if org is None or not org.is_active:
        raise AccountRefused("org_not_found", "org")
    if org.billing_currency != CARD_CURRENCY:
        raise AccountRefused("not_payable", "org")
    return org


def find_invoice(session: Session, number, *, lock: bool = False) -> Target:
    """The invoice named ``number`` and its organisation, whatever its state (see
    :func:`check_open`); AccountRefused when there is no such invoice or it cannot be paid by
    card. ``lock``: read it under a row lock (``payments.lock_payment``)."""
    canonical = normalize_number(number) if isinstance(number, str) else None
    found = session.exec(select(Payment.id).where(Payment.number == canonical)).first() if canonical else None
    if found is None:
        raise AccountRefused("invoice_not_found", "invoice")
    invoice = payments.lock_payment(session, found) if lock else session.get(Payment, found)
    if invoice.method in CARD_METHODS:
        raise AccountRefused("invoice_not_found", "invoice")  # a card top-up is not an invoice
    org = session.get(Organisation, invoice.org_id)
    if org is None or not org.is_active:
        raise AccountRefused("invoice_not_found", "invoice")
    if invoice.currency != CARD_CURRENCY:
        raise AccountRefused("not_payable", "invoice")
    return Target(CardAccountKind.INVOICE.value, org, invoice)


def check_open(target: Target) -> None:
    """AccountRefused when the target invoice takes no more money (paid or cancelled)."""
    invoice = target.invoice
    if invoice is None:
        return
    if invoice.status == PaymentStatus.CANCELLED:
        raise AccountRefused("invoice_cancelled", "invoice")
    if invoice.status == PaymentStatus.PAID or target.due <= 0:
        raise AccountRefused("invoice_paid", "invoice")


def topup_amount_ok(amount: Decimal) -> bool:
    """Whether one card top-up of ``amount`` сум is within the configured limits."""
    settings = get_settings()
    return settings.card_min <= amount <= settings.card_max


# ---------------------------------------------------------------- the billing page

@dataclass(frozen=True)
class CardOptions:
    """What the billing page needs to offer card payments to the caller's organisation."""

    payable: bool  # billed in сум (the gateways move сум only)
    account_number: str
    card_min: Decimal
    card_max: Decimal


def card_options(session: Session, actor: Actor) -> CardOptions:
    """The organisation's account number and the card limits (any member may read them)."""
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    settings = get_settings()
    return CardOptions(org.billing_currency == CARD_CURRENCY and org.is_active, account_number(org.id),
                       settings.card_min, settings.card_max)


@dataclass(frozen=True)
class CardTopup:
    amount: Decimal  # сум
    account_number: str
    return_url: str  # the billing page, where the gateway sends the customer back


def card_topup(session: Session, actor: Actor, amount) -> CardTopup:
    """Check a top-up by card of ``amount`` сум before the customer leaves for the gateway's page
    (Owner/Admin, as any top-up; an organisation billed in сум; within the card limits). Writes
    nothing: the gateway's own calls create the payment."""
    access = can_write(session, actor)
    org = session.get(Organisation, access.org_id)
    if org.billing_currency != CARD_CURRENCY:
        raise InvalidInput("card payments are in сум only", field="method", key="error.billing.card_currency")
    settings = get_settings()
    value = parse_amount(amount, CARD_CURRENCY, minimum=settings.card_min, maximum=settings.card_max)
    return CardTopup(value, account_number(org.id), f"{settings.base_url}/billing")


# ---------------------------------------------------------------- money

def open_topup(session: Session, org: Organisation, amount: Decimal, *, method: str, number: str,
               now: datetime) -> Payment:
    """The pending top-up payment a card transaction opens (flush only)."""
    title = {"payme": "Payme", "click": "Click"}.get(method, method)
    payment = Payment(org_id=org.id, number=number, kind="topup", method=method, amount=amount,
                      currency=org.billing_currency, status=PaymentStatus.PENDING,
                      purpose=f"Пополнение лицевого счёта {account_number(org.id)} картой через {title}",
                      created_at=now)
    session.add(payment)
    session.flush()
    audit.record(session, Actor.system(org.id), "payment.card_started", number=number, amount=str(amount),
                 method=method)
    return payment


def drop_topup(session: Session, payment_id: int | None) -> None:
    """Cancel the pending top-up payment of a card transaction that was cancelled before any money
    (flush only). An invoice is left as it is: it still waits for its money."""
    payment = session.get(Payment, payment_id) if payment_id else None
    if payment is None or payment.method not in CARD_METHODS:
        return
    if payment.status in (PaymentStatus.PENDING, PaymentStatus.OVERDUE) and not payment.paid_amount:
        payment.status = PaymentStatus.CANCELLED
        session.add(payment)
        session.flush()


@dataclass
class Posted:
    entry: LedgerEntry
    payment_id: int
    credited: Decimal
    became_paid: bool


def post(session: Session, org: Organisation, payment_id: int, amount: Decimal, key: str, *, source: str,
         now: datetime) -> Posted:
    """Credit ``amount`` сум for the payment under the ledger key ``key`` (once: the same key again
    credits nothing): ledger entry, ``paid_amount``/status, "payment received" mail and the history
    entry, as ``payments.credit`` does for a bank transfer. The caller holds ``org``'s lock and
    commits."""
    payment = payments.lock_payment(session, payment_id)
    credited, became_paid = payments.credit(session, payment, org, amount, key, now, source)
    entry = ledger.find(session, key)
    return Posted(entry, payment.id, credited, became_paid)


def after_commit(session: Session, posted: Posted, now: datetime) -> None:
    """After the money committed: what a confirmed payment starts (the waiting action of a paid
    shortfall invoice, the handlers of money received), as ``payments.confirm_payment`` does. Their
    failures are logged; the money stays credited and the gateway's answer stands."""
    try:
        if posted.became_paid:
            payments.complete_action(session, posted.payment_id, now)
        elif posted.credited > 0:
            payments.payment_received(session, posted.payment_id, now)
    except Exception:  # the payment is committed: what follows must not change the answer
        session.rollback()
        log.exception("payment %s: follow-up of a card payment failed", posted.payment_id)


def reverse(session: Session, org: Organisation, payment_id: int, amount: Decimal, key: str, *, source: str,
            now: datetime) -> LedgerEntry | None:
    """Take back ``amount`` сум credited for the payment (a gateway cancels a performed payment),
    under ``key``; None, changing nothing, when the balance less what open orders reserve no longer
    covers it (the money was spent or promised). The payment is cancelled (a card top-up) or open again (an invoice). The caller holds
    ``org``'s lock and commits."""
    existing = ledger.find(session, key)
    if existing is not None:
        return existing
    if ledger.balance(session, org.id) - ledger.reserved(session, org.id) < amount:  # reserved: not ours to return
        return None
    payment = payments.lock_payment(session, payment_id)
    entry = ledger.post(session, org_id=org.id, kind=EntryKind.ADJUSTMENT, amount=-amount, idempotency_key=key,
                        description=f"Отмена оплаты {payment.number} ({source})", currency=payment.currency,
                        payment_id=payment.id, occurred_at=now, meta={"source": source, "reversal": True})
    payment.paid_amount = max(Decimal("0.00"), (payment.paid_amount or Decimal("0.00")) - amount)
    if payment.method in CARD_METHODS:
        payment.status = PaymentStatus.CANCELLED
    elif payment.status == PaymentStatus.PAID and payment.paid_amount < payment.amount:
        payment.status = PaymentStatus.PENDING
        payment.paid_at = None
    session.add(payment)
    session.flush()
    audit.record(session, Actor.system(org.id), "payment.reversed", number=payment.number, amount=str(amount),
                 source=source)
    return entry


# ---------------------------------------------------------------- reconciliation

@dataclass(frozen=True)
class Discrepancy:
    """One difference between a provider's statement and our side (transactions and ledger)."""

    reference: str  # the provider's transaction id
    problem: str  # missing_here | missing_there | state | amount | ledger_missing | ledger_unexpected
    detail: str


def ledger_amounts(session: Session, keys) -> dict[str, Decimal]:
    """The amount posted under each of ``keys`` that exists."""
    keys = list(keys)
    found: dict[str, Decimal] = {}
    for i in range(0, len(keys), 500):
        for key, amount in session.exec(select(LedgerEntry.idempotency_key, LedgerEntry.amount)
                                        .where(LedgerEntry.idempotency_key.in_(keys[i:i + 500]))).all():
            found[key] = amount
    return found
