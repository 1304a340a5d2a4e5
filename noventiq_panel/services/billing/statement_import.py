"""Bank statement import: each line of the bank's CSV is matched to an invoice and credited, or
put on the review list.

- **Credited on import** only when everything agrees: the invoice number in the purpose
  (``invoice_document.normalize_number``) names an invoice still to be paid, the payer's tax id
  is the organisation's, and the amount is exactly what is still due on it. Credited through
  ``payments.credit`` under ``payment:<id>`` when it is the invoice's first money (the key an
  operator confirmation uses, so the same money credits once), else ``payment:<id>:line:<hash>``.
- **Anything else waits for an operator** (status ``review``, with the reason): no number, an
  unknown invoice, another payer's tax id, a partial or an over payment, an invoice already paid
  or cancelled. Nobody's balance changes until :func:`assign` credits it to an invoice or
  :func:`reject` sets it aside (CLI ``payments review|assign|reject``): a self-declared tax id or
  a look-alike purpose never moves a payment to another customer's balance.
- A line's identity is the hash of its fields (:func:`line_hash`), not its position: a line
  already imported, in this file or any earlier one, is a duplicate and changes nothing.
- Unreadable lines are reported with their line numbers; the good ones are imported all the
  same, in one transaction. Invoices that became paid then have their waiting action completed
  (``payments.complete_action``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from noventiq_panel.models import Organisation, Payment, PaymentStatus, StatementLine, StatementLineStatus
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing.invoice_document import normalize_number
from noventiq_panel.services.billing.payments import (
    OPERATOR_PART,
    STATEMENT_PART,
    complete_action,
    credit,
    has_part,
    lock_payment,
    require_no_other_part,
)
from noventiq_panel.services.core import audit, ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, InvalidInput, NotFound
from noventiq_panel.services.core.money import to_decimal


@dataclass
class LineResult:
    line_no: int
    status: str  # imported | duplicate | review | error
    reason: str = ""
    payment_number: str | None = None
    amount: Decimal | None = None
    credited: Decimal = Decimal("0.00")


def _lines_with(status: str) -> property:
    return property(lambda self: [r for r in self.lines if r.status == status], doc=f"The lines {status}.")


@dataclass
class ImportReport:
    lines: list[LineResult] = field(default_factory=list)
    paid_numbers: list[str] = field(default_factory=list)  # invoices that became paid

    imported = _lines_with("imported")
    duplicates = _lines_with("duplicate")
    review = _lines_with("review")
    errors = _lines_with("error")

    @property
    def credited(self) -> Decimal:
        return sum((r.credited for r in self.lines), Decimal("0.00"))

    def summary(self) -> str:
        return (f"imported {len(self.imported)}, duplicates {len(self.duplicates)}, "
                f"for review {len(self.review)}, errors {len(self.errors)}, credited {self.credited}")


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


def _match(session: Session, tax_id: str, purpose: str, amount: Decimal) -> tuple[Payment | None, str]:
    """The invoice the line pays, and "" when it may be credited at once; else the candidate
    invoice (or None) and why the line waits for an operator."""
    number = normalize_number(purpose)
    if number is None:
        return None, "no invoice number in the purpose"
    payment = session.exec(select(Payment).where(Payment.number == number)).first()
    if payment is None:
        return None, f"invoice {number} not found"
    org = session.get(Organisation, payment.org_id)
    if not org.tax_id or tax_id != org.tax_id:
        return payment, f"invoice {number}: payer tax id {tax_id or '(empty)'} is not the organisation's"
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.OVERDUE, PaymentStatus.FAILED):
        return payment, f"invoice {number} is {payment.status}"
    due = payment.amount - (payment.paid_amount or Decimal("0.00"))
    if amount != due:
        return payment, f"invoice {number}: {amount} received, {due} due"
    if has_part(session, payment, OPERATOR_PART):  # the operator's part may be this very money
        return payment, f"invoice {number}: a part was confirmed by hand; is this line more money?"
    return payment, ""


def import_statement(session: Session, csv_bytes_or_path, now: datetime | None = None) -> ImportReport:
    """Import a bank statement (CSV: date, amount, payer tax id, purpose with the invoice number).

    A header row is optional (names: date/amount/payer_tax_id/purpose or Russian ones); the
    delimiter may be ``,`` ``;`` or a tab. Each line is matched by the invoice number in its purpose
    and credited only when the payer's tax id and the amount due agree too; any other line waits on
    the review list (see the module docstring). A line already imported (same fields, anywhere in
    any file) is a duplicate and changes nothing; bad lines are reported with their line numbers
    and the good ones are imported all the same.
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
        complete_action(session, payment_id, now)
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
    fields = dict(line_hash=digest, value_date=value_date, amount=amount, payer_tax_id=tax_id, purpose=purpose,
                  imported_at=now)
    payment, reason = _match(session, tax_id, purpose, amount)
    if not reason:
        org = ledger.lock_organisation(session, payment.org_id)
        payment = lock_payment(session, payment.id)
        payment, reason = _match(session, tax_id, purpose, amount)  # again, under the locks
    if reason:
        if not _store(session, StatementLine(**fields, payment_id=payment.id if payment else None,
                                             status=StatementLineStatus.REVIEW, reason=reason[:500])):
            return LineResult(line_no, "duplicate", "already imported", amount=amount)
        return LineResult(line_no, "review", reason, payment_number=normalize_number(purpose), amount=amount)
    line = StatementLine(**fields, payment_id=payment.id)
    if not _store(session, line):
        return LineResult(line_no, "duplicate", "already imported", amount=amount)
    credited, became_paid = _credit(session, payment, org, line, now)
    if became_paid:
        newly_paid.append(payment.id)
    return LineResult(line_no, "imported", "" if credited else "already confirmed by the operator",
                      payment_number=payment.number, amount=amount, credited=credited)


def _store(session: Session, line: StatementLine) -> bool:
    """Record the line; False when the same line was imported at the same moment."""
    try:
        with session.begin_nested():
            session.add(line)
            session.flush()
    except IntegrityError:
        return False
    return True


def _first_full_payment(payment: Payment, line: StatementLine) -> bool:
    return not payment.paid_amount and line.amount == payment.amount


def _credit(session: Session, payment: Payment, org: Organisation, line: StatementLine,
            now: datetime, source: str = "statement") -> tuple[Decimal, bool]:
    """Credit ``line`` to ``payment`` (both locked): ``payment:<id>`` for the invoice's first
    money, else ``payment:<id>:line:<hash>``."""
    if _first_full_payment(payment, line):
        key = f"payment:{payment.id}"  # the same money the operator may have confirmed by hand
    else:
        key = f"payment:{payment.id}:{STATEMENT_PART}:{line.line_hash[:32]}"
    return credit(session, payment, org, line.amount, key, now, source, line_hash=line.line_hash)


# --- the review list -------------------------------------------------------------------------

def review_list(session: Session, *, status: str = StatementLineStatus.REVIEW, limit: int = 100) -> list[StatementLine]:
    """Statement lines waiting for an operator (or of another status), oldest first."""
    rows = session.exec(select(StatementLine).where(StatementLine.status == status)
                        .order_by(StatementLine.id).limit(limit)).all()
    session.rollback()
    return list(rows)


def _waiting_line(session: Session, line_id) -> StatementLine:
    line = session.get(StatementLine, line_id) if isinstance(line_id, int) and not isinstance(line_id, bool) else None
    if line is None:
        raise NotFound("statement line not found", key="error.billing.statement_line_not_found")
    if line.status != StatementLineStatus.REVIEW:
        raise Conflict(f"statement line {line.id} is {line.status}", key="error.billing.statement_line_decided")
    return line


def assign(session: Session, line_id: int, invoice_number: str, *, note: str = "", over_payment: bool = False,
           now: datetime | None = None) -> LineResult:
    """An operator's decision: the line is a payment of ``invoice_number``; its amount is credited
    to that invoice's organisation (whatever the payer's tax id said), once, under the keys of
    :func:`_credit` (so an operator's confirmation of the same money credits nothing more). An
    invoice already paid or cancelled is refused (Conflict ``error.billing.statement_invoice_settled``:
    the money may be the same the operator confirmed by hand) unless ``over_payment`` says the
    customer really paid again; the line's amount then goes to the balance under
    ``statement:<line>``. Commits; completes the invoice's waiting action when it became paid."""
    now = now or utcnow()
    try:
        line = _waiting_line(session, line_id)
        number = normalize_number(str(invoice_number or "")) or str(invoice_number or "").strip()
        payment = session.exec(select(Payment).where(Payment.number == number)).first()
        if payment is None:
            raise NotFound(f"invoice {number!r} not found", key="error.billing.payment_not_found", number=number)
        org = ledger.lock_organisation(session, payment.org_id)
        payment = lock_payment(session, payment.id)
        line = session.get(StatementLine, line.id, populate_existing=True, with_for_update=True)
        if line.status != StatementLineStatus.REVIEW:
            raise Conflict(f"statement line {line.id} is {line.status}", key="error.billing.statement_line_decided")
        if payment.status in (PaymentStatus.PAID, PaymentStatus.CANCELLED):
            if not over_payment:
                raise Conflict(f"invoice {payment.number} is {payment.status}", key="error.billing.statement_invoice_settled",
                               number=payment.number, status=str(payment.status))
            credited, became_paid = credit(session, payment, org, line.amount, f"statement:{line.id}", now,
                                           "statement_review", line_hash=line.line_hash)
        else:
            if not _first_full_payment(payment, line):
                require_no_other_part(session, payment, STATEMENT_PART, over_payment)
            credited, became_paid = _credit(session, payment, org, line, now, "statement_review")
        line.status, line.payment_id, line.decided_at = StatementLineStatus.ASSIGNED, payment.id, now
        line.reason = (note or line.reason)[:500]
        session.add(line)
        audit.record(session, Actor.system(org.id), "payment.statement_line_assigned", line=line.id,
                     number=payment.number, amount=str(line.amount))
        session.commit()
    except Exception:
        session.rollback()
        raise
    if became_paid:
        complete_action(session, payment.id, now)
    return LineResult(line.id, "imported", "assigned by an operator", payment_number=payment.number,
                      amount=line.amount, credited=credited)


def reject(session: Session, line_id: int, *, note: str, now: datetime | None = None) -> None:
    """An operator's decision: the line is not a customer's payment here (returned to the payer,
    another company's money); nothing is credited. ``note`` says why. Commits."""
    now = now or utcnow()
    try:
        line = _waiting_line(session, line_id)
        note = " ".join(str(note or "").split())
        if not note:
            raise InvalidInput("say why the line is rejected", field="note", key="error.billing.statement_note_required")
        line.status, line.reason, line.decided_at = StatementLineStatus.REJECTED, note[:500], now
        session.add(line)
        session.commit()
    except Exception:
        session.rollback()
        raise
