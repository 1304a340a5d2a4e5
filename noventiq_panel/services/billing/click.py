"""Click SHOP API: Click calls us in two steps, Prepare (``POST /api/click/prepare``, ``action=0``)
and Complete (``POST /api/click/complete``, ``action=1``), form-encoded; we answer JSON.

Written from Click's documentation (docs.click.uz: "Click-API – Request", "Click-API – Error",
"Click-API – Testing") and Click's own PHP library (click-llc/click-integration-php), with
``../shared/PAYMENTS-UZ.md``. Nothing here has met the real Click: the tests replay the documented
requests against a local double.

The contract:

- ``sign_string = md5(click_trans_id + service_id + SECRET_KEY + merchant_trans_id
  [+ merchant_prepare_id on Complete] + amount + action + sign_time)`` over the field values exactly
  as received (the amount's text as Click sent it). Without a configured secret key every request
  fails the check. The key is never logged.
- ``merchant_trans_id`` names the account (``card_accounts``): the organisation's account number
  (a balance top-up, any amount within ``PANEL_CARD_MIN``/``PANEL_CARD_MAX``) or an invoice number
  (exactly what the invoice still needs). Amounts are сум, with the decimals Click sends.
- Our answers carry the documented codes: 0 success, -1 sign check failed, -2 incorrect amount,
  -3 action not found, -4 already paid, -5 user/order does not exist, -6 transaction does not
  exist, -7 failed to update, -8 error in the request from Click, -9 transaction cancelled.
- Complete after a successful Prepare posts the money once, under the ledger key
  ``click:<click_trans_id>`` and the organisation's lock, with the "payment received" mail and
  history entry of a bank transfer; the same Complete again answers -4 and posts nothing. A Complete
  carrying Click's ``error < 0`` (the payment failed at Click) cancels the transaction and answers
  -9; a cancelled transaction posts nothing, ever.
- Each ``click_trans_id`` is one attempt to pay (Click's words); an invoice takes no new attempt once
  it is paid (-4). Money Click completes is never refused: two attempts completed for one invoice
  both reach the balance (the second as an over payment), as with a second bank transfer.
- A refused request changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import CardAccountKind, ClickState, ClickTransaction
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import card_accounts
from noventiq_panel.services.billing.card_accounts import (
    AccountRefused,
    Discrepancy,
    Target,
)
from noventiq_panel.services.billing.invoice_document import normalize_number
from noventiq_panel.services.core import ledger

log = logging.getLogger(__name__)

PAY_URL = "https://my.click.uz/services/pay"
FIELDS = ("click_trans_id", "service_id", "click_paydoc_id", "merchant_trans_id", "amount", "action", "error",
          "error_note", "sign_time", "sign_string")
MAX_FIELD = 255

# Our error codes ("Click-API – Error": errors returned by the supplier's system).
SUCCESS = 0
SIGN_FAILED = -1
WRONG_AMOUNT = -2
ACTION_NOT_FOUND = -3
ALREADY_PAID = -4
NOT_FOUND = -5
TRANSACTION_NOT_FOUND = -6
UPDATE_FAILED = -7
BAD_REQUEST = -8
CANCELLED = -9

NOTES = {
    SUCCESS: "Success",
    SIGN_FAILED: "SIGN CHECK FAILED!",
    WRONG_AMOUNT: "Incorrect parameter amount",
    ACTION_NOT_FOUND: "Action not found",
    ALREADY_PAID: "Already paid",
    NOT_FOUND: "User does not exist",
    TRANSACTION_NOT_FOUND: "Transaction does not exist",
    UPDATE_FAILED: "Failed to update user",
    BAD_REQUEST: "Error in request from click",
    CANCELLED: "Transaction cancelled",
}


class ClickError(Exception):
    def __init__(self, code: int):
        super().__init__(NOTES[code])
        self.code = code


# ---------------------------------------------------------------- configuration, pay link

def configured() -> bool:
    settings = get_settings()
    return bool(settings.click_service_id and settings.click_merchant_id and settings.click_secret_key)


def pay_url(account: str, amount: Decimal, return_url: str) -> str | None:
    """Click's pay page for ``amount`` сум to ``account`` (``transaction_param``); None when Click is
    not configured."""
    if not configured():
        return None
    settings = get_settings()
    query = urlencode({"service_id": settings.click_service_id, "merchant_id": settings.click_merchant_id,
                       "amount": f"{Decimal(amount):.2f}", "transaction_param": account, "return_url": return_url})
    return f"{PAY_URL}?{query}"


def sign(form: Mapping[str, str], secret: str, *, complete: bool) -> str:
    """The documented ``sign_string`` of ``form`` (the values as received)."""
    parts = [form.get("click_trans_id", ""), form.get("service_id", ""), secret, form.get("merchant_trans_id", "")]
    if complete:
        parts.append(form.get("merchant_prepare_id", ""))
    parts += [form.get("amount", ""), form.get("action", ""), form.get("sign_time", "")]
    return hashlib.md5("".join(parts).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the two steps

def prepare(session: Session, form: Mapping[str, Any], *, now: datetime | None = None) -> dict:
    """Prepare (action 0): check the account and the amount, record the attempt, answer its
    ``merchant_prepare_id``."""
    return _answer(session, form, complete=False, now=now or utcnow())


def complete(session: Session, form: Mapping[str, Any], *, now: datetime | None = None) -> dict:
    """Complete (action 1): post the money of a prepared attempt once (or cancel it when Click
    reports ``error < 0``), answer its ``merchant_confirm_id``."""
    return _answer(session, form, complete=True, now=now or utcnow())


def _answer(session: Session, form: Mapping[str, Any], *, complete: bool, now: datetime) -> dict:
    fields = {k: v for k, v in form.items() if isinstance(k, str) and isinstance(v, str)}
    echo = {"click_trans_id": _int_or_text(fields.get("click_trans_id")),
            "merchant_trans_id": fields.get("merchant_trans_id")}
    try:
        ids = _complete(session, fields, now) if complete else _prepare(session, fields, now)
        return {**echo, **ids, "error": SUCCESS, "error_note": NOTES[SUCCESS]}
    except ClickError as exc:
        session.rollback()
        return {**echo, "error": exc.code, "error_note": NOTES[exc.code]}
    except Exception:  # "failed to update"; the details go to the log only
        session.rollback()
        log.exception("Click %s failed", "Complete" if complete else "Prepare")
        return {**echo, "error": UPDATE_FAILED, "error_note": NOTES[UPDATE_FAILED]}


def _int_or_text(value):
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value


def _check_request(fields: dict[str, str], *, complete: bool) -> None:
    """Present (-8), signed (-1), the right action (-3), well formed (-8), our service (-8)."""
    needed = FIELDS + (("merchant_prepare_id",) if complete else ())
    if any(name not in fields for name in needed) or any(len(fields[name]) > MAX_FIELD for name in needed):
        raise ClickError(BAD_REQUEST)
    settings = get_settings()
    secret = settings.click_secret_key
    given = fields["sign_string"].strip().lower()
    expected = sign(fields, secret, complete=fields["action"] == "1")  # signed as the action it carries
    if not secret or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ClickError(SIGN_FAILED)
    if fields["action"] != ("1" if complete else "0"):
        raise ClickError(ACTION_NOT_FOUND)
    numeric = ("click_trans_id", "service_id", "click_paydoc_id") + (("merchant_prepare_id",) if complete else ())
    if not all(_digits(fields[name]) for name in numeric) or _error_code(fields) is None:
        raise ClickError(BAD_REQUEST)
    if fields["service_id"] != settings.click_service_id:
        raise ClickError(BAD_REQUEST)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18


def _error_code(fields: dict[str, str]) -> int | None:
    text = fields["error"].strip()
    body = text.removeprefix("-")
    return int(text) if body.isascii() and body.isdigit() and len(body) <= 9 else None


def _amount(fields: dict[str, str]) -> Decimal:
    """The amount Click sent (сум: digits, a point and decimals); -2 unless it is positive with at
    most 2 significant decimals."""
    text = fields["amount"].strip()
    whole, _, decimals = text.partition(".")
    if not (whole.isascii() and whole.isdigit() and len(whole) <= 13) \
            or (decimals and not (decimals.isascii() and decimals.isdigit() and len(decimals) <= 8)):
        raise ClickError(WRONG_AMOUNT)
    amount = Decimal(text)
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise ClickError(WRONG_AMOUNT)
    return amount.quantize(Decimal("0.01"))


def _resolve(session: Session, merchant_trans_id: str, *, lock: bool = False) -> Target:
    """The account ``merchant_trans_id`` names: an invoice number or an organisation's account number."""
    try:
        if normalize_number(merchant_trans_id):
            return card_accounts.find_invoice(session, merchant_trans_id, lock=lock)
        return Target(CardAccountKind.ORG.value, card_accounts.find_org(session, merchant_trans_id))
    except AccountRefused:
        raise ClickError(NOT_FOUND) from None


def _prepare(session: Session, fields: dict[str, str], now: datetime) -> dict:
    _check_request(fields, complete=False)
    click_trans_id = int(fields["click_trans_id"])
    existing = _find(session, click_trans_id)
    if _error_code(fields) < 0:
        # The payment failed at Click: nothing to prepare (a prepared attempt is cancelled).
        if existing is not None and existing.state == ClickState.PREPARED:
            ledger.lock_organisation(session, existing.org_id)
            existing = _find(session, click_trans_id, lock=True)
            if existing.state == ClickState.PREPARED:  # decided again under the lock: never a completed one
                _cancel(session, existing, _error_code(fields), fields["error_note"], now)
                session.commit()
        raise ClickError(CANCELLED)
    if existing is not None:
        return _repeat_prepare(existing, fields)
    amount = _amount(fields)
    target = _resolve(session, fields["merchant_trans_id"], lock=True)
    if target.invoice is not None:
        try:
            card_accounts.check_open(target)
        except AccountRefused as exc:
            raise ClickError(ALREADY_PAID if exc.reason == "invoice_paid" else NOT_FOUND) from None
        if amount != target.due:
            raise ClickError(WRONG_AMOUNT)
    elif not card_accounts.topup_amount_ok(amount):
        raise ClickError(WRONG_AMOUNT)
    tx = ClickTransaction(click_trans_id=click_trans_id, click_paydoc_id=int(fields["click_paydoc_id"]),
                          service_id=int(fields["service_id"]), merchant_trans_id=fields["merchant_trans_id"][:64],
                          account_kind=target.kind, org_id=target.org.id, amount=amount, state=ClickState.PREPARED,
                          sign_time=fields["sign_time"][:32], created_at=now)
    try:
        if target.invoice is not None:
            tx.payment_id = target.invoice.id
        else:
            tx.payment_id = card_accounts.open_topup(session, target.org, amount, method="click",
                                                     number=f"CLICK-{click_trans_id}", now=now).id
        session.add(tx)
        session.flush()
        tx.merchant_prepare_id = tx.id
        session.add(tx)
        session.commit()
    except IntegrityError:
        # The same attempt prepared by a simultaneous call: that one stands.
        session.rollback()
        existing = _find(session, click_trans_id)
        if existing is None:
            raise
        return _repeat_prepare(existing, fields)
    return {"merchant_prepare_id": tx.merchant_prepare_id}


def _repeat_prepare(tx: ClickTransaction, fields: dict[str, str]) -> dict:
    """Prepare again for a known attempt: the same answer while it is prepared."""
    if tx.state == ClickState.COMPLETED:
        raise ClickError(ALREADY_PAID)
    if tx.state == ClickState.CANCELLED:
        raise ClickError(CANCELLED)
    if fields["merchant_trans_id"] != tx.merchant_trans_id:
        raise ClickError(NOT_FOUND)
    if _amount(fields) != tx.amount:
        raise ClickError(WRONG_AMOUNT)
    return {"merchant_prepare_id": tx.merchant_prepare_id}


def _complete(session: Session, fields: dict[str, str], now: datetime) -> dict:
    _check_request(fields, complete=True)
    click_trans_id = int(fields["click_trans_id"])
    tx = _find(session, click_trans_id)
    if tx is None or tx.merchant_prepare_id != int(fields["merchant_prepare_id"]):
        raise ClickError(TRANSACTION_NOT_FOUND)
    if fields["merchant_trans_id"] != tx.merchant_trans_id:
        raise ClickError(NOT_FOUND)
    if _amount(fields) != tx.amount:
        raise ClickError(WRONG_AMOUNT)
    org = ledger.lock_organisation(session, tx.org_id)
    tx = _find(session, click_trans_id, lock=True)
    if tx.state == ClickState.COMPLETED:
        raise ClickError(ALREADY_PAID)
    if tx.state == ClickState.CANCELLED:
        raise ClickError(CANCELLED)
    code = _error_code(fields)
    if code < 0:
        _cancel(session, tx, code, fields["error_note"], now)
        session.commit()
        raise ClickError(CANCELLED)
    posted = card_accounts.post(session, org, tx.payment_id, tx.amount, _ledger_key(tx), source="click", now=now)
    tx.state = ClickState.COMPLETED
    tx.merchant_confirm_id = tx.id
    tx.completed_at = now
    tx.ledger_entry_id = posted.entry.id if posted.entry is not None else None
    session.add(tx)
    session.commit()
    answer = {"merchant_confirm_id": tx.merchant_confirm_id}
    card_accounts.after_commit(session, posted, now)
    return answer


def _find(session: Session, click_trans_id: int, *, lock: bool = False) -> ClickTransaction | None:
    query = select(ClickTransaction).where(ClickTransaction.click_trans_id == click_trans_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.exec(query).first()


def _cancel(session: Session, tx: ClickTransaction, code: int, note: str, now: datetime) -> None:
    """Cancel a prepared attempt (flush only)."""
    tx.state = ClickState.CANCELLED
    tx.error = code
    tx.error_note = (note or "")[:255]
    tx.cancelled_at = now
    session.add(tx)
    session.flush()
    if tx.account_kind == CardAccountKind.ORG:
        card_accounts.drop_topup(session, tx.payment_id)


def _ledger_key(tx: ClickTransaction) -> str:
    return f"click:{tx.click_trans_id}"


# ---------------------------------------------------------------- reconciliation

_COLUMNS = {
    "click_trans_id": ("click_trans_id", "click trans id", "transaction id", "id транзакции", "id платежа", "id"),
    "amount": ("amount", "сумма", "summa"),
    "status": ("status", "state", "статус", "holat"),
    "merchant_trans_id": ("merchant_trans_id", "transaction_param", "лицевой счёт", "лицевой счет", "заказ"),
}
_DONE = {"1", "2", "success", "successful", "paid", "completed", "confirmed", "успешно", "оплачен", "проведен",
         "проведён", "muvaffaqiyatli"}
_UNDONE = {"-1", "-9", "cancelled", "canceled", "rejected", "error", "failed", "отменен", "отменён", "ошибка",
           "bekor qilingan"}


def read_export(text: str) -> list[dict[str, str]]:
    """The rows of a Click export (CSV with a header; ``,`` or ``;``), each with the keys
    ``click_trans_id``, ``amount`` and, when present, ``status`` and ``merchant_trans_id``
    (README "Card payments" lists the column names understood). ValueError when the required
    columns are missing."""
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise ValueError("the export is empty")
    names = [h.strip().lower() for h in header]
    index = {}
    for key, aliases in _COLUMNS.items():
        for i, name in enumerate(names):
            if name in aliases:
                index[key] = i
                break
    if "click_trans_id" not in index or "amount" not in index:
        raise ValueError(f"the export needs the columns click_trans_id and amount (found {header})")
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        rows.append({key: (cells[i].strip() if i < len(cells) else "") for key, i in index.items()})
    return rows


def reconcile(session: Session, rows: list[dict[str, str]], start: datetime, end: datetime) -> list[Discrepancy]:
    """Compare a Click export (:func:`read_export`) covering [start, end] with our transactions and
    the ledger: each completed payment of the export must be completed here with its money posted,
    and each transaction completed here in the period must be in it (the period is the operator's:
    an empty or foreign file cannot hide our payments). Read only."""
    theirs: dict[int, dict[str, str]] = {}
    problems: list[Discrepancy] = []
    for row in rows:
        ref = row.get("click_trans_id", "")
        if not _digits(ref):
            problems.append(Discrepancy(ref or "?", "missing_here", f"unreadable click_trans_id {ref!r}"))
            continue
        theirs[int(ref)] = row
    ours = {tx.click_trans_id: tx for tx in session.exec(
        select(ClickTransaction).where(col(ClickTransaction.click_trans_id).in_(list(theirs) or [-1]))).all()}
    for tx in session.exec(select(ClickTransaction).where(
            ClickTransaction.state == ClickState.COMPLETED, ClickTransaction.created_at >= start,
            ClickTransaction.created_at <= end)).all():
        ours.setdefault(tx.click_trans_id, tx)
    posted = card_accounts.ledger_amounts(session, [_ledger_key(tx) for tx in ours.values()])
    for ref, row in theirs.items():
        done = _status_done(row.get("status"))
        tx = ours.get(ref)
        if tx is None:
            if done is not False:
                problems.append(Discrepancy(str(ref), "missing_here", f"Click amount {row.get('amount')}, "
                                            f"account {row.get('merchant_trans_id', '')}"))
            continue
        try:
            amount = Decimal(row.get("amount", "").replace(" ", "").replace(",", "."))
        except InvalidOperation:
            amount = None
        if amount != tx.amount:
            problems.append(Discrepancy(str(ref), "amount", f"Click {row.get('amount')}, ours {tx.amount}"))
        if done is not None and done != (tx.state == ClickState.COMPLETED):
            problems.append(Discrepancy(str(ref), "state", f"Click {row.get('status')}, ours {tx.state}"))
    for ref, tx in ours.items():
        if ref not in theirs and tx.state == ClickState.COMPLETED:
            problems.append(Discrepancy(str(ref), "missing_there", f"completed here, amount {tx.amount}"))
        money = posted.get(_ledger_key(tx))
        if tx.state == ClickState.COMPLETED and money != tx.amount:
            problems.append(Discrepancy(str(ref), "ledger_missing", f"{_ledger_key(tx)}: expected {tx.amount}, "
                                        f"ledger {money}"))
        if tx.state != ClickState.COMPLETED and money is not None:
            problems.append(Discrepancy(str(ref), "ledger_unexpected", f"{_ledger_key(tx)} posted for a transaction "
                                        f"in state {tx.state}"))
    return problems


def _status_done(status: str | None) -> bool | None:
    """Whether an export's status says the payment went through (None: no status or unknown)."""
    text = (status or "").strip().lower()
    if text in _DONE:
        return True
    if text in _UNDONE:
        return False
    return None

