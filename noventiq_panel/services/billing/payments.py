"""Payments and invoices to pay: top-ups, shortfall invoices, postpaid monthly invoices, operator
confirmation and bank statement import.

Money rules:
- A payment moves money only through ``ledger.post`` (kind ``topup``) under a deterministic key:
  ``payment:<id>`` for a payment settled in one go (operator confirmation, or one statement line of
  exactly the invoice amount), ``payment:<id>:line:<hash>`` for each other statement line (partial
  payments, over payments) and ``payment:<id>:operator:<paid before>`` for a partial operator
  confirmation. The same money confirmed by the operator and then found in a statement therefore
  credits once; confirming twice credits once.
- ``paid_amount`` accumulates the money received; the status becomes ``paid`` once it covers the
  amount. An over payment is credited in full to the balance.
- ``overdue`` is a pending payment whose due date has passed in the organisation's time zone. Lists
  compute it (a read writes nothing); :func:`mark_overdue` stores it for the reminder job.

Numbers come from a gap-free counter per year (``СЧ-2026-000123``), taken inside the transaction
that creates the payment.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import (
    BillingMode,
    EntryKind,
    LedgerEntry,
    Organisation,
    Payment,
    PaymentStatus,
    Role,
    StatementLine,
    User,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import audit, ledger, numbering
from noventiq_panel.services.billing import payment_methods
from noventiq_panel.services.core.authz import Actor, can_read, can_write, own
from noventiq_panel.services.core.clock import local_date, month_bounds, month_start
from noventiq_panel.services.core.errors import Conflict, DomainError, InvalidInput, NotFound
from noventiq_panel.services.core.money import parse_amount, to_decimal

log = logging.getLogger(__name__)

INVOICE_PREFIX = "СЧ"
STATUSES = tuple(s.value for s in PaymentStatus)
KINDS = ("topup", "shortfall", "postpaid")
CHARGE_KINDS = (EntryKind.CHARGE.value, EntryKind.USAGE.value, EntryKind.REFUND.value)
MAX_PAGE = 200
# Who gets mail about an organisation's money when no requesting user is known.
BILLING_ROLES = (Role.OWNER.value, Role.FINANCE.value)

_NUMBER_RE = re.compile(r"(?:СЧ|CЧ|SCH|SCh|Сч|сч)\s*[-№#]?\s*(\d{4})\s*[-/]\s*(\d{1,6})(?!\d)", re.IGNORECASE)
_BARE_NUMBER_RE = re.compile(r"(?<!\d)(20\d{2})-(\d{6})(?!\d)")


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


@dataclass
class ConfirmResult:
    payment: Payment
    credited: Decimal  # money added to the balance by this call (0 when nothing changed)
    changed: bool
    action_status: str | None = None  # shortfall path: done | failed | unavailable | None


@dataclass
class LineResult:
    line_no: int
    status: str  # imported | duplicate | unmatched | error
    reason: str = ""
    payment_number: str | None = None
    amount: Decimal | None = None
    credited: Decimal = Decimal("0.00")


@dataclass
class ImportReport:
    lines: list[LineResult] = field(default_factory=list)
    paid_numbers: list[str] = field(default_factory=list)  # invoices that became paid

    def _with(self, status: str) -> list[LineResult]:
        return [r for r in self.lines if r.status == status]

    @property
    def imported(self) -> list[LineResult]:
        return self._with("imported")

    @property
    def duplicates(self) -> list[LineResult]:
        return self._with("duplicate")

    @property
    def unmatched(self) -> list[LineResult]:
        return self._with("unmatched")

    @property
    def errors(self) -> list[LineResult]:
        return self._with("error")

    @property
    def credited(self) -> Decimal:
        return sum((r.credited for r in self.lines), Decimal("0.00"))

    def summary(self) -> str:
        return (f"imported {len(self.imported)}, duplicates {len(self.duplicates)}, "
                f"unmatched {len(self.unmatched)}, errors {len(self.errors)}, credited {self.credited}")


# ---------------------------------------------------------------- helpers

def _org(session: Session, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("organisation not found")
    return org


def local_today(org: Organisation, now: datetime | None = None) -> date:
    return local_date(now or utcnow(), org.timezone)


def effective_status(payment: Payment, today: date) -> str:
    if payment.status == PaymentStatus.PENDING and payment.due_date is not None and payment.due_date < today:
        return PaymentStatus.OVERDUE.value
    return str(payment.status)


def to_row(payment: Payment, today: date) -> PaymentRow:
    return PaymentRow(
        id=payment.id, number=payment.number, kind=payment.kind, method=payment.method, amount=payment.amount,
        paid_amount=payment.paid_amount, currency=payment.currency, status=effective_status(payment, today),
        created_at=payment.created_at, due_date=payment.due_date, paid_at=payment.paid_at, purpose=payment.purpose,
    )


def normalize_number(text: str) -> str | None:
    """The invoice number found in ``text`` («сч 2026/123», «СЧ-2026-000123»), canonical, or None."""
    if not isinstance(text, str):
        return None
    match = _NUMBER_RE.search(text) or _BARE_NUMBER_RE.search(text)
    if not match:
        return None
    return f"{INVOICE_PREFIX}-{match.group(1)}-{int(match.group(2)):06d}"


def invoice_filename(payment: Payment) -> str:
    """ASCII file name: ``invoice-2026-000123.pdf``."""
    tail = payment.number.split("-", 1)[1] if "-" in payment.number else str(payment.id)
    return f"invoice-{tail}.pdf"


def _page(offset, limit) -> tuple[int, int]:
    try:
        offset = int(offset)
        limit = int(limit)
    except (TypeError, ValueError):
        raise InvalidInput("offset and limit must be whole numbers", key="error.billing.paging") from None
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be >= 0 and limit >= 1", key="error.billing.paging")
    return offset, min(limit, MAX_PAGE)


def vat_part(amount: Decimal, rate: Decimal) -> Decimal:
    """The VAT included in a gross ``amount`` at ``rate`` percent, half-up to the tiyin."""
    return (Decimal(amount) * Decimal(rate) / (Decimal(100) + Decimal(rate))).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP)


def _new_number(session: Session, org: Organisation, now: datetime) -> str:
    year = local_today(org, now).year
    value = numbering.next_value(session, f"invoice-{year}")
    return f"{INVOICE_PREFIX}-{year}-{value:06d}"


# ---------------------------------------------------------------- the invoice PDF

DEFAULT_PURPOSE = {
    "topup": "Пополнение лицевого счёта (аванс за облачные услуги)",
    "shortfall": "Оплата заказа облачных услуг",
    "postpaid": "Облачные услуги",
}


def render_invoice_pdf(session: Session, payment: Payment) -> bytes:
    """The invoice to pay of ``payment`` (no authorisation: callers check it)."""
    from noventiq_panel.services.billing import pdf

    settings = get_settings()
    org = _org(session, payment.org_id)
    seller = pdf.Party(name=settings.seller_name, tax_id=settings.seller_tax_id, address=settings.seller_address,
                       bank=settings.seller_bank, account=settings.seller_account)
    buyer = pdf.Party(name=org.name, tax_id=org.tax_id, address=org.address, phone=org.phone,
                      bank=org.bank_details)
    vat = vat_part(payment.amount, settings.vat_rate)
    description = payment.purpose or DEFAULT_PURPOSE.get(payment.kind, DEFAULT_PURPOSE["topup"])
    data = pdf.InvoiceData(
        number=payment.number,
        issued_on=local_date(payment.created_at, org.timezone),
        due_date=payment.due_date,
        seller=seller,
        buyer=buyer,
        currency=payment.currency,
        lines=[pdf.Line(description=description, quantity=Decimal(1), unit="усл.", unit_price=payment.amount,
                        amount=payment.amount, vat=vat)],
        total=payment.amount,
        vat_rate=settings.vat_rate,
        vat=vat,
    )
    return pdf.render_invoice(data)


# ---------------------------------------------------------------- listing

def _status_condition(status: str, today: date):
    if status == PaymentStatus.OVERDUE:
        return or_(Payment.status == PaymentStatus.OVERDUE,
                   and_(Payment.status == PaymentStatus.PENDING, col(Payment.due_date) < today))
    if status == PaymentStatus.PENDING:
        return and_(Payment.status == PaymentStatus.PENDING,
                    or_(col(Payment.due_date).is_(None), col(Payment.due_date) >= today))
    return Payment.status == status


def list_payments(session: Session, actor: Actor, *, status: str | None = None, kind: str | None = None,
                  offset: int = 0, limit: int = 20, now: datetime | None = None) -> tuple[list[PaymentRow], int]:
    """The organisation's payments and invoices, newest first, and how many match in all.

    ``status`` filters by the effective status (``overdue`` includes pending ones past due).
    """
    access = can_read(session, actor)
    offset, limit = _page(offset, limit)
    if status not in (None, "") and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}", field="status", key="error.billing.status_unknown")
    if kind not in (None, "") and kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}", field="kind", key="error.billing.kind_unknown")
    org = _org(session, access.org_id)
    today = local_today(org, now)
    conditions = [Payment.org_id == org.id]
    if status:
        conditions.append(_status_condition(status, today))
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
    org = _org(session, access.org_id)
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
    org = _org(session, access.org_id)
    settings = get_settings()
    return BillingSummary(
        balance=ledger.balance(session, org.id), available=ledger.available(session, org),
        currency=org.billing_currency, timezone=org.timezone, billing_mode=str(org.billing_mode),
        credit_limit=org.credit_limit, topup_min=settings.topup_min, topup_max=settings.topup_max,
        methods=tuple((m.code, m.title_key) for m in payment_methods.available()), can_write=access.can_write,
    )


def get_payment(session: Session, actor: Actor, payment_id: int) -> Payment:
    access = can_read(session, actor)
    try:
        payment_id = int(payment_id)
    except (TypeError, ValueError):
        raise NotFound("payment not found", key="error.billing.payment_not_found") from None
    payment = session.get(Payment, payment_id)
    if payment is None or payment.org_id != access.org_id:
        raise NotFound("payment not found", key="error.billing.payment_not_found")
    return payment


def invoice_pdf(session: Session, actor: Actor, payment_id: int) -> tuple[str, bytes]:
    """(file name, PDF bytes) of one of the organisation's invoices; NotFound for a foreign id."""
    payment = get_payment(session, actor, payment_id)
    return invoice_filename(payment), render_invoice_pdf(session, payment)


# ---------------------------------------------------------------- creating invoices

def _mail_to_requester_or_roles(session: Session, org: Organisation, user_id: int | None, kind: str,
                                context: dict[str, Any], *, attachments=(), dedupe_key: str,
                                now: datetime) -> None:
    from noventiq_panel.services.notify import notifications

    user = session.get(User, user_id) if user_id else None
    if user is not None and user.is_active:
        notifications.notify_user(session, user, kind, context, org_id=org.id, attachments=attachments,
                                  dedupe_key=dedupe_key, now=now)
    else:
        notifications.notify_org_roles(session, org.id, BILLING_ROLES, kind, context, attachments=attachments,
                                       dedupe_key=dedupe_key, now=now)


def _create_invoice(session: Session, actor: Actor, org: Organisation, *, kind: str, amount: Decimal,
                    method: payment_methods.PaymentMethod, now: datetime, purpose: str = "",
                    pending_action: dict | None = None) -> Payment:
    """Create a pending payment, start its method, mail the invoice. Flushes; the caller commits."""
    settings = get_settings()
    number = _new_number(session, org, now)
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
    _mail_to_requester_or_roles(session, org, actor.user_id, "invoice_to_pay", context,
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
    org = _org(session, access.org_id)
    settings = get_settings()
    value = parse_amount(amount, org.billing_currency, minimum=settings.topup_min, maximum=settings.topup_max)
    pm = payment_methods.get(method)
    now = now or utcnow()
    try:
        payment = _create_invoice(session, actor, org, kind="topup", amount=value, method=pm, now=now)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return payment


def _check_action(action) -> dict:
    import json

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
    waiting order or licence increase) is completed by ``subscriptions.complete_pending_action``.

    The minimum top-up does not apply (the shortfall may be small); the maximum does.
    """
    access = can_write(session, actor)
    org = _org(session, access.org_id)
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
        payment = _create_invoice(session, actor, org, kind="shortfall", amount=value, method=pm, now=now,
                                  purpose=purpose, pending_action=action)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return payment


# ---------------------------------------------------------------- receiving money

def _lock_payment(session: Session, payment_id: int) -> Payment:
    payment = session.exec(
        select(Payment).where(Payment.id == payment_id).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if payment is None:
        raise NotFound("payment not found", key="error.billing.payment_not_found")
    return payment


def _credit(session: Session, payment: Payment, org: Organisation, amount: Decimal, key: str, now: datetime,
            source: str, *, line_hash: str | None = None) -> tuple[Decimal, bool]:
    """Post ``amount`` for ``payment`` under ``key`` unless that key was posted already.

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
    _mail_to_requester_or_roles(session, org, payment.created_by, "payment_received", context,
                                dedupe_key=f"payment_received:{key}", now=now)
    audit.record(session, Actor.system(org.id), "payment.received", number=payment.number, amount=str(amount),
                 source=source, paid=became_paid)
    return amount, became_paid


def _complete_action(session: Session, payment_id: int, now: datetime) -> str | None:
    """Run the shortfall invoice's waiting action once it is paid. Its own transaction(s).

    Returns "done", "failed" (a domain error: the money stays on the balance), "unavailable" (the
    subscriptions service has no ``complete_pending_action``: it stays waiting and a later
    confirmation retries) or None when there is nothing to do.
    """
    payment = session.get(Payment, payment_id)
    if payment is None or payment.kind != "shortfall" or payment.status != PaymentStatus.PAID:
        return None
    action = dict(payment.pending_action or {})
    if not action or action.get("status") in ("done", "failed"):
        return action.get("status") if action else None
    try:
        from noventiq_panel.services.subscriptions import subscriptions

        complete = subscriptions.complete_pending_action
    except (ImportError, AttributeError):
        log.warning("payment %s paid; subscriptions.complete_pending_action is not available yet", payment.number)
        return "unavailable"
    try:
        complete(session, dict(action), now)
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
                    source: str = "operator") -> ConfirmResult:
    """The operator confirms that money for invoice ``number`` arrived (CLI).

    Without ``amount``: the rest of the invoice is credited under ``payment:<id>`` and it is paid.
    With ``amount``: that much arrived (a partial payment or an over payment). Confirming an invoice
    that is already paid changes nothing. A cancelled invoice is refused (Conflict).
    """
    now = now or utcnow()
    canonical = normalize_number(number) or (number or "").strip()
    try:
        found = session.exec(select(Payment.id).where(Payment.number == canonical)).first()
        if found is None:
            raise NotFound(f"payment {number!r} not found", key="error.billing.payment_not_found", number=number)
        org = ledger.lock_organisation(session, session.get(Payment, found).org_id)
        payment = _lock_payment(session, found)
        if payment.status == PaymentStatus.CANCELLED:
            raise Conflict(f"payment {payment.number} is cancelled", key="error.billing.payment_cancelled",
                           number=payment.number)
        if payment.status == PaymentStatus.PAID:
            session.rollback()
            return ConfirmResult(payment, Decimal("0.00"), False, _complete_action(session, payment.id, now))
        paid_before = payment.paid_amount or Decimal("0.00")
        remaining = payment.amount - paid_before
        if amount is None:
            credit = remaining
        else:
            credit = parse_amount(amount, payment.currency)
        if paid_before == 0 and credit >= payment.amount:
            key = f"payment:{payment.id}"
        else:
            key = f"payment:{payment.id}:operator:{paid_before}"
        credited, became_paid = _credit(session, payment, org, credit, key, now, source)
        session.commit()
    except Exception:
        session.rollback()
        raise
    action_status = _complete_action(session, payment.id, now) if became_paid else None
    session.refresh(payment)
    return ConfirmResult(payment, credited, credited > 0, action_status)


def cancel_payment(session: Session, actor: Actor, payment_id: int, now: datetime | None = None) -> Payment:
    """Cancel an unpaid invoice nothing was paid on (Owner/Admin)."""
    access = can_write(session, actor)
    payment = own(session.get(Payment, int(payment_id)) if str(payment_id).isdigit() else None, access, "payment")
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.OVERDUE) or payment.paid_amount > 0:
        raise Conflict("only an unpaid invoice can be cancelled", key="error.billing.payment_not_cancellable")
    payment.status = PaymentStatus.CANCELLED
    session.add(payment)
    audit.record(session, actor, "payment.cancelled", number=payment.number)
    session.commit()
    return payment


# ---------------------------------------------------------------- bank statement import

_HEADERS = {
    "date": ("date", "value_date", "дата", "дата платежа", "дата операции"),
    "amount": ("amount", "sum", "сумма", "сумма платежа"),
    "payer_tax_id": ("payer_tax_id", "payer tax id", "tax_id", "inn", "payer_inn", "инн", "инн плательщика"),
    "purpose": ("purpose", "description", "назначение", "назначение платежа"),
}
_ORDER = ("date", "amount", "payer_tax_id", "purpose")


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput("the statement is neither UTF-8 nor Windows-1251 text", key="error.billing.statement_unreadable")


def _read_statement(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            return _decode(path.read_bytes())
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}", key="error.billing.statement_unreadable") from None
    raise InvalidInput("a statement is CSV bytes or a file path", key="error.billing.statement_unreadable")


def _delimiter(text: str) -> str:
    """``;``, tab or ``,``: the first that splits the first non-empty line into the four fields."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    for candidate in (";", "\t", ","):
        try:
            if len(next(csv.reader([first], delimiter=candidate))) >= len(_ORDER):
                return candidate
        except (csv.Error, StopIteration):
            continue
    return ","


def _parse_date(text: str) -> date:
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%d.%m.%y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"bad date {text!r}")


def _parse_line_amount(text: str) -> Decimal:
    value = to_decimal(text)
    if value <= 0:
        raise ValueError(f"amount must be positive: {text!r}")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"amount has more than 2 decimals: {text!r}")
    if value > Decimal("1000000000000"):
        raise ValueError(f"amount too large: {text!r}")
    return value.quantize(Decimal("0.01"))


def line_hash(value_date: date, amount: Decimal, payer_tax_id: str, purpose: str) -> str:
    """The identity of a statement line: its fields, not its position in the file."""
    canonical = "|".join([value_date.isoformat(), f"{amount:.2f}", payer_tax_id.strip(),
                          " ".join(purpose.split()).casefold()])
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _columns(header: list[str]) -> dict[str, int] | None:
    names = [h.strip().strip("\ufeff").lower() for h in header]
    mapping: dict[str, int] = {}
    for key, aliases in _HEADERS.items():
        for i, name in enumerate(names):
            if name in aliases:
                mapping[key] = i
                break
    return mapping


def _match(session: Session, tax_id: str, purpose: str) -> tuple[Payment | None, str]:
    number = normalize_number(purpose)
    if number is None:
        return None, "no invoice number in the purpose"
    payment = session.exec(select(Payment).where(Payment.number == number)).first()
    if payment is None:
        return None, f"invoice {number} not found"
    org = session.get(Organisation, payment.org_id)
    if not org.tax_id:
        return None, f"invoice {number}: the organisation has no tax id to compare"
    if tax_id != org.tax_id:
        return None, f"invoice {number}: payer tax id {tax_id or '(empty)'} is not the organisation's"
    return payment, ""


def import_statement(session: Session, csv_bytes_or_path, now: datetime | None = None) -> ImportReport:
    """Import a bank statement (CSV: date, amount, payer tax id, purpose with the invoice number).

    A header row is optional (names: date/amount/payer_tax_id/purpose or Russian ones); the
    delimiter may be ``,`` ``;`` or a tab. Each line is matched by the invoice number in its purpose
    and the payer's tax id (must be the organisation's). Matched lines credit the balance (partial
    and over payments included); a line already imported (same fields, anywhere in any file) is a
    duplicate and changes nothing; unmatched and bad lines are reported with their line numbers and
    the good ones are imported all the same.
    """
    now = now or utcnow()
    text = _read_statement(csv_bytes_or_path)
    report = ImportReport()
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    columns: dict[str, int] | None = None
    newly_paid: list[int] = []
    try:
        for row in reader:
            line_no = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if columns is None:
                try:
                    _parse_date(row[0])
                    columns = {k: i for i, k in enumerate(_ORDER)}  # no header: fixed order
                except ValueError:
                    columns = _columns(row)
                    missing = [k for k in _ORDER if k not in columns]
                    if missing:
                        raise InvalidInput(f"statement header lacks {', '.join(missing)}",
                                           key="error.billing.statement_header", missing=", ".join(missing))
                    continue
            result = _import_line(session, row, line_no, columns, now, newly_paid)
            report.lines.append(result)
        session.commit()
    except Exception:
        session.rollback()
        raise
    for payment_id in newly_paid:
        payment = session.get(Payment, payment_id)
        report.paid_numbers.append(payment.number)
        _complete_action(session, payment_id, now)
    return report


def _import_line(session: Session, row: list[str], line_no: int, columns: dict[str, int], now: datetime,
                 newly_paid: list[int]) -> LineResult:
    try:
        cells = {k: row[i] if i < len(row) else None for k, i in columns.items()}
        if any(value is None for value in cells.values()):
            raise ValueError(f"expected {len(_ORDER)} fields, got {len(row)}")
        value_date = _parse_date(cells["date"])
        amount = _parse_line_amount(cells["amount"])
        tax_id = (cells["payer_tax_id"] or "").strip()
        purpose = " ".join((cells["purpose"] or "").split())
        if len(purpose) > 500 or len(tax_id) > 32:
            raise ValueError("purpose or tax id too long")
    except (ValueError, InvalidInput) as exc:
        return LineResult(line_no, "error", str(exc))
    digest = line_hash(value_date, amount, tax_id, purpose)
    if session.exec(select(StatementLine.id).where(StatementLine.line_hash == digest)).first() is not None:
        return LineResult(line_no, "duplicate", "already imported", amount=amount)
    payment, reason = _match(session, tax_id, purpose)
    if payment is None:
        return LineResult(line_no, "unmatched", reason, payment_number=normalize_number(purpose), amount=amount)
    org = ledger.lock_organisation(session, payment.org_id)
    payment = _lock_payment(session, payment.id)
    earlier_lines = session.exec(
        select(func.count()).select_from(StatementLine).where(StatementLine.payment_id == payment.id)).one()
    try:
        with session.begin_nested():
            session.add(StatementLine(line_hash=digest, value_date=value_date, amount=amount, payer_tax_id=tax_id,
                                      purpose=purpose, payment_id=payment.id, imported_at=now))
            session.flush()
    except IntegrityError:
        return LineResult(line_no, "duplicate", "already imported", amount=amount)
    if earlier_lines == 0 and amount == payment.amount:
        key = f"payment:{payment.id}"  # the same money the operator may have confirmed by hand
    else:
        key = f"payment:{payment.id}:line:{digest[:32]}"
    credited, became_paid = _credit(session, payment, org, amount, key, now, "statement", line_hash=digest)
    if became_paid:
        newly_paid.append(payment.id)
    notes = []
    if credited == 0:
        notes.append("already confirmed by the operator")
    if payment.status == PaymentStatus.CANCELLED:
        notes.append("invoice cancelled: credited to the balance")
    elif payment.paid_amount > payment.amount and credited > 0:
        notes.append(f"over payment by {payment.paid_amount - payment.amount}: credited to the balance")
    elif payment.paid_amount < payment.amount:
        notes.append(f"partial payment, {payment.amount - payment.paid_amount} still due")
    return LineResult(line_no, "imported", "; ".join(notes), payment_number=payment.number, amount=amount,
                      credited=credited)


# ---------------------------------------------------------------- postpaid and overdue

def month_charges(session: Session, org: Organisation, month: date) -> Decimal:
    """What the organisation was charged in the month (charges + usage − refunds), a positive figure."""
    start, end = month_bounds(month, org.timezone)
    total = session.exec(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.org_id == org.id, col(LedgerEntry.kind).in_(CHARGE_KINDS),
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
            payment = _create_invoice(
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
                zones[payment.org_id] = _org(session, payment.org_id).timezone
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
