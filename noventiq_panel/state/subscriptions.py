"""State of /subscriptions: the list (search, filters, sort, paging), the auto-renew switch, the
licence-count dialog, and what the detail and catalog pages share with it: the licence-count change
(``QuantityChange``: preview from the service, then confirmation) and the view helpers.

Thin by design: handlers parse the browser's input, call ``services.subscriptions`` through
``BaseState._act`` (which resolves the caller again every time; the service checks role and
organisation) and turn results into plain string dicts. No rule lives here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import reflex as rx

from ..models import Organisation
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.billing import invoices
from noventiq_panel.services.subscriptions import licence_count, lifecycle, listing, pending_actions
from ..services.core.errors import Conflict, DomainError, InsufficientFunds, InvalidInput
from noventiq_panel.services.subscriptions.quotes import QuantityQuote
from .base import BaseState
from .formatting import flag, fmt_date, fmt_money, text_date
from .inputs import clean_text, parse_id
from .paging import clamp_page, fetch_page, page_count
from .parts import Search

PAGE_SIZE = 20
ALL = "all"
STATUSES = ("active", "trial", "suspended", "pending", "expired", "cancelled")
STATUS_FILTERS = (ALL, "current") + STATUSES
STATUS_COLORS = {"active": "green", "trial": "blue", "suspended": "orange", "pending": "gray",
                 "expired": "gray", "cancelled": "red"}


# --- helpers shared with the detail and catalog pages -----------------------------------------

STALE_QUOTE_KEYS = ("error.price_changed", "error.quote_not_found")


def quote_binding(quote: Any) -> tuple[str, str]:
    """What a confirmation carries back to the service (kept in backend vars, never sent to the
    browser): the preview's server-issued ``quote_id`` ("" for a read-only caller, who gets none)
    and its ``amount_due`` as a string (charged now > 0, refunded now < 0)."""
    return quote.quote_id or "", str(quote.amount_due)


def stale_quote(exc: BaseException) -> bool:
    """The service refused the confirmation because it no longer matches its preview (the price,
    plan, quantity or organisation changed, or the preview expired): show the message and a fresh
    preview, and let the customer confirm again."""
    return isinstance(exc, DomainError) and exc.key in STALE_QUOTE_KEYS


def shortfall_fields(amount: Decimal, currency: str, lang: str) -> dict[str, str]:
    """What a preview shows of a missing balance: the amount, and the top-up link for exactly that
    amount ("" for each when nothing is missing)."""
    if amount <= 0:
        return {"shortfall": "", "shortfall_raw": "", "topup_href": ""}
    return {"shortfall": fmt_money(amount, currency, lang), "shortfall_raw": str(amount),
            "topup_href": f"/billing?topup={amount}"}


def quantity_preview(state: BaseState, q: QuantityQuote) -> dict[str, str]:
    """What a licence-count change does now and at renewal, in the UI language."""
    lang, cur = state._lang, q.currency
    money = lambda v: fmt_money(v, cur, lang)  # noqa: E731
    if q.free:
        now = state._t("subscriptions.qty.now_free", quantity=q.new_quantity)
    elif q.charge_now > 0:
        now = state._t("subscriptions.qty.now_charge", amount=money(q.charge_now), quantity=q.new_quantity,
                       days=q.remaining_days, total=q.total_days)
    elif q.vendor_confirms:
        now = state._t("subscriptions.qty.vendor_refund", amount=money(q.refund_now), removed=q.removed_now)
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
    return {
        "now": now,
        "later": later,
        "old": str(q.old_quantity),
        "new": str(q.new_quantity),
        "charge": money(q.charge_now) if q.charge_now > 0 else "",
        "refund": money(q.refund_now) if q.refund_now > 0 else "",
        "available": money(q.available),
        **shortfall_fields(q.shortfall, cur, lang),
    }


def shortfall_view(state: BaseState, exc: InsufficientFunds) -> dict[str, str]:
    """The message and top-up link of a refused charge."""
    fields = shortfall_fields(exc.shortfall, exc.currency, state._lang)
    return {**fields, "text": state._t("subscriptions.shortfall", amount=fields["shortfall"])}


def status_label(state: BaseState, code: str) -> str:
    return state._t(f"subscriptions.status.{code}")


def model_label(state: BaseState, code: str) -> str:
    return state._t(f"subscriptions.model.{code}")


def auto_renew_shown(sub: dict) -> str:
    """Whether the auto-renew switch applies (a running licence subscription, not a trial), as a flag."""
    return flag(sub["billing_type"] == "license" and not sub["is_trial"] and sub["status"] in ("active", "suspended"))


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
        "status_color": STATUS_COLORS.get(status, "gray"),
        "model": model_label(state, r["payment_model"]),
        "end": end,
        "term_end": end if end == "—" else f"{state._t(end_label)} {end}",
        "end_label": "" if end == "—" else state._t(end_label),
        "quantity": str(r["quantity"]) if licence else "—",
        "auto_renew": flag(r["auto_renew"]),
        "show_auto_renew": auto_renew_shown(r),
        "can_qty": flag(r["can_change_quantity"]),
        "min": str(r["min_quantity"]),
        "max": str(r["max_quantity"]),
    }


# --- database work (worker thread, one session each) ----------------------------------------

def _list(session, actor, search: str, status: str | None, vendor: str | None, sort: str, desc: bool, page: int):
    rows, total, page = fetch_page(
        lambda offset, limit: listing.list_subscriptions(session, actor, search=search, status=status, vendor=vendor,
                                                      sort=sort, descending=desc, offset=offset, limit=limit),
        page, PAGE_SIZE)
    org = session.get(Organisation, actor.org_id)
    vendors = catalog.list_vendors(session)
    return rows, total, page, vendors, org.timezone


def _shortfall_invoice_quantity(session, actor, sub_id: int, quantity: str, quote_id: str):
    """An invoice for exactly what is missing for this increase; the increase waits for it.
    The amount is computed again here from a fresh quote (the browser's figure is not trusted); the
    waiting action carries the preview's ``quote_id``, so paying the invoice and confirming the
    preview are one operation (whichever comes second is already done)."""
    q = licence_count.quote_quantity_change(session, actor, sub_id, quantity)
    if q.shortfall <= 0:
        raise Conflict("the balance covers it now", key="subscriptions.error.no_shortfall")
    action = pending_actions.pending_action_for_quantity(actor, sub_id, q.new_quantity, quote_id=quote_id or None)
    return invoices.request_shortfall_invoice(session, actor, q.shortfall, action).number


class QuantityChange(BaseState, mixin=True):
    """The licence-count change of one subscription: the number typed, the service's preview, the
    confirmation (the money moves there, once per preview: it carries the preview's quote id and
    amount) and the invoice for a shortfall. The list's dialog and the detail's Resources tab use
    it; each says which subscription (``_qty_sub_id``) and what follows a change (``_qty_changed``).
    When the service says the preview is stale, the step shows the message and a fresh preview."""

    qty_value: str = ""
    qty_step: str = "form"  # form | confirm
    qty_error: str = ""
    qty_preview: dict[str, str] = {}
    qty_busy: bool = False
    qty_invoice: str = ""

    _qty_quantity: str = ""  # the number the preview is for
    _qty_quote_id: str = ""
    _qty_amount: str = ""

    def _qty_sub_id(self) -> int:
        raise NotImplementedError

    async def _qty_changed(self) -> None:
        raise NotImplementedError

    def _qty_reset(self) -> None:
        self.qty_step, self.qty_error, self.qty_preview, self.qty_invoice = "form", "", {}, ""
        self._qty_quantity = self._qty_quote_id = self._qty_amount = ""

    @rx.event
    def qty_back(self):
        self.qty_step, self.qty_error, self.qty_invoice = "form", "", ""

    def _qty_show(self, quote: QuantityQuote) -> None:
        self.qty_preview = quantity_preview(self, quote)
        self._qty_quantity = str(quote.new_quantity)
        self._qty_quote_id, self._qty_amount = quote_binding(quote)

    @rx.event
    async def preview_qty(self, form: dict):
        """Ask the service what the change to the number typed (the form's ``quantity``: one event
        per preview, none per keystroke) would do; it issues the quote the confirmation binds to."""
        self.qty_value = clean_text(form.get("quantity", "") if isinstance(form, dict) else "", 12)
        try:
            quote = await self._act(licence_count.quote_quantity_change, self._qty_sub_id(), self.qty_value)
        except InvalidInput as exc:
            self.qty_error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._qty_show(quote)
        self.qty_step = "confirm"
        self.qty_invoice = self.qty_error = ""

    async def _qty_requote(self, exc: DomainError):
        """The confirmation was refused as stale: a fresh preview of the same number, with the message."""
        try:
            quote = await self._act(licence_count.quote_quantity_change, self._qty_sub_id(), self._qty_quantity)
        except Exception as again:  # noqa: BLE001 - e.g. the subscription changed meanwhile
            self.qty_step, self.qty_preview, self.qty_invoice, self.qty_error = "form", {}, "", ""
            return self._fail(again)
        self._qty_show(quote)
        self.qty_invoice = ""
        self.qty_error = self._error_text(exc)
        return None

    @rx.event
    async def confirm_qty(self):
        """Carry the previewed change out: the money moves here, once per preview (a second
        confirmation of the same preview is answered as already done)."""
        if self.qty_busy or self.qty_step != "confirm":
            return
        self.qty_busy = True
        yield
        try:
            outcome = await self._act(licence_count.change_quantity, self._qty_sub_id(), self._qty_quantity,
                                      quote_id=self._qty_quote_id or None, amount=self._qty_amount or None)
        except InsufficientFunds as exc:
            self.qty_busy = False
            self.qty_preview = {**self.qty_preview, **shortfall_view(self, exc)}
            return
        except Exception as exc:  # noqa: BLE001
            self.qty_busy = False
            if stale_quote(exc):
                event = await self._qty_requote(exc)
                if event is not None:
                    yield event
                return
            yield self._fail(exc)
            return
        self.qty_busy = False
        await self._qty_changed()
        if outcome.at_vendor:
            yield self._ok("subscriptions.qty.done_at_vendor")
        else:
            yield self._ok("subscriptions.qty.done", quantity=outcome.quantity)

    @rx.event
    async def request_qty_invoice(self):
        """An invoice for the shortfall; the increase is carried out when it is paid."""
        try:
            number = await self._act(_shortfall_invoice_quantity, self._qty_sub_id(), self._qty_quantity,
                                     self._qty_quote_id)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.qty_invoice = number
        return self._ok("subscriptions.invoice_created", number=number)


class SubscriptionsState(QuantityChange, Search, BaseState):
    loaded: bool = False
    rows: list[dict[str, str]] = []
    total: int = 0
    page: int = 1
    pages: int = 1
    status_filter: str = "current"
    vendor_filter: str = ALL
    sort_key: str = "term_end"
    sort_desc: bool = False
    vendor_options: list[dict[str, str]] = []

    # the licence-count dialog (the change itself: QuantityChange)
    qty_open: bool = False
    qty_sub_id: str = ""
    qty_name: str = ""
    qty_current: str = ""
    qty_min: str = "1"
    qty_max: str = "1"

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
            rows, total, page, vendors, tz = await self._view(_list, self.search, status, vendor, self.sort_key,
                                                             self.sort_desc, self.page)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return self._fail(exc)
        self.rows = [row_view(self, r, tz) for r in rows]
        self.total, self.page = total, page
        self.pages = page_count(total, PAGE_SIZE)
        self.vendor_options = [{"value": v["code"], "label": v["name"]} for v in vendors]
        self.loaded = True

    async def _search_changed(self):
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
        if key not in listing.SORTS:
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
            await self._act(lifecycle.set_auto_renew, sid, enabled)
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
        self._qty_reset()
        self.qty_open = True

    @rx.event
    def set_qty_open(self, value: bool):
        self.qty_open = bool(value) if isinstance(value, bool) else False
        if not self.qty_open:
            self.qty_busy = False

    def _qty_sub_id(self) -> int:
        return parse_id(self.qty_sub_id)

    async def _qty_changed(self) -> None:
        self.qty_open = False
        await self._reload()
