"""State of /subscriptions: the list (search, filters, sort, paging), the auto-renew switch, the
licence-count dialog (preview from the service, then confirmation), and the view helpers the detail
and catalog pages share.

Thin by design: handlers parse the browser's input, call ``services.subscriptions`` through
``BaseState._act`` (which resolves the caller again every time; the service checks role and
organisation) and turn results into plain string dicts. No rule lives here.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import reflex as rx

from ..components.money import fmt_date, fmt_money
from ..components.tables import clamp_page, page_count
from ..models import Organisation
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.billing import payments
from noventiq_panel.services.subscriptions import subscriptions as subs
from ..services.core.errors import Conflict, DomainError, InsufficientFunds, InvalidInput
from ..services.subscriptions.subscriptions import QuantityQuote
from .base import BaseState

PAGE_SIZE = 20
ALL = "all"
STATUSES = ("active", "trial", "suspended", "pending", "expired", "cancelled")
STATUS_FILTERS = (ALL, "current") + STATUSES
MODELS = ("month", "year", "year_monthly", "payg", "trial")
STATUS_COLORS = {"active": "green", "trial": "blue", "suspended": "orange", "pending": "gray",
                 "expired": "gray", "cancelled": "red"}
STATUS_KEYS = [f"subscriptions.status.{s}" for s in STATUSES]
MODEL_KEYS = [f"subscriptions.model.{m}" for m in MODELS]
MAX_TEXT = 100


# --- helpers shared with the detail and catalog pages -----------------------------------------

def flag(value: Any) -> str:
    """Booleans travel to the browser as "1" / "" (view dicts hold strings only)."""
    return "1" if value else ""


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Browser text input: a string, trimmed, at most ``limit`` characters."""
    return str(value).strip()[:limit] if isinstance(value, (str, int)) and not isinstance(value, bool) else ""


def parse_id(value: Any) -> int:
    """A positive id from browser input; anything else is InvalidInput (the service checks ownership)."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isdigit() or len(text) > 10 or int(text) <= 0:
        raise InvalidInput("bad id", key="error.invalid")
    return int(text)


def text_date(value, lang: str, tz: str | None = None) -> str:
    """A date inside a sentence: '29 января 2027' (no 'г.' to clash with a full stop)."""
    return fmt_date(value, lang, tz, format="text") if value is not None else "—"


def new_token() -> str:
    """A fresh idempotency token for one confirmation (order request id / change id)."""
    return uuid.uuid4().hex


def quantity_preview(state: BaseState, q: QuantityQuote) -> dict[str, str]:
    """What a licence-count change does now and at renewal, in the UI language."""
    lang, cur = state._lang, q.currency
    money = lambda v: fmt_money(v, cur, lang)  # noqa: E731
    if q.free:
        now = state._t("subscriptions.qty.now_free", quantity=q.new_quantity)
    elif q.charge_now > 0:
        now = state._t("subscriptions.qty.now_charge", amount=money(q.charge_now), quantity=q.new_quantity,
                       days=q.remaining_days, total=q.total_days)
    elif q.refund_now > 0:
        now = state._t("subscriptions.qty.now_refund", amount=money(q.refund_now), removed=q.removed_now,
                       quantity=q.quantity_now, days=q.remaining_days, total=q.total_days)
    else:
        now = state._t("subscriptions.qty.now_nothing")
    later = ""
    if q.scheduled_quantity is not None:
        later = state._t("subscriptions.qty.later_decrease", quantity=q.scheduled_quantity,
                         date=text_date(q.effective_date, lang))
    elif not q.free and q.recurring_price:
        later = state._t("subscriptions.qty.later_price", amount=money(q.recurring_price))
    shortfall = q.shortfall if q.shortfall > 0 else Decimal("0")
    return {
        "now": now,
        "later": later,
        "old": str(q.old_quantity),
        "new": str(q.new_quantity),
        "charge": money(q.charge_now) if q.charge_now > 0 else "",
        "refund": money(q.refund_now) if q.refund_now > 0 else "",
        "available": money(q.available),
        "shortfall": money(shortfall) if shortfall else "",
        "shortfall_raw": str(shortfall) if shortfall else "",
        "topup_href": f"/billing?topup={shortfall}" if shortfall else "",
    }


def shortfall_view(state: BaseState, exc: InsufficientFunds) -> dict[str, str]:
    """The message and top-up link of a refused charge."""
    amount = exc.shortfall if exc.shortfall > 0 else Decimal("0")
    return {
        "shortfall": fmt_money(amount, exc.currency, state._lang),
        "shortfall_raw": str(amount),
        "topup_href": f"/billing?topup={amount}",
        "text": state._t("subscriptions.shortfall", amount=fmt_money(amount, exc.currency, state._lang)),
    }


def status_label(state: BaseState, code: str) -> str:
    return state._t(f"subscriptions.status.{code}")


def model_label(state: BaseState, code: str) -> str:
    return state._t(f"subscriptions.model.{code}")


def row_view(state: BaseState, r: dict, tz: str) -> dict[str, str]:
    """A list row of ``subscriptions.list_subscriptions`` as strings for the table."""
    lang = state._lang
    status = r["status"]
    licence = r["billing_type"] == "license"
    if r["is_trial"] and r["trial_ends_at"]:
        end_label, end = "subscriptions.end.trial", fmt_date(r["trial_ends_at"], lang, tz)
    elif licence and r["term_end"] and status in ("active", "suspended"):
        renews = r["auto_renew"] and not r["cancel_at_term_end"]
        end_label = "subscriptions.end.renews" if renews else "subscriptions.end.ends"
        end = fmt_date(r["end_date"], lang)
    elif r["term_end"]:
        end_label, end = "subscriptions.end.ended", fmt_date(r["end_date"], lang)
    else:
        end_label, end = "subscriptions.end.none", "—"
    return {
        "id": str(r["id"]),
        "href": f"/subscriptions/{r['id']}",
        "name": r["name"],
        "product": r["product"],
        "plan": r["plan"],
        "vendor": r["vendor"],
        "portal_url": r["portal_url"] or "",
        "status": status_label(state, status),
        "status_code": status,
        "status_color": STATUS_COLORS.get(status, "gray"),
        "model": model_label(state, r["payment_model"]),
        "end": end,
        "term_end": end if end == "—" else f"{state._t(end_label)} {end}",
        "end_label": "" if end == "—" else state._t(end_label),
        "quantity": str(r["quantity"]) if licence else "—",
        "auto_renew": flag(r["auto_renew"]),
        "show_auto_renew": flag(licence and not r["is_trial"] and status in ("active", "suspended")),
        "can_qty": flag(r["can_change_quantity"]),
        "min": str(r["min_quantity"]),
        "max": str(r["max_quantity"]),
    }


# --- database work (worker thread, one session each) ----------------------------------------

def _list(session, actor, search: str, status: str | None, vendor: str | None, sort: str, desc: bool, page: int):
    rows, total = subs.list_subscriptions(session, actor, search=search, status=status, vendor=vendor, sort=sort,
                                          descending=desc, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    org = session.get(Organisation, actor.org_id)
    vendors = catalog.list_vendors(session)
    return rows, int(total), vendors, org.timezone


def _shortfall_invoice_quantity(session, actor, sub_id: int, quantity: str, change_id: str):
    """An invoice for exactly what is missing for this increase; the increase waits for it.
    The amount is computed again here from a fresh quote (the browser's figure is not trusted)."""
    q = subs.quote_quantity_change(session, actor, sub_id, quantity)
    if q.shortfall <= 0:
        raise Conflict("the balance covers it now", key="subscriptions.error.no_shortfall")
    action = subs.pending_action_for_quantity(actor, sub_id, q.new_quantity, change_id=change_id)
    return payments.request_shortfall_invoice(session, actor, q.shortfall, action).number


class SubscriptionsState(BaseState):
    loaded: bool = False
    rows: list[dict[str, str]] = []
    total: int = 0
    page: int = 1
    pages: int = 1
    search: str = ""
    status_filter: str = "current"
    vendor_filter: str = ALL
    sort_key: str = "term_end"
    sort_desc: bool = False
    vendor_options: list[dict[str, str]] = []

    # the licence-count dialog
    qty_open: bool = False
    qty_step: str = "form"  # form | confirm
    qty_sub_id: str = ""
    qty_name: str = ""
    qty_current: str = ""
    qty_min: str = "1"
    qty_max: str = "1"
    qty_value: str = ""
    qty_error: str = ""
    qty_busy: bool = False
    qty_preview: dict[str, str] = {}
    qty_invoice: str = ""

    _change_id: str = ""

    # --- list --------------------------------------------------------------------------------
    @rx.event
    async def load(self):
        params = self.router.url.query_parameters
        status = clean_text(params.get("status", ""))
        self.status_filter = status if status in STATUS_FILTERS else "current"
        self.page = 1
        return await self._reload()

    async def _reload(self):
        status = None if self.status_filter == ALL else self.status_filter
        vendor = None if self.vendor_filter == ALL else self.vendor_filter
        try:
            rows, total, vendors, tz = await self._act(_list, self.search, status, vendor, self.sort_key,
                                                       self.sort_desc, self.page)
            if rows == [] and total > 0 and self.page > 1:  # the page ran past the end (e.g. filtered)
                self.page = clamp_page(self.page, total, PAGE_SIZE)
                rows, total, vendors, tz = await self._act(_list, self.search, status, vendor, self.sort_key,
                                                           self.sort_desc, self.page)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return self._fail(exc)
        self.rows = [row_view(self, r, tz) for r in rows]
        self.total = total
        self.pages = page_count(total, PAGE_SIZE)
        self.vendor_options = [{"value": v["code"], "label": v["name"]} for v in vendors]
        self.loaded = True

    @rx.event
    async def apply_search(self, form: dict):
        self.search = clean_text((form or {}).get("search", "") if isinstance(form, dict) else "")
        self.page = 1
        return await self._reload()

    @rx.event
    async def clear_search(self):
        self.search = ""
        self.page = 1
        return await self._reload()

    @rx.event
    async def set_status_filter(self, value: str):
        value = clean_text(value)
        if value not in STATUS_FILTERS:
            return
        self.status_filter, self.page = value, 1
        return await self._reload()

    @rx.event
    async def set_vendor_filter(self, value: str):
        value = clean_text(value, 64)
        if value != ALL and value not in {v["value"] for v in self.vendor_options}:
            return
        self.vendor_filter, self.page = value, 1
        return await self._reload()

    @rx.event
    async def sort_by(self, key: str):
        key = clean_text(key)
        if key not in subs.SORTS:
            return
        self.sort_desc = (not self.sort_desc) if key == self.sort_key else False
        self.sort_key = key
        return await self._reload()

    @rx.event
    async def go_page(self, page: Any):
        self.page = clamp_page(page, self.total, PAGE_SIZE)
        return await self._reload()

    @rx.event
    async def toggle_auto_renew(self, sub_id: str, enabled: bool):
        try:
            sid = parse_id(sub_id)
            if not isinstance(enabled, bool):
                raise InvalidInput("flag", key="error.invalid_flag")
            await self._act(subs.set_auto_renew, sid, enabled)
        except Exception as exc:  # noqa: BLE001
            await self._reload()
            return self._fail(exc)
        await self._reload()
        return self._ok("subscriptions.auto_renew_on" if enabled else "subscriptions.auto_renew_off")

    # --- the licence-count dialog ----------------------------------------------------------------
    @rx.event
    def open_qty(self, sub_id: str):
        row = next((r for r in self.rows if r["id"] == str(sub_id)), None)
        if row is None:
            return
        self.qty_sub_id, self.qty_name = row["id"], row["name"]
        self.qty_current = self.qty_value = row["quantity"]
        self.qty_min, self.qty_max = row["min"], row["max"]
        self.qty_step, self.qty_error, self.qty_preview, self.qty_invoice = "form", "", {}, ""
        self.qty_open = True

    @rx.event
    def set_qty_open(self, value: bool):
        self.qty_open = bool(value) if isinstance(value, bool) else False
        if not self.qty_open:
            self.qty_busy = False

    @rx.event
    def set_qty_value(self, value: str):
        self.qty_value = clean_text(value, 12)
        self.qty_error = ""

    @rx.event
    def qty_back(self):
        self.qty_step, self.qty_error, self.qty_invoice = "form", "", ""

    @rx.event
    async def preview_qty(self):
        """Ask the service what the change would do; nothing is written."""
        try:
            sid = parse_id(self.qty_sub_id)
            quote = await self._act(subs.quote_quantity_change, sid, self.qty_value)
        except DomainError as exc:
            if isinstance(exc, InvalidInput):
                self.qty_error = self._error(exc)
                return
            return self._fail(exc)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.qty_preview = quantity_preview(self, quote)
        self.qty_step = "confirm"
        self._change_id = new_token()

    @rx.event
    async def confirm_qty(self):
        """Carry the change out (the money moves here, once per confirmation token)."""
        if self.qty_busy or self.qty_step != "confirm":
            return
        self.qty_busy = True
        yield
        try:
            sid = parse_id(self.qty_sub_id)
            outcome = await self._act(subs.change_quantity, sid, self.qty_value, change_id=self._change_id)
        except InsufficientFunds as exc:
            self.qty_busy = False
            self.qty_preview = {**self.qty_preview, **shortfall_view(self, exc)}
            return
        except Exception as exc:  # noqa: BLE001
            self.qty_busy = False
            yield self._fail(exc)
            return
        self.qty_busy = False
        self.qty_open = False
        await self._reload()
        yield self._ok("subscriptions.qty.done", quantity=outcome.quantity)

    @rx.event
    async def request_qty_invoice(self):
        """An invoice for the shortfall; the increase is carried out when it is paid."""
        try:
            sid = parse_id(self.qty_sub_id)
            number = await self._act(_shortfall_invoice_quantity, sid, self.qty_value, self._change_id)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.qty_invoice = number
        return self._ok("subscriptions.invoice_created", number=number)

    def _error(self, exc: DomainError) -> str:
        from ..i18n import error_text

        return error_text(exc, self.locale)
