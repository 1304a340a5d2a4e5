"""State of /catalog: products grouped by category and vendor with their plans (billing variants),
search, and the order dialog (variant, quantity, preview from the service, confirmation).

The confirmation carries the preview's server-issued quote id and amount (backend vars), so a
double click or a retried request cannot charge twice, and a price that changed since the preview
is refused by the service: the dialog then shows the message and the new preview to confirm again.
Prices shown are the service's; nothing is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import reflex as rx

from ..i18n import LOCALES
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.subscriptions import guest_orders
from noventiq_panel.services.billing import invoices
from noventiq_panel.services.subscriptions import ordering, pending_actions
from ..services.core.errors import Conflict, DomainError, InsufficientFunds
from .base import BaseState
from .formatting import flag, fmt_money, text_date
from .inputs import clean_text, parse_id
from .parts import Search
from .tenant import TenantStep
from .subscriptions import model_label, quote_binding, shortfall_fields, shortfall_view, stale_quote


@dataclass
class PlanView:
    id: str = ""
    code: str = ""
    name: str = ""
    model: str = ""
    price: str = ""  # per seat per term, plan currency
    price_org: str = ""  # the same in the organisation's currency ("" when no rate)
    period_price: str = ""  # per billing period (a month for yearly billed monthly)
    is_trial: str = ""
    trial: str = ""


@dataclass
class ProductView:
    id: str = ""
    name: str = ""
    vendor: str = ""
    description: str = ""
    has_trial: str = ""
    plans: list[PlanView] = field(default_factory=list)


@dataclass
class VendorView:
    code: str = ""
    name: str = ""
    products: list[ProductView] = field(default_factory=list)


@dataclass
class CategoryView:
    name: str = ""
    vendors: list[VendorView] = field(default_factory=list)
    products: list[ProductView] = field(default_factory=list)  # of all its vendors, by vendor


def order_terms(state: BaseState, q, now_key: str) -> tuple[str, str]:
    """What an order's quote charges now and later, in the UI language (the customer's order
    dialog and the visitor's, which names the charge with ``now_key``)."""
    lang, cur = state._lang, q.currency
    if q.is_trial:
        return state._t("catalog.order.trial_now", date=text_date(q.renewal_date, lang)), ""
    if q.is_payg:
        return state._t("catalog.order.payg_now"), ""
    later_key = "catalog.order.recurring_month" if q.recurring_period == "month" else "catalog.order.recurring_year"
    return (state._t(now_key, amount=fmt_money(q.price_now, cur, lang)),
            state._t(later_key, amount=fmt_money(q.recurring_price, cur, lang),
                     date=text_date(q.next_charge_date, lang)))


def _load(session, actor, search: str, category: str | None):
    view = catalog.list_catalog(session, actor, search=search, category=category)
    return view, catalog.list_categories(session)


def _load_public(session, search: str, category: str | None):
    """A visitor without a session: the same catalog, priced for a new customer."""
    categories = catalog.list_categories(session)
    return guest_orders.public_catalog(session, search=search, category=category), categories


def _shortfall_invoice_order(session, actor, plan_id: int, quantity: str, trial_convert: bool, quote_id: str):
    """An invoice for exactly what the order misses; the order is placed once it is paid. The
    amount comes from a fresh quote, never from the browser; the waiting order carries the
    preview's ``quote_id`` (paying and confirming the preview are one operation)."""
    q = ordering.quote_order(session, actor, plan_id, quantity)
    if q.shortfall <= 0:
        raise Conflict("the balance covers it now", key="subscriptions.error.no_shortfall")
    action = pending_actions.pending_action_for_order(actor, plan_id, q.quantity, trial_convert=trial_convert,
                                                      quote_id=quote_id or None)
    return invoices.request_shortfall_invoice(session, actor, q.shortfall, action).number


class CatalogState(TenantStep, Search, BaseState):
    # "" until load ran, "guest" (no session: the public storefront), "user" (signed in)
    mode: str = ""
    loaded: bool = False
    categories: list[CategoryView] = []
    category_options: list[str] = []
    category: str = "all"
    count: int = 0
    currency: str = ""

    # the order dialog
    order_open: bool = False
    order_step: str = "form"  # form | tenant (the first Microsoft order) | confirm | done
    order_tenant: str = ""  # what the order needs first: "missing" tenant, "unconfirmed" tenant
    order_product: str = ""
    order_variants: list[dict[str, str]] = []
    order_plan_id: str = ""
    order_qty: str = "1"
    order_is_trial: bool = False
    order_trial_convert: bool = False
    order_error: str = ""
    order_preview: dict[str, str] = {}
    order_busy: bool = False
    order_sub_href: str = ""
    order_queued: bool = False  # the order waits for the vendor (provisioning queue)
    order_invoice: str = ""

    _order_quote_id: str = ""  # the preview's quote (see quote_binding)
    _order_amount: str = ""

    @rx.event
    async def load(self):
        params = self.router.url.query_parameters
        self.search = clean_text(params.get("q", ""))
        self.order_open, self.tenant_admin = False, ""  # a page opened afresh: no dialog left open from before
        # The one page a visitor may see without signing in (issue 4, "the first online order").
        self.mode = "user" if await self._ctx() is not None else "guest"
        return await self._reload()

    async def _reload(self):
        category = None if self.category == "all" else self.category
        try:
            if self.mode == "guest":
                view, categories = await self._call(_load_public, self.search, category)
            else:
                view, categories = await self._view(_load, self.search, category)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._show(view, categories)
        self.loaded = True

    def _show(self, view: dict, categories: list[str]) -> None:
        lang = self._lang
        self.currency = view["currency"]
        self.count = view["product_count"]
        self.category_options = categories
        out = []
        for c in view["categories"]:
            vendors = []
            for v in c["vendors"]:
                products = []
                for p in v["products"]:
                    plans = [self._plan_view(pl, lang) for pl in p["plans"]]
                    products.append(ProductView(id=str(p["id"]), name=p["name"], vendor=v["name"],
                                                description=p["description"], has_trial=flag(p["has_trial"]),
                                                plans=plans))
                vendors.append(VendorView(code=v["code"], name=v["name"], products=products))
            out.append(CategoryView(name=c["name"] or self._t("catalog.other"), vendors=vendors,
                                    products=[p for v in vendors for p in v.products]))
        self.categories = out

    def _plan_view(self, pl: dict, lang: str) -> PlanView:
        payg = pl["billing_type"] == "payg"
        model = "payg" if payg else ("trial" if pl["is_trial"] else (
            "year_monthly" if pl["term"] == "year" and pl["billing_frequency"] == "monthly" else (pl["term"] or "month")))
        price = period = price_org = ""
        if payg:
            price = self._t("catalog.payg_price", markup=str(pl["usage_markup_pct"].normalize()))
        elif pl["is_trial"]:
            price = self._t("catalog.free")
        else:
            price = fmt_money(pl["price"], pl["currency"], lang)
            if pl["price_org"] is not None and pl["currency"] != pl["org_currency"]:
                price_org = fmt_money(pl["price_org"], pl["org_currency"], lang)
            if model == "year_monthly":
                period = self._t("catalog.per_month", amount=fmt_money(
                    pl["period_price_org"] if pl["period_price_org"] is not None else pl["period_price"],
                    pl["org_currency"] if pl["period_price_org"] is not None else pl["currency"], lang))
        return PlanView(
            id=str(pl["id"]), code=pl["code"], name=pl["name"], model=model_label(self, model), price=price,
            price_org=price_org, period_price=period, is_trial=flag(pl["is_trial"]),
            trial=self._t("catalog.trial_days", days=pl["trial_days"], max=pl["max_quantity"]) if pl["is_trial"] else "",
        )

    @rx.event
    async def set_guest_locale(self, locale: str):
        """The storefront's language switch: the prices and labels are formatted on the server, so
        the catalog is loaded again in the new language."""
        code = str(locale)
        if code not in LOCALES or self.mode != "guest":
            return
        self.locale = code
        return await self._reload()

    async def _search_changed(self):
        return await self._reload()

    @rx.event
    async def set_category(self, value: str):
        value = clean_text(value, 128)
        if value != "all" and value not in self.category_options:
            return
        self.category = value
        return await self._reload()

    # --- the order dialog ----------------------------------------------------------------------
    def _variants_of(self, plan_id: str) -> tuple[str, list[dict[str, str]]]:
        for c in self.categories:
            for v in c.vendors:
                for p in v.products:
                    if any(pl.id == plan_id for pl in p.plans):
                        return p.name, [{"id": pl.id, "label": f"{pl.name} — {pl.model}", "trial": pl.is_trial}
                                        for pl in p.plans]
        return "", []

    @rx.event
    def open_order(self, plan_id: str):
        plan_id = clean_text(plan_id, 12)
        product, variants = self._variants_of(plan_id)
        if not variants:
            return
        self.order_product, self.order_variants = product, variants
        self.order_plan_id = plan_id
        self.order_is_trial = any(v["id"] == plan_id and v["trial"] == "1" for v in variants)
        self.order_qty, self.order_trial_convert = "1", False
        self.order_step, self.order_error, self.order_preview = "form", "", {}
        self.order_sub_href, self.order_invoice = "", ""
        self._order_quote_id = self._order_amount = ""
        self.order_tenant = self.tenant_error = self.tenant_domain_note = self.tenant_admin = ""
        self.tenant_mode, self.tenant_prefix = "existing", ""
        self.order_open = True

    @rx.event
    def set_order_open(self, value: bool):
        self.order_open = value if isinstance(value, bool) else False
        if not self.order_open:
            self.order_busy = False

    @rx.event
    def set_order_plan(self, plan_id: str):
        plan_id = clean_text(plan_id, 12)
        match = next((v for v in self.order_variants if v["id"] == plan_id), None)
        if match is not None:
            self.order_plan_id = plan_id
            self.order_is_trial = match["trial"] == "1"
            self.order_error = ""

    @rx.event
    def set_order_qty(self, value: str):
        self.order_qty = clean_text(value, 12)
        self.order_error = ""

    @rx.event
    def set_order_trial_convert(self, value: bool):
        self.order_trial_convert = value is True

    @rx.event
    def order_back(self):
        self.order_step, self.order_error, self.order_invoice = "form", "", ""

    @rx.event
    async def preview_order(self):
        return await self._preview()

    async def _preview(self):
        try:
            plan_id = parse_id(self.order_plan_id)
            q = await self._act(ordering.quote_order, plan_id, self.order_qty)
        except DomainError as exc:
            self.order_error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._order_show(q)
        self.order_tenant = q.tenant
        self.order_step = "tenant" if q.tenant else "confirm"
        self.order_error = self.order_invoice = ""

    async def _tenant_saved(self):
        """The first Microsoft order's tenant is saved: the order's preview, again."""
        return await self._preview()

    async def _order_requote(self, exc: DomainError):
        """The confirmation was refused as stale: a fresh preview of the same order, with the message."""
        try:
            q = await self._act(ordering.quote_order, parse_id(self.order_plan_id), self.order_qty)
        except Exception as again:  # noqa: BLE001
            self.order_step, self.order_preview, self.order_invoice = "form", {}, ""
            if isinstance(again, DomainError):
                self.order_error = self._error_text(again)
                return None
            return self._fail(again)
        self._order_show(q)
        self.order_invoice = ""
        self.order_error = self._error_text(exc)
        return None

    def _order_show(self, q) -> None:
        lang, cur = self._lang, q.currency
        now, later = order_terms(self, q, "catalog.order.now")
        rate = ""
        if q.plan_currency != cur and not q.is_trial and not q.is_payg:
            rate = self._t("catalog.order.rate", currency=q.plan_currency, rate=fmt_money(q.fx_rate, cur, lang),
                           date=text_date(q.fx_date, lang))
        self.order_preview = {
            "product": q.product_name,
            "plan": q.plan_name,
            "quantity": str(q.quantity),
            "now": now,
            "later": later,
            "rate": rate,
            "available": fmt_money(q.available, cur, lang),
            "manual": self._t("catalog.order.manual") if q.manual else "",
            **shortfall_fields(q.shortfall, cur, lang),
        }
        self._order_quote_id, self._order_amount = quote_binding(q)

    @rx.event
    async def confirm_order(self):
        if self.order_busy or self.order_step != "confirm":
            return
        self.order_busy = True
        yield
        try:
            plan_id = parse_id(self.order_plan_id)
            outcome = await self._act(ordering.order, plan_id, self.order_qty,
                                      trial_convert=bool(self.order_trial_convert and self.order_is_trial),
                                      quote_id=self._order_quote_id or None, amount=self._order_amount or None)
        except InsufficientFunds as exc:
            self.order_busy = False
            view = shortfall_view(self, exc)
            self.order_preview = {**self.order_preview, "shortfall": view["shortfall"],
                                  "topup_href": view["topup_href"]}
            return
        except Exception as exc:  # noqa: BLE001
            self.order_busy = False
            if stale_quote(exc):
                event = await self._order_requote(exc)
                if event is not None:
                    yield event
                return
            yield self._fail(exc)
            return
        self.order_busy = False
        self.order_step = "done"
        self.order_sub_href = f"/subscriptions/{outcome.subscription_id}"
        self.order_queued = outcome.status == "pending"
        yield self._ok("catalog.order.queued" if self.order_queued else "catalog.order.done")

    @rx.event
    async def request_order_invoice(self):
        try:
            plan_id = parse_id(self.order_plan_id)
            number = await self._act(_shortfall_invoice_order, plan_id, self.order_qty,
                                     bool(self.order_trial_convert and self.order_is_trial),
                                     self._order_quote_id)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.order_invoice = number
        return self._ok("subscriptions.invoice_created", number=number)
