"""Payme Merchant API: Payme calls us with JSON-RPC (``POST /api/payme``), and every answer is the
protocol's result or error object (the route always answers HTTP 200).

Written from Payme's developer help (developer.help.paycom.uz: "Методы Merchant API" —
CheckPerformTransaction, CreateTransaction, PerformTransaction, CancelTransaction, CheckTransaction,
GetStatement, SetFiscalData; "Типы данных"; "Ошибки (ERRORS)"; "Песочница"; "Отправка чека по методу
GET") and the official PHP template (PaycomUZ/paycom-integration-php-template), with
``../shared/PAYMENTS-UZ.md``. Nothing here has met the real Payme: the tests replay the documented
request bodies against a local double.

The contract:

- Authorization ``Basic base64("Paycom:" + key)``: the merchant key, or with ``PANEL_PAYME_TEST`` the
  sandbox key instead. A missing or wrong one is -32504 on every method; without a configured key
  every request is refused. The key is never logged.
- Accounts (``card_accounts``): ``{"org": "<account number>"}`` tops up the balance (any amount
  within ``PANEL_CARD_MIN``/``PANEL_CARD_MAX``); ``{"invoice": "<invoice number>"}`` pays an issued
  invoice, exactly what it still needs. Amounts are integers in tiyin; times are Unix milliseconds.
- An invoice is a one-time account: while it has an active transaction (created and not yet timed
  out, or performed), a CreateTransaction with another id is refused with -31008, as the sandbox
  expects.
- A transaction in state 1 older than 12 hours (43 200 000 ms after Payme's ``time``) is cancelled
  with reason 4, by the job (:func:`expire_stale`) and on access, and can no longer be performed.
- PerformTransaction posts the money once, under the ledger key ``payme:<Payme id>``, under the
  organisation's lock; a repeated call answers what the first answered and posts nothing. The top-up
  gets the "payment received" mail and history entry of a bank transfer (``card_accounts.post``).
- CancelTransaction after perform takes the money back (key ``payme:<id>:cancel``) only while the
  balance still covers it; otherwise -31007 and nothing changes.
- A refused request changes nothing (except that a timed-out transaction it touched is cancelled).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import (
    CardAccountKind,
    Organisation,
    Payment,
    PaymeState,
    PaymeTransaction,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import card_accounts
from noventiq_panel.services.billing.card_accounts import (
    AccountRefused,
    Discrepancy,
    Target,
)
from noventiq_panel.services.core import ledger

log = logging.getLogger(__name__)

LOGIN = "Paycom"
TIMEOUT_MS = 43_200_000  # 12 hours
REASONS = (1, 2, 3, 4, 5, 10)
REASON_TIMEOUT = 4
MAX_ID_LENGTH = 26  # Payme ids are 24 characters; the top-up's number is "PAYME-<id>" (32 at most)
MAX_TIYIN = 10 ** 15
CHECKOUT_URL = "https://checkout.paycom.uz/"
TEST_CHECKOUT_URL = "https://test.paycom.uz/"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Error codes (developer.help.paycom.uz "Ошибки (ERRORS)").
NOT_POST = -32300
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INSUFFICIENT_PRIVILEGE = -32504
SYSTEM_ERROR = -32400
WRONG_AMOUNT = -31001
TRANSACTION_NOT_FOUND = -31003
CANNOT_CANCEL = -31007
CANNOT_PERFORM = -31008
ORG_NOT_FOUND = -31050
INVOICE_NOT_FOUND = -31051
NOT_PAYABLE = -31052

_MESSAGES: dict[str, dict[str, str]] = {
    "post": {"ru": "Метод запроса должен быть POST.", "uz": "Soʻrov usuli POST boʻlishi kerak.",
             "en": "The request method must be POST."},
    "parse": {"ru": "Ошибка разбора JSON.", "uz": "JSON tahlilida xatolik.", "en": "JSON parse error."},
    "request": {"ru": "Неверный JSON-RPC запрос.", "uz": "JSON-RPC soʻrovi notoʻgʻri.",
                "en": "Invalid JSON-RPC request."},
    "method": {"ru": "Запрашиваемый метод не найден.", "uz": "Soʻralgan metod topilmadi.",
               "en": "The requested method was not found."},
    "privilege": {"ru": "Недостаточно привилегий для выполнения метода.",
                  "uz": "Metodni bajarish uchun huquqlar yetarli emas.",
                  "en": "Insufficient privilege to perform this method."},
    "system": {"ru": "Системная ошибка.", "uz": "Tizim xatosi.", "en": "System error."},
    "amount": {"ru": "Неверная сумма.", "uz": "Notoʻgʻri summa.", "en": "Incorrect amount."},
    "not_found": {"ru": "Транзакция не найдена.", "uz": "Tranzaksiya topilmadi.", "en": "Transaction not found."},
    "cannot_cancel": {"ru": "Невозможно отменить транзакцию: зачисленные деньги уже израсходованы.",
                      "uz": "Tranzaksiyani bekor qilib boʻlmaydi: oʻtkazilgan pul allaqachon sarflangan.",
                      "en": "The transaction cannot be cancelled: the money credited has been spent."},
    "cannot_perform": {"ru": "Невозможно выполнить операцию.", "uz": "Operatsiyani bajarib boʻlmaydi.",
                       "en": "The operation cannot be performed."},
    "expired": {"ru": "Транзакция отменена по таймауту.", "uz": "Tranzaksiya vaqt tugagani sababli bekor qilindi.",
                "en": "The transaction was cancelled by timeout."},
    "invoice_busy": {"ru": "По этому счёту уже есть активная транзакция.",
                     "uz": "Bu hisob boʻyicha faol tranzaksiya allaqachon mavjud.",
                     "en": "This invoice already has an active transaction."},
    "invoice_paid": {"ru": "Счёт уже оплачен.", "uz": "Hisob allaqachon toʻlangan.", "en": "The invoice is already paid."},
    "invoice_cancelled": {"ru": "Счёт отменён.", "uz": "Hisob bekor qilingan.", "en": "The invoice is cancelled."},
    "org_not_found": {"ru": "Лицевой счёт не найден.", "uz": "Shaxsiy hisob topilmadi.", "en": "Account not found."},
    "invoice_not_found": {"ru": "Счёт на оплату не найден.", "uz": "Toʻlov hisobi topilmadi.",
                          "en": "Invoice not found."},
    "not_payable": {"ru": "Этот счёт нельзя оплатить картой.", "uz": "Bu hisobni karta orqali toʻlab boʻlmaydi.",
                    "en": "This account cannot be paid by card."},
}


class PaymeError(Exception):
    """A protocol error answer: ``code``, a localized ``message`` and the optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = _MESSAGES[message]
        self.data = data

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


# ---------------------------------------------------------------- times and amounts

def to_ms(moment: datetime) -> int:
    """A UTC datetime as Unix milliseconds."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def tiyin_to_sum(tiyin: int) -> Decimal:
    return (Decimal(tiyin) / 100).quantize(Decimal("0.01"))


def sum_to_tiyin(amount: Decimal) -> int:
    return int((Decimal(amount) * 100).to_integral_value())


# ---------------------------------------------------------------- configuration, checkout

def configured() -> bool:
    """Whether Payme can be offered: a merchant id and the key in force."""
    settings = get_settings()
    return bool(settings.payme_merchant_id and _key())


def _key() -> str:
    settings = get_settings()
    return settings.payme_test_key if settings.payme_test else settings.payme_key


def authorized(header: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``Basic base64("Paycom:" + key)`` with the key in
    force (constant-time comparison; no key configured: never)."""
    key = _key()
    if not key or not isinstance(header, str):
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(decoded, f"{LOGIN}:{key}".encode())


def checkout_url(kind: str, account: str, amount: Decimal, return_url: str, *, lang: str = "ru") -> str | None:
    """Payme's checkout for ``amount`` сум to the account (``kind`` ``org`` or ``invoice``): the
    checkout address and base64 of ``m=<merchant>;ac.<kind>=<account>;a=<tiyin>;c=<return url>;l=<lang>``
    ("Отправка чека по методу GET"). None when Payme is not configured."""
    if not configured() or kind not in (CardAccountKind.ORG, CardAccountKind.INVOICE):
        return None
    settings = get_settings()
    params = f"m={settings.payme_merchant_id};ac.{kind}={account};a={sum_to_tiyin(amount)};c={return_url};l={lang}"
    base = TEST_CHECKOUT_URL if settings.payme_test else CHECKOUT_URL
    return base + base64.b64encode(params.encode("utf-8")).decode("ascii")


# ---------------------------------------------------------------- the dispatcher

def handle(session: Session, body: bytes | str, authorization: str | None, *, now: datetime | None = None) -> dict:
    """Answer one Merchant API request: ``{"id", "result"}`` or ``{"id", "error"}``. Commits what a
    method changes; a refused request changes nothing."""
    now = now or utcnow()
    request_id = None
    try:
        try:
            payload = json.loads(body)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise PaymeError(PARSE_ERROR, "parse") from None
        if isinstance(payload, dict):
            request_id = payload.get("id") if isinstance(payload.get("id"), (int, str)) else None
        if not authorized(authorization):
            raise PaymeError(INSUFFICIENT_PRIVILEGE, "privilege")
        if not isinstance(payload, dict) or not isinstance(payload.get("method"), str) \
                or not isinstance(payload.get("params"), dict):
            raise PaymeError(INVALID_REQUEST, "request")
        method = payload["method"]
        handler = METHODS.get(method)
        if handler is None:
            raise PaymeError(METHOD_NOT_FOUND, "method", data=method[:64])
        result = handler(session, payload["params"], now)
        return {"id": request_id, "result": result}
    except PaymeError as exc:
        session.rollback()
        return {"id": request_id, "error": exc.body()}
    except Exception:  # the protocol's system error; the details go to the log only
        session.rollback()
        log.exception("Payme request failed")
        return {"id": request_id, "error": PaymeError(SYSTEM_ERROR, "system").body()}


def error_answer(code: int, message: str) -> dict:
    """An error answer made outside :func:`handle` (the route: not a POST, a failure before the
    service)."""
    return {"id": None, "error": PaymeError(code, message).body()}


# ---------------------------------------------------------------- parameters

def _param_id(params: dict) -> str:
    value = params.get("id")
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise PaymeError(INVALID_REQUEST, "request", data="id")
    return value


def _param_int(params: dict, name: str) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PaymeError(INVALID_REQUEST, "request", data=name)
    return value


def _param_amount(params: dict) -> int:
    value = params.get("amount")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PaymeError(INVALID_REQUEST, "request", data="amount")
    if isinstance(value, float) or not 0 < value < MAX_TIYIN:
        raise PaymeError(WRONG_AMOUNT, "amount", data="amount")
    return value


def _param_account(params: dict) -> dict:
    value = params.get("account")
    if not isinstance(value, dict):
        raise PaymeError(INVALID_REQUEST, "request", data="account")
    return value


def _resolve(session: Session, account: dict, *, lock: bool = False) -> Target:
    """The account Payme names; the protocol's account error (-31050 … -31099) otherwise."""
    invoice, org = account.get("invoice"), account.get("org")
    try:
        if invoice not in (None, ""):
            target = card_accounts.find_invoice(session, invoice if isinstance(invoice, str) else str(invoice),
                                                lock=lock)
            if org not in (None, "") and card_accounts.parse_account_number(org) != target.org.id:
                raise AccountRefused("org_not_found", "org")
            return target
        return Target(CardAccountKind.ORG.value, card_accounts.find_org(session, org))
    except AccountRefused as exc:
        code = {"org_not_found": ORG_NOT_FOUND, "invoice_not_found": INVOICE_NOT_FOUND}.get(exc.reason, NOT_PAYABLE)
        raise PaymeError(code, exc.reason, data=exc.field) from None


def _check_amount(target: Target, tiyin: int) -> None:
    amount = tiyin_to_sum(tiyin)
    if target.invoice is not None:
        due = target.due
        if due > 0 and amount != due:
            raise PaymeError(WRONG_AMOUNT, "amount", data="amount")
    elif not card_accounts.topup_amount_ok(amount):
        raise PaymeError(WRONG_AMOUNT, "amount", data="amount")


def _check_invoice_open(session: Session, target: Target, now: datetime, *, except_id: str | None = None) -> None:
    """-31008 when the invoice takes no more money or already has an active transaction."""
    if target.invoice is None:
        return
    try:
        card_accounts.check_open(target)
    except AccountRefused as exc:
        raise PaymeError(CANNOT_PERFORM, exc.reason, data="invoice") from None
    cutoff = to_ms(now) - TIMEOUT_MS
    active = session.exec(
        select(PaymeTransaction.id).where(
            PaymeTransaction.payment_id == target.invoice.id,
            or_(PaymeTransaction.state == PaymeState.PERFORMED,
                (PaymeTransaction.state == PaymeState.CREATED) & (PaymeTransaction.payme_time >= cutoff)),
            PaymeTransaction.payme_id != (except_id or ""),
        )
    ).first()
    if active is not None:
        raise PaymeError(CANNOT_PERFORM, "invoice_busy", data="invoice")


def _find(session: Session, payme_id: str, *, lock: bool = False) -> PaymeTransaction:
    query = select(PaymeTransaction).where(PaymeTransaction.payme_id == payme_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    tx = session.exec(query).first()
    if tx is None:
        raise PaymeError(TRANSACTION_NOT_FOUND, "not_found", data="id")
    return tx


def _locked(session: Session, payme_id: str) -> tuple[Organisation, PaymeTransaction]:
    """The transaction and its organisation, read again under the organisation's lock (one money
    movement of an organisation at a time; the second of two calls at once sees the first's result)."""
    tx = _find(session, payme_id)
    org = ledger.lock_organisation(session, tx.org_id)
    return org, _find(session, payme_id, lock=True)


def _expired(tx: PaymeTransaction, now: datetime) -> bool:
    """Older than 12 hours (at exactly 12 hours it is still active: it blocks a second transaction
    of its invoice, :func:`_check_invoice_open`, and can still be performed)."""
    return tx.state == PaymeState.CREATED and to_ms(now) - tx.payme_time > TIMEOUT_MS


def _cancel(session: Session, tx: PaymeTransaction, reason: int, now: datetime) -> None:
    """Cancel a transaction in state 1 (flush only)."""
    tx.state = PaymeState.CANCELLED
    tx.reason = reason
    tx.cancel_time = to_ms(now)
    tx.cancelled_at = now
    session.add(tx)
    session.flush()
    if tx.account_kind == CardAccountKind.ORG:
        card_accounts.drop_topup(session, tx.payment_id)


def _expire_if_due(session: Session, tx: PaymeTransaction, now: datetime) -> bool:
    """Cancel ``tx`` with reason 4 when its 12 hours are over (committed); whether it did. Decided
    again under the organisation's lock, so a PerformTransaction running at that moment is never
    overwritten (``tx`` is refreshed)."""
    if not _expired(tx, now):
        return False
    _org, tx = _locked(session, tx.payme_id)
    if not _expired(tx, now):
        session.rollback()
        return False
    _cancel(session, tx, REASON_TIMEOUT, now)
    session.commit()
    log.info("Payme transaction %s cancelled by timeout", tx.payme_id)
    return True


def _transaction_ref(tx: PaymeTransaction) -> str:
    return str(tx.id)


# ---------------------------------------------------------------- the methods

def check_perform_transaction(session: Session, params: dict, now: datetime) -> dict:
    """CheckPerformTransaction {amount, account} → {"allow": true[, "detail"]}."""
    tiyin = _param_amount(params)
    target = _resolve(session, _param_account(params))
    _check_amount(target, tiyin)
    _check_invoice_open(session, target, now)
    result: dict[str, Any] = {"allow": True}
    detail = _receipt_detail(target, tiyin)
    if detail is not None:
        result["detail"] = detail
    return result


def _receipt_detail(target: Target, tiyin: int) -> dict | None:
    """The fiscal receipt's detail (ИКПУ ``PANEL_PAYME_IKPU``, VAT ``PANEL_VAT_RATE``), when an ИКПУ
    is configured."""
    settings = get_settings()
    if not settings.payme_ikpu:
        return None
    if target.invoice is not None:
        title = target.invoice.purpose or f"Оплата по счёту {target.invoice.number}"
    else:
        title = f"Пополнение лицевого счёта {card_accounts.account_number(target.org.id)}"
    item: dict[str, Any] = {"title": title[:128], "price": tiyin, "count": 1, "code": settings.payme_ikpu,
                            "vat_percent": int(settings.vat_rate)}
    if settings.payme_package_code:
        item["package_code"] = settings.payme_package_code
    return {"receipt_type": 0, "items": [item]}


def create_transaction(session: Session, params: dict, now: datetime, *, retried: bool = False) -> dict:
    """CreateTransaction {id, time, amount, account} → {create_time, transaction, state: 1}."""
    payme_id = _param_id(params)
    payme_time = _param_int(params, "time")
    tiyin = _param_amount(params)
    account = _param_account(params)
    existing = session.exec(select(PaymeTransaction).where(PaymeTransaction.payme_id == payme_id)).first()
    if existing is not None:
        if existing.state != PaymeState.CREATED:
            raise PaymeError(CANNOT_PERFORM, "cannot_perform")
        if _expire_if_due(session, existing, now):
            raise PaymeError(CANNOT_PERFORM, "expired")
        if existing.amount != tiyin:
            raise PaymeError(WRONG_AMOUNT, "amount", data="amount")
        return _created(existing)
    if not to_ms(now) - TIMEOUT_MS < payme_time <= to_ms(now) + TIMEOUT_MS:
        # Older than the 12 hours (now - time, not the PHP template's inverted check), or from the future.
        raise PaymeError(CANNOT_PERFORM, "expired", data="time")
    target = _resolve(session, account, lock=True)
    _check_amount(target, tiyin)
    _check_invoice_open(session, target, now)
    create_ms = to_ms(now)
    tx = PaymeTransaction(payme_id=payme_id, payme_time=payme_time, payme_time_at=from_ms(payme_time),
                          account_kind=target.kind, account=_clean_account(account), org_id=target.org.id,
                          amount=tiyin, state=PaymeState.CREATED, create_time=create_ms, created_at=now)
    try:
        if target.invoice is not None:
            tx.payment_id = target.invoice.id
        else:
            payment = card_accounts.open_topup(session, target.org, tiyin_to_sum(tiyin), method="payme",
                                               number=f"PAYME-{payme_id}", now=now)
            tx.payment_id = payment.id
        session.add(tx)
        session.flush()
        session.commit()
    except IntegrityError:
        # The same Payme id created by a simultaneous call: that one stands; answer as a repeat.
        session.rollback()
        if retried:
            raise
        return create_transaction(session, params, now, retried=True)
    return _created(tx)


def _clean_account(account: dict) -> dict:
    """The account object as Payme sent it, for GetStatement (scalar values, bounded)."""
    return {str(k)[:32]: v if isinstance(v, (int, str)) and not isinstance(v, bool) else str(v)[:64]
            for k, v in list(account.items())[:8]}


def _created(tx: PaymeTransaction) -> dict:
    return {"create_time": tx.create_time, "transaction": _transaction_ref(tx), "state": int(tx.state)}


def perform_transaction(session: Session, params: dict, now: datetime) -> dict:
    """PerformTransaction {id} → {transaction, perform_time, state: 2}; the money is posted once."""
    payme_id = _param_id(params)
    org, tx = _locked(session, payme_id)
    if tx.state == PaymeState.PERFORMED:
        session.rollback()
        return _performed(tx)
    if tx.state != PaymeState.CREATED:
        raise PaymeError(CANNOT_PERFORM, "cannot_perform")
    if _expire_if_due(session, tx, now):
        raise PaymeError(CANNOT_PERFORM, "expired")
    if tx.payment_id is not None and tx.account_kind == CardAccountKind.INVOICE.value:
        # The invoice may have been paid another way since Create (a bank transfer, Click): it takes
        # no more than it still needs; refused, Payme releases the hold on the card.
        target = Target(tx.account_kind, org, session.get(Payment, tx.payment_id, populate_existing=True))
        try:
            card_accounts.check_open(target)
        except AccountRefused as exc:
            raise PaymeError(CANNOT_PERFORM, exc.reason, data="invoice") from None
        if target.due < tiyin_to_sum(tx.amount):
            raise PaymeError(CANNOT_PERFORM, "invoice_paid", data="invoice")
    posted = card_accounts.post(session, org, tx.payment_id, tiyin_to_sum(tx.amount), _ledger_key(tx),
                                source="payme", now=now)
    tx.state = PaymeState.PERFORMED
    tx.perform_time = to_ms(now)
    tx.performed_at = now
    tx.ledger_entry_id = posted.entry.id if posted.entry is not None else None
    session.add(tx)
    session.commit()
    result = _performed(tx)
    card_accounts.after_commit(session, posted, now)
    return result


def _ledger_key(tx: PaymeTransaction) -> str:
    return f"payme:{tx.payme_id}"


def _performed(tx: PaymeTransaction) -> dict:
    return {"transaction": _transaction_ref(tx), "perform_time": tx.perform_time, "state": int(tx.state)}


def cancel_transaction(session: Session, params: dict, now: datetime) -> dict:
    """CancelTransaction {id, reason} → {transaction, cancel_time, state: -1 | -2}; after perform the
    money is taken back only while the balance covers it (else -31007)."""
    payme_id = _param_id(params)
    reason = _param_int(params, "reason")
    if reason not in REASONS:
        raise PaymeError(INVALID_REQUEST, "request", data="reason")
    org, tx = _locked(session, payme_id)
    if tx.state in (PaymeState.CANCELLED, PaymeState.CANCELLED_AFTER_PERFORM):
        session.rollback()
        return _cancelled(tx)
    if tx.state == PaymeState.CREATED:
        _cancel(session, tx, REASON_TIMEOUT if _expired(tx, now) else reason, now)
        session.commit()
        return _cancelled(tx)
    entry = card_accounts.reverse(session, org, tx.payment_id, tiyin_to_sum(tx.amount), f"{_ledger_key(tx)}:cancel",
                                  source="payme", now=now)
    if entry is None:
        raise PaymeError(CANNOT_CANCEL, "cannot_cancel")
    tx.state = PaymeState.CANCELLED_AFTER_PERFORM
    tx.reason = reason
    tx.cancel_time = to_ms(now)
    tx.cancelled_at = now
    tx.reversal_entry_id = entry.id
    session.add(tx)
    session.commit()
    return _cancelled(tx)


def _cancelled(tx: PaymeTransaction) -> dict:
    return {"transaction": _transaction_ref(tx), "cancel_time": tx.cancel_time, "state": int(tx.state)}


def check_transaction(session: Session, params: dict, now: datetime) -> dict:
    """CheckTransaction {id} → {create_time, perform_time, cancel_time, transaction, state, reason}."""
    tx = _find(session, _param_id(params))
    _expire_if_due(session, tx, now)
    return {"create_time": tx.create_time, "perform_time": tx.perform_time, "cancel_time": tx.cancel_time,
            "transaction": _transaction_ref(tx), "state": int(tx.state), "reason": tx.reason}


def get_statement(session: Session, params: dict, now: datetime) -> dict:
    """GetStatement {from, to} → {"transactions": [...]}: the transactions Payme created in
    [from, to] (by Payme's ``time``), ascending."""
    start, end = _param_int(params, "from"), _param_int(params, "to")
    if start < 0 or end < start:
        raise PaymeError(INVALID_REQUEST, "request", data="from")
    expire_stale(session, now=now)
    rows = session.exec(
        select(PaymeTransaction).where(PaymeTransaction.payme_time >= start, PaymeTransaction.payme_time <= end)
        .order_by(col(PaymeTransaction.payme_time), col(PaymeTransaction.id))
    ).all()
    return {"transactions": [statement_row(tx) for tx in rows]}


def statement_row(tx: PaymeTransaction) -> dict:
    return {"id": tx.payme_id, "time": tx.payme_time, "amount": tx.amount, "account": dict(tx.account),
            "create_time": tx.create_time, "perform_time": tx.perform_time, "cancel_time": tx.cancel_time,
            "transaction": _transaction_ref(tx), "state": int(tx.state), "reason": tx.reason, "receivers": None}


def set_fiscal_data(session: Session, params: dict, now: datetime) -> dict:
    """SetFiscalData {id, type: PERFORM | CANCEL, fiscal_data} → {"success": true}; stored on the
    transaction (a repeat replaces it)."""
    payme_id = _param_id(params)
    kind = params.get("type")
    data = params.get("fiscal_data")
    if kind not in ("PERFORM", "CANCEL"):
        raise PaymeError(INVALID_REQUEST, "request", data="type")
    if not isinstance(data, dict) or len(json.dumps(data, default=str)) > 4000:
        raise PaymeError(INVALID_REQUEST, "request", data="fiscal_data")
    tx = _find(session, payme_id, lock=True)
    tx.fiscal_data = {**(tx.fiscal_data or {}), kind: json.loads(json.dumps(data, default=str))}
    session.add(tx)
    session.commit()
    return {"success": True}


METHODS: dict[str, Callable[[Session, dict, datetime], dict]] = {
    "CheckPerformTransaction": check_perform_transaction,
    "CreateTransaction": create_transaction,
    "PerformTransaction": perform_transaction,
    "CancelTransaction": cancel_transaction,
    "CheckTransaction": check_transaction,
    "GetStatement": get_statement,
    "SetFiscalData": set_fiscal_data,
}


# ---------------------------------------------------------------- the job

def expire_stale(session: Session, *, now: datetime | None = None) -> int:
    """Cancel with reason 4 every transaction still in state 1 twelve hours after Payme created it
    (the job; the methods also do it on access). Commits each; returns how many."""
    now = now or utcnow()
    cutoff = to_ms(now) - TIMEOUT_MS
    ids = session.exec(select(PaymeTransaction.payme_id).where(
        PaymeTransaction.state == PaymeState.CREATED, PaymeTransaction.payme_time < cutoff)).all()
    session.rollback()
    done = 0
    for payme_id in ids:
        try:
            _org, tx = _locked(session, payme_id)
            if _expire_if_due(session, tx, now):
                done += 1
            else:
                session.rollback()
        except Exception:
            session.rollback()
            raise
    return done


# ---------------------------------------------------------------- reconciliation

def reconcile(session: Session, statement, *, start_ms: int | None = None, end_ms: int | None = None) -> list[Discrepancy]:
    """Compare a Payme GetStatement answer (``{"result": {"transactions": [...]}}``, ``{"transactions":
    [...]}`` or the list) with our transactions and the ledger, over [start, end] (default: the
    statement's first and last ``time``). Read only."""
    rows = statement
    if isinstance(rows, dict):
        rows = rows.get("result", rows)
        rows = rows.get("transactions") if isinstance(rows, dict) else rows
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in rows):
        raise ValueError("not a GetStatement answer: expected a list of transactions with an id")
    theirs = {r["id"]: r for r in rows}
    times = [r.get("time") for r in rows if isinstance(r.get("time"), int)]
    if not times and (start_ms is None or end_ms is None):
        # an empty or time-less file would compare nothing and say "no differences"
        raise ValueError("the statement names no time: give the period it covers (--from, --to)")
    start = start_ms if start_ms is not None else min(times)
    end = end_ms if end_ms is not None else max(times)
    ours = {tx.payme_id: tx for tx in session.exec(
        select(PaymeTransaction).where(or_(col(PaymeTransaction.payme_id).in_(list(theirs) or [""]),
                                           (PaymeTransaction.payme_time >= start) & (PaymeTransaction.payme_time <= end)))
    ).all()}
    keys = [k for tx in ours.values() for k in (_ledger_key(tx), f"{_ledger_key(tx)}:cancel")]
    posted = card_accounts.ledger_amounts(session, keys)
    found: list[Discrepancy] = []
    for payme_id, row in theirs.items():
        tx = ours.get(payme_id)
        if tx is None:
            found.append(Discrepancy(payme_id, "missing_here", f"Payme state {row.get('state')}, amount "
                                     f"{row.get('amount')} tiyin, account {row.get('account')}"))
            continue
        if row.get("amount") != tx.amount:
            found.append(Discrepancy(payme_id, "amount", f"Payme {row.get('amount')} tiyin, ours {tx.amount}"))
        if row.get("state") != tx.state:
            found.append(Discrepancy(payme_id, "state", f"Payme {row.get('state')}, ours {tx.state}"))
    for payme_id, tx in ours.items():
        if payme_id not in theirs:
            found.append(Discrepancy(payme_id, "missing_there", f"our state {tx.state}, amount {tx.amount} tiyin"))
        found += _ledger_check(tx, posted)
    return found


def _ledger_check(tx: PaymeTransaction, posted: dict[str, Decimal]) -> list[Discrepancy]:
    """Our transaction against the ledger: performed ⇒ the top-up posted; cancelled after perform ⇒
    also its reversal; never performed ⇒ nothing posted."""
    key = _ledger_key(tx)
    amount = tiyin_to_sum(tx.amount)
    money_in, money_back = posted.get(key), posted.get(f"{key}:cancel")
    out = []
    if tx.state in (PaymeState.PERFORMED, PaymeState.CANCELLED_AFTER_PERFORM) and money_in != amount:
        out.append(Discrepancy(tx.payme_id, "ledger_missing", f"{key}: expected {amount}, ledger {money_in}"))
    if tx.state == PaymeState.CANCELLED_AFTER_PERFORM and money_back != -amount:
        out.append(Discrepancy(tx.payme_id, "ledger_missing", f"{key}:cancel: expected {-amount}, ledger {money_back}"))
    if tx.state in (PaymeState.CREATED, PaymeState.CANCELLED) and (money_in is not None or money_back is not None):
        out.append(Discrepancy(tx.payme_id, "ledger_unexpected", f"{key}: posted {money_in}/{money_back} "
                               f"for a transaction in state {tx.state}"))
    if tx.state == PaymeState.PERFORMED and money_back is not None:
        out.append(Discrepancy(tx.payme_id, "ledger_unexpected", f"{key}:cancel posted for a performed transaction"))
    return out
