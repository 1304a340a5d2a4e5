"""State of /billing: payments (with the top-up dialog), transactions, closing documents.

Every public handler resolves the caller again (``_act``) and the services check the role and the
organisation; arguments from the browser are validated here (ids, pages, filters) and again by the
services (amounts). Public vars hold only formatted view data (strings); ids of the organisation
and the user stay in the base state's backend vars. Downloads go to the browser as data
(``rx.download(data=...)``), never through the public ``/_upload``.

Query parameters: ``?tab=payments|transactions|documents``; ``?topup=AMOUNT`` opens the top-up
dialog pre-filled (the shortfall path of an order or a licence increase).

Card payments: when Payme or Click is configured and the organisation is billed in сум, the page
shows its account number and the top-up dialog offers "Pay by card (Payme)" / "Pay with Click",
which leave for the gateway's page with the amount typed (``pay_by_card``); the gateway's own calls
create and credit the payment (``services/billing/payme``, ``click``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import reflex as rx

from ..i18n.format import format_month
from noventiq_panel.services.billing import card_accounts, documents, esf, invoices, payme, transactions
from noventiq_panel.services.billing import click as click_gateway
from ..services.core.errors import DomainError, InvalidInput, NotAuthenticated
from ..services.core.money import parse_amount, to_decimal
from .base import EXPORT_FORMATS, BaseState
from .formatting import flag, fmt_date, fmt_datetime, fmt_money
from .inputs import form_date, parse_id, shown_date
from .paging import clamp_page, fetch_page, page_count
from .parts import BalanceFigures

TABS = ("payments", "transactions", "documents")
ALL = "all"
PAY_STATUSES = (ALL,) + invoices.STATUSES
TX_KINDS = (ALL,) + transactions.KINDS
PAGE_SIZE = 20
CARD_PROVIDERS = ("payme", "click")
STATUS_COLORS = {"pending": "blue", "paid": "green", "overdue": "red", "cancelled": "gray", "failed": "orange"}
KIND_COLORS = {"topup": "green", "charge": "red", "usage": "orange", "refund": "blue", "adjustment": "gray"}


def _choice(value: Any, allowed: tuple[str, ...], default: str = ALL) -> str:
    return value if isinstance(value, str) and value in allowed else default


# ---------------------------------------------------------------- loaders (worker thread, one session)

def _load_summary(session, actor):
    return invoices.billing_summary(session, actor)


def _load_payments(session, actor, status: str, page: int):
    status_arg = None if status == ALL else status
    return fetch_page(lambda offset, limit: invoices.list_payments(session, actor, status=status_arg, offset=offset,
                                                                   limit=limit), page, PAGE_SIZE)


def _tx_args(filters: dict[str, str]) -> dict[str, Any]:
    return {
        "start": filters.get("start") or None,
        "end": filters.get("end") or None,
        "kind": None if filters.get("kind", ALL) == ALL else filters["kind"],
        "subscription_id": None if filters.get("subscription", ALL) == ALL else int(filters["subscription"]),
        "group_usage": filters.get("group") == "1",
    }


def _load_transactions(session, actor, filters: dict[str, str], page: int):
    args = _tx_args(filters)
    return fetch_page(lambda offset, limit: transactions.list_transactions(session, actor, offset=offset, limit=limit,
                                                                           **args), page, PAGE_SIZE)


def _load_subscriptions(session, actor):
    return transactions.subscription_options(session, actor)


def _load_documents(session, actor, year: str, page: int):
    year_arg = None if year == ALL else int(year)
    rows, total, page = fetch_page(lambda offset, limit: documents.list_documents(session, actor, year=year_arg,
                                                                                  offset=offset, limit=limit),
                                   page, PAGE_SIZE)
    return rows, total, page, documents.list_years(session, actor)


def _load_card(session, actor):
    """(card options, Payme configured, Click configured)."""
    return card_accounts.card_options(session, actor), payme.configured(), click_gateway.configured()


def _load_all(session, actor, pay_status, pay_page, tx_filters, tx_page, doc_year, doc_page):
    return (_load_summary(session, actor), _load_payments(session, actor, pay_status, pay_page),
            _load_transactions(session, actor, tx_filters, tx_page), _load_subscriptions(session, actor),
            _load_documents(session, actor, doc_year, doc_page), _load_card(session, actor))


def _card_url(session, actor, amount: str, provider: str, lang: str) -> str | None:
    """The gateway's page for a top-up by card (None when that gateway is not configured)."""
    topup = card_accounts.card_topup(session, actor, amount)
    if provider == "payme":
        return payme.checkout_url("org", topup.account_number, topup.amount, topup.return_url,
                                  lang=lang if lang in ("ru", "uz", "en") else "ru")
    return click_gateway.pay_url(topup.account_number, topup.amount, topup.return_url)


def _export(session, actor, fmt: str, filters: dict[str, str], locale: str):
    return transactions.export_transactions(session, actor, fmt, locale=locale, **_tx_args(filters))


def _topup(session, actor, amount: str, method: str):
    p = invoices.request_topup(session, actor, amount, method=method)
    return p.id, p.number


class BillingState(BalanceFigures, BaseState):
    loaded: bool = False
    tab: str = "payments"

    # payments
    pay_rows: list[dict[str, str]] = []
    pay_status: str = ALL
    pay_page: int = 1
    pay_pages: int = 1
    pay_total: int = 0

    # top-up dialog
    topup_open: bool = False
    topup_step: str = "form"  # form | confirm | done
    topup_amount: str = ""
    topup_amount_label: str = ""
    topup_method: str = "bank_transfer"
    topup_method_label: str = ""
    topup_error: str = ""
    topup_hint: str = ""
    topup_number: str = ""
    topup_busy: bool = False
    methods: list[dict[str, str]] = []

    # card payments (shown only when a gateway is configured and the organisation is billed in сум)
    card_account: str = ""
    card_payme: bool = False
    card_click: bool = False

    # transactions
    tx_rows: list[dict[str, str]] = []
    tx_page: int = 1
    tx_pages: int = 1
    tx_total: int = 0
    tx_start: str = ""  # ISO dates of the transactions filter
    tx_end: str = ""
    tx_kind: str = ALL
    tx_sub: str = ALL
    tx_group: bool = True  # a day's usage of a subscription in one row (hourly plans post 24 entries a day)
    sub_options: list[dict[str, str]] = []
    exporting: bool = False

    # documents
    doc_rows: list[dict[str, str]] = []
    doc_year: str = ALL
    doc_years: list[str] = []
    doc_page: int = 1
    doc_pages: int = 1
    doc_total: int = 0

    # backend only
    _tz: str = "Asia/Tashkent"
    _topup_min: str = "0"
    _topup_max: str = "0"
    _topup_value: str = ""
    _topup_payment_id: int = 0
    _method_codes: list[str] = []

    @rx.var
    def tx_start_shown(self) -> str:
        return shown_date(self.tx_start, self.locale)

    @rx.var
    def tx_end_shown(self) -> str:
        return shown_date(self.tx_end, self.locale)

    # ------------------------------------------------------------ view conversion

    def _show_summary(self, s: invoices.BillingSummary) -> None:
        lang = self._lang
        self._tz = s.timezone
        self._show_balance(currency=s.currency, balance=s.balance, credit_limit=s.credit_limit,
                           available=s.available, billing_mode=s.billing_mode)
        self._topup_min = str(s.topup_min)
        self._topup_max = str(s.topup_max)
        self.topup_hint = self._t("billing.topup.amount_hint", min=fmt_money(s.topup_min, s.currency, lang),
                                  max=fmt_money(s.topup_max, s.currency, lang))
        self.methods = [{"code": code, "label": self._t(key)} for code, key in s.methods]
        self._method_codes = [code for code, _key in s.methods]
        if self.topup_method not in self._method_codes and self._method_codes:
            self.topup_method = self._method_codes[0]

    def _show_card(self, options: card_accounts.CardOptions, payme_on: bool, click_on: bool) -> None:
        self.card_payme = options.payable and payme_on
        self.card_click = options.payable and click_on
        self.card_account = options.account_number if (self.card_payme or self.card_click) else ""

    def _show_payments(self, rows, total: int, page: int) -> None:
        lang, tz = self._lang, self._tz
        self.pay_rows = [
            {
                "id": str(r.id),
                "number": r.number,
                "date": fmt_date(r.created_at, lang, tz),
                "amount": fmt_money(r.amount, r.currency, lang),
                "paid": fmt_money(r.paid_amount, r.currency, lang),
                "kind": self._t(f"billing.kind.{r.kind}"),
                "due": fmt_date(r.due_date, lang) if r.due_date else "—",
                "status": self._t(f"billing.status.{r.status}"),
                "status_color": STATUS_COLORS.get(r.status, "gray"),
            }
            for r in rows
        ]
        self.pay_total = total
        self.pay_pages = page_count(total, PAGE_SIZE)
        self.pay_page = page

    def _show_transactions(self, rows, total: int, page: int) -> None:
        lang, tz = self._lang, self._tz
        self.tx_rows = [
            {
                "id": str(r.id),
                # a day's usage in one row: its day, not the hour of its last entry
                "date": (fmt_date(r.occurred_at, lang, tz, format="short") if r.entries > 1
                         else fmt_datetime(r.occurred_at, lang, tz, format="short")),
                "kind": self._t(f"billing.tx.kind.{r.kind}"),
                "kind_color": KIND_COLORS.get(r.kind, "gray"),
                "description": transactions.describe(r, lang, tz) or (r.payment_number or ""),
                "subscription": r.subscription_name or "—",
                "amount": ("+" if r.amount > 0 else "") + fmt_money(r.amount, r.currency, lang),
                "negative": flag(r.amount < 0),
                "running": fmt_money(r.running_balance, r.currency, lang),
            }
            for r in rows
        ]
        self.tx_total = total
        self.tx_pages = page_count(total, PAGE_SIZE)
        self.tx_page = page

    def _show_subscriptions(self, options) -> None:
        self.sub_options = [{"id": str(i), "name": name} for i, name in options]

    def _show_documents(self, rows, total: int, page: int, years: list[int]) -> None:
        lang, tz = self._lang, self._tz
        self.doc_rows = [
            {
                "id": str(d.id),
                "period": format_month(d.period, lang),
                "number": d.act_number,
                "invoice": d.invoice_number,
                "total": fmt_money(d.total, d.currency, lang),
                "vat": fmt_money(d.vat, d.currency, lang),
                "created": fmt_date(d.created_at, lang, tz),
            }
            for d in rows
        ]
        self.doc_total = total
        self.doc_pages = page_count(total, PAGE_SIZE)
        self.doc_page = page
        self.doc_years = [str(y) for y in years]

    def _tx_filters(self) -> dict[str, str]:
        return {"start": self.tx_start, "end": self.tx_end, "kind": self.tx_kind, "subscription": self.tx_sub,
                "group": "1" if self.tx_group else ""}

    # ------------------------------------------------------------ loading

    @rx.event
    async def load(self):
        params = self.router.url.query_parameters
        self.tab = _choice(params.get("tab"), TABS, "payments")
        try:
            summary, pay, tx, subs, docs, card = await self._view(
                _load_all, self.pay_status, 1, self._tx_filters(), 1, self.doc_year, 1)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._show_summary(summary)
        self._show_payments(*pay)
        self._show_transactions(*tx)
        self._show_subscriptions(subs)
        self._show_documents(*docs)
        self._show_card(*card)
        self.loaded = True
        prefill = params.get("topup")
        if prefill and self.can_write:
            self._prefill_topup(prefill)

    def _prefill_topup(self, raw: Any) -> None:
        """Open the dialog with the amount from ``?topup=`` (at least the minimum top-up)."""
        try:
            amount = to_decimal(str(raw)[:32])
            if amount <= 0:
                return
            amount = max(amount.quantize(Decimal("0.01"), rounding="ROUND_UP"), Decimal(self._topup_min))
        except (DomainError, ArithmeticError, ValueError):
            return
        self.tab = "payments"
        self.topup_amount = f"{amount:.2f}"
        self.topup_step = "form"
        self.topup_error = ""
        self.topup_open = True

    @rx.event
    def set_tab(self, tab: str):
        self.tab = _choice(tab, TABS, "payments")

    # ------------------------------------------------------------ payments

    async def _reload_payments(self, page: int) -> None:
        rows, total, page = await self._view(_load_payments, self.pay_status, page)
        self._show_payments(rows, total, page)

    @rx.event
    async def set_pay_status(self, status: str):
        self.pay_status = _choice(status, PAY_STATUSES)
        return await self._attempt(self._reload_payments(1))

    @rx.event
    async def pay_go_page(self, page: Any):
        return await self._attempt(self._reload_payments(clamp_page(page, self.pay_total, PAGE_SIZE)))

    async def _pdf(self, fn, raw_id: Any, what: str):
        """``fn(session, actor, id) -> (filename, pdf)`` of one row the browser names, downloaded."""
        try:
            filename, data = await self._act(fn, parse_id(raw_id, what))
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        return self._download(filename, data, "pdf")

    @rx.event
    async def download_invoice(self, payment_id: Any):
        return await self._pdf(invoices.invoice_pdf, payment_id, "payment")

    # ------------------------------------------------------------ top-up dialog

    @rx.event
    def set_topup_open(self, value: bool):
        self.topup_open = bool(value) and self.can_write
        if self.topup_open:
            self.topup_step = "form"
            self.topup_error = ""
            self.topup_number = ""

    @rx.event
    def set_topup_amount(self, value: str):
        self.topup_amount = value[:40] if isinstance(value, str) else ""
        self.topup_error = ""

    @rx.event
    def set_topup_method(self, value: str):
        if isinstance(value, str) and value in self._method_codes:
            self.topup_method = value

    @rx.event
    def topup_review(self):
        """Validate the amount and show the confirmation step (the service validates again)."""
        try:
            amount = parse_amount(self.topup_amount, self.currency or "UZS", minimum=Decimal(self._topup_min),
                                  maximum=Decimal(self._topup_max))
            if self.topup_method not in self._method_codes:
                raise InvalidInput("unknown method", field="method", key="error.billing.method_unknown")
        except DomainError as exc:
            self.topup_error = self._error_text(exc)
            return
        self._topup_value = str(amount)
        self.topup_amount_label = fmt_money(amount, self.currency or "UZS", self._lang)
        self.topup_method_label = next((m["label"] for m in self.methods if m["code"] == self.topup_method), "")
        self.topup_error = ""
        self.topup_step = "confirm"

    @rx.event
    def topup_back(self):
        self.topup_step = "form"

    @rx.event
    async def topup_confirm(self):
        if self.topup_step != "confirm" or not self._topup_value or self.topup_busy:
            return
        self.topup_busy = True
        try:
            payment_id, number = await self._act(_topup, self._topup_value, self.topup_method)
        except Exception as exc:  # noqa: BLE001
            self.topup_busy = False
            self.topup_step = "form"
            if isinstance(exc, DomainError) and not isinstance(exc, NotAuthenticated):
                self.topup_error = self._error_text(exc)
            return self._fail(exc)
        self.topup_busy = False
        self._topup_payment_id = payment_id
        self._topup_value = ""
        self.topup_number = number
        self.topup_step = "done"
        self.topup_amount = ""
        self.pay_status = ALL
        failure = await self._attempt(self._reload_payments(1))
        return failure or self._ok("billing.topup.created", number=number)

    @rx.event
    async def pay_by_card(self, provider: str):
        """Leave for Payme's checkout or Click's pay page with the amount typed in the top-up dialog
        (the service checks the role, the currency and the card limits)."""
        offered = {"payme": self.card_payme, "click": self.card_click}
        if provider not in CARD_PROVIDERS or not offered[provider]:
            self.topup_error = self._t("error.billing.card_unavailable")
            return
        try:
            url = await self._act(_card_url, str(self.topup_amount)[:40], provider, self._lang)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, DomainError) and not isinstance(exc, NotAuthenticated):
                self.topup_error = self._error_text(exc)
                return
            return self._fail(exc)
        if not url:
            self.topup_error = self._t("error.billing.card_unavailable")
            return
        self.topup_error = ""
        self.topup_open = False
        return rx.redirect(url, is_external=True)

    @rx.event
    async def download_topup_invoice(self):
        if not self._topup_payment_id:
            return
        return await BillingState.download_invoice.fn(self, str(self._topup_payment_id))

    # ------------------------------------------------------------ transactions

    async def _reload_transactions(self, page: int) -> None:
        rows, total, page = await self._view(_load_transactions, self._tx_filters(), page)
        self._show_transactions(rows, total, page)

    @rx.event
    async def tx_apply(self, form: dict):
        try:
            form = form if isinstance(form, dict) else {}
            start, end = form_date(form, "start", self.locale), form_date(form, "end", self.locale)
            kind = _choice(form.get("kind"), TX_KINDS)
            sub = form.get("subscription") or ALL
            sub = ALL if sub == ALL else str(parse_id(sub, "subscription"))
            self.tx_start, self.tx_end, self.tx_kind, self.tx_sub = start, end, kind, sub
            await self._reload_transactions(1)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)

    @rx.event
    async def tx_set_group(self, value: Any):
        if not isinstance(value, bool):
            return self._fail(InvalidInput("grouping is on or off", key="error.billing.bad_switch"))
        self.tx_group = value
        return await self._attempt(self._reload_transactions(1))

    @rx.event
    async def tx_reset(self):
        self.tx_start, self.tx_end, self.tx_kind, self.tx_sub, self.tx_group = "", "", ALL, ALL, True
        return await self._attempt(self._reload_transactions(1))

    @rx.event
    async def tx_go_page(self, page: Any):
        return await self._attempt(self._reload_transactions(clamp_page(page, self.tx_total, PAGE_SIZE)))

    @rx.event
    async def export_transactions(self, fmt: str):
        if fmt not in EXPORT_FORMATS:
            return self._fail(InvalidInput("unknown format", key="error.billing.export_format"))
        self.exporting = True
        try:
            filename, data = await self._act(_export, fmt, self._tx_filters(), self._lang)
        except Exception as exc:  # noqa: BLE001
            self.exporting = False
            return self._fail(exc)
        self.exporting = False
        return self._download(filename, data, fmt)

    # ------------------------------------------------------------ documents

    async def _reload_documents(self, page: int) -> None:
        self._show_documents(*await self._view(_load_documents, self.doc_year, page))

    @rx.event
    async def set_doc_year(self, year: str):
        if year != ALL and not (isinstance(year, str) and year.isdigit() and len(year) == 4):
            year = ALL
        self.doc_year = year
        return await self._attempt(self._reload_documents(1))

    @rx.event
    async def doc_go_page(self, page: Any):
        return await self._attempt(self._reload_documents(clamp_page(page, self.doc_total, PAGE_SIZE)))

    @rx.event
    async def download_document(self, doc_id: Any):
        return await self._pdf(documents.document_pdf, doc_id, "document")

    @rx.event
    async def download_esf(self, doc_id: Any, kind: Any = "esf"):
        """The Didox JSON (``kind``: esf | act) of a closing document; the service checks the role
        and says what is missing when it cannot be made, and which values were given after the
        document was issued."""
        try:
            made = await self._act(esf.document_export, parse_id(doc_id, "document"), str(kind))
        except esf.EsfIncomplete as exc:
            return rx.toast.error(esf.describe(exc.missing, self.locale), close_button=True)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        download = rx.download(data=made.content, filename=made.filename, mime_type="application/json")
        notes = made.notes(self.locale)
        if notes:
            return [download, rx.toast.warning(notes, close_button=True, duration=20000)]
        return download
