"""The visitor's order dialog on /catalog (no session): e-mail, name, organisation, tax id,
quantity → the price from the service → confirm → "check your e-mail to set a password" (and the
invoice for a paid plan).

Thin on purpose: every rule (validation, throttling, an existing e-mail, the transaction) is in
``services.subscriptions.guest_orders``; the handlers pass the typed text through and show the result. The
set-password link never reaches the browser: it goes by e-mail only.
"""

from __future__ import annotations

import reflex as rx

from noventiq_panel.services.subscriptions import guest_orders
from ..services.core.errors import DomainError
from .base import BaseState
from .catalog import CatalogState, order_terms
from .formatting import fmt_money, text_date
from .inputs import clean_text

FIELDS = {"email": 254, "name": 255, "org_name": 255, "tax_id": 32, "quantity": 12}


class GuestOrderState(BaseState):
    open: bool = False
    step: str = "form"  # form | confirm | done
    product: str = ""
    plan: str = ""
    is_trial: bool = False
    form: dict[str, str] = {k: "" for k in FIELDS}
    error: str = ""
    preview: dict[str, str] = {}
    busy: bool = False
    done: dict[str, str] = {}

    _plan_id: str = ""

    @rx.event
    async def open_order(self, plan_id: str):
        plan_id = clean_text(plan_id, 12)
        catalog_state = await self.get_state(CatalogState)
        match = next(((p, pl) for c in catalog_state.categories for v in c.vendors for p in v.products
                      for pl in p.plans if pl.id == plan_id), None)
        if match is None:
            return
        product, plan = match
        self._plan_id = plan_id
        self.product, self.plan, self.is_trial = product.name, plan.name, plan.is_trial == "1"
        self.form = {**{k: "" for k in FIELDS}, "quantity": "1"}
        self.step, self.error, self.preview, self.done, self.busy = "form", "", {}, {}, False
        self.open = True

    @rx.event
    def set_open(self, value: bool):
        self.open = value is True
        if not self.open:
            self.busy = False

    @rx.event
    def set_field(self, name: str, value: str):
        if name in FIELDS and self.step == "form":
            self.form = {**self.form, name: clean_text(value, FIELDS[name])}
            self.error = ""

    @rx.event
    def back(self):
        self.step, self.error = "form", ""

    def _fields(self) -> dict:
        return {"email": self.form.get("email", ""), "name": self.form.get("name", ""),
                "org_name": self.form.get("org_name", ""), "tax_id": self.form.get("tax_id", ""),
                "plan_id": self._plan_id, "quantity": self.form.get("quantity", ""), "locale": self._lang}

    @rx.event
    async def preview_order(self):
        if not self._plan_id:
            return
        try:
            q = await self._call(guest_orders.check, **self._fields())
        except DomainError as exc:
            self.error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        now, later = order_terms(self, q, "guest.order.now")
        self.preview = {"summary": self._t("catalog.order.summary", plan=q.plan_name, quantity=str(q.quantity)),
                        "now": now, "later": later, "email": self.form.get("email", "").strip().lower(),
                        "org": self.form.get("org_name", "")}
        self.step, self.error = "confirm", ""

    @rx.event
    async def confirm_order(self):
        if self.busy or self.step != "confirm":
            return
        self.busy = True
        yield
        ip = (self.router.session.client_ip or "")[:64]
        try:
            r = await self._call(guest_orders.guest_order, **self._fields(), ip=ip)
        except DomainError as exc:
            self.busy = False
            self.error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            self.busy = False
            yield self._fail(exc)
            return
        lang = self._lang
        self.done = {
            "email": r.email,
            "trial": (self._t("guest.done.trial_after_confirm") if r.status == "confirm_email" else
                      self._t("guest.done.trial", date=text_date(r.trial_ends_on, lang)) if r.trial_ends_on else ""),
            "invoice": self._t("guest.done.invoice", number=r.invoice_number,
                               amount=fmt_money(r.invoice_amount, r.currency, lang)) if r.invoice_number else "",
            "active": self._t("guest.done.active") if r.subscription_id and not r.trial_ends_on else "",
        }
        self.busy, self.step = False, "done"
