"""State of /subscriptions/[id]: the tabs Overview, Resources, Options, Activation, Usage (with the
"Set budget" dialog) and History of one subscription.

Money moves only after a preview from the service and an explicit confirmation; every handler
resolves the caller again (``_act``) and the services check role and organisation (a foreign or
missing id is "not found"). View data is plain strings; the subscription id is parsed from the URL
on every load and kept in a backend var.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import reflex as rx

from ..i18n import format as fmt
from ..models import Organisation
from noventiq_panel.services.reporting import iaas
from noventiq_panel.services.usage import anomalies, budgets
from noventiq_panel.services.core import clock
from noventiq_panel.services.subscriptions import cancellation, lifecycle, listing, plan_change
from ..services.core.errors import DomainError, InsufficientFunds, InvalidInput, NotFound
from .base import BaseState
from .formatting import flag, fmt_date, fmt_datetime, fmt_money, text_date
from .inputs import clean_text, parse_id
from .subscriptions import (
    STATUS_COLORS,
    QuantityChange,
    auto_renew_shown,
    model_label,
    quote_binding,
    shortfall_fields,
    shortfall_view,
    stale_quote,
    status_label,
)

WAIT_REASONS = ("downgrade", "same_price", "switch")  # why a plan change waits for the renewal
TABS = ("overview", "resources", "options", "activation", "usage", "history")
THRESHOLD_TYPES = ("actual", "forecast")
ANOMALIES_SHOWN = 10
KNOWN_EVENTS = (
    "subscription.ordered", "subscription.quantity_changed", "subscription.auto_renew", "subscription.trial_convert",
    "subscription.suspended", "subscription.resumed", "subscription.plan_changed",
    "subscription.plan_change_scheduled", "subscription.plan_change_withdrawn", "subscription.cancelled",
    "subscription.cancel_scheduled",
    "subscription.scheduled_change_cancelled", "subscription.renewed", "subscription.payment_failed",
    "subscription.instalment", "subscription.trial_converted", "subscription.expired", "budget.created",
    "budget.updated", "budget.removed",
)


def _sub_id_from_path(path: str) -> int:
    parts = [p for p in (path or "").split("/") if p]
    if len(parts) != 2 or parts[0] != "subscriptions":
        raise NotFound("subscription not found", key="error.subscription_not_found")
    try:
        return parse_id(parts[1])
    except InvalidInput:
        raise NotFound("subscription not found", key="error.subscription_not_found") from None


def _load(session, actor, sub_id: int):
    """Everything the page shows, read in one session (plain values)."""
    detail = listing.get_subscription(session, actor, sub_id)
    history = listing.history(session, actor, sub_id, limit=100)
    org = session.get(Organisation, actor.org_id)
    budget_form = usage = alerts = None
    if detail["billing_type"] == "payg":
        budget_form = budgets.budget_form(session, actor, sub_id)
        alerts = (anomalies.anomalies_for(session, actor, sub_id, limit=ANOMALIES_SHOWN),
                  anomalies.anomaly_alerts_enabled(session, actor, sub_id)["enabled"])
        today = clock.local_date(clock.utcnow(), org.timezone)
        first = today.replace(day=1)
        try:
            usage = iaas.iaas_detail(session, actor, first, today + timedelta(days=1), sub_id)
        except DomainError:
            usage = None
    return detail, history, budget_form, usage, alerts, org.timezone


class SubscriptionDetailState(QuantityChange, BaseState):
    loaded: bool = False
    not_found: bool = False
    tab: str = "overview"
    d: dict[str, str] = {}
    batches: list[dict[str, str]] = []
    changes: list[dict[str, str]] = []
    plan_options: list[dict[str, str]] = []
    events: list[dict[str, str]] = []
    at_vendor: list[str] = []  # what waits for the vendor (the provisioning queue), one sentence each
    d_refused: str = ""  # the vendor's last refusal of this subscription's order or change

    # Resources: the licence count (QuantityChange)

    # Options: plan change (its confirmation dialog) and cancellation
    plan_choice: str = ""
    plan_open: bool = False
    plan_preview: dict[str, str] = {}
    plan_error: str = ""
    cancel_preview: dict[str, str] = {}
    cancel_error: str = ""
    action_busy: bool = False

    # Usage and the budget dialog
    usage: dict[str, str] = {}
    usage_services: list[dict[str, str]] = []
    budget: dict[str, str] = {}
    budget_thresholds_view: list[dict[str, str]] = []
    budget_open: bool = False
    budget_amount: str = ""
    budget_thresholds: list[dict[str, str]] = []
    budget_members: list[dict[str, str]] = []
    budget_recipients: list[str] = []
    budget_emails: str = ""
    budget_error: str = ""
    budget_busy: bool = False
    # Cost anomalies of this subscription (pay-as-you-go) and their alert setting
    anomalies: list[dict[str, str]] = []
    anomaly_alerts: bool = False

    _sub_id: int = 0
    # the previews the confirmations bind to (see quote_binding)
    _plan_code: str = ""
    _plan_quote_id: str = ""
    _plan_amount: str = ""
    _cancel_quote_id: str = ""
    _cancel_amount: str = ""

    # --- loading -----------------------------------------------------------------------------
    @rx.event
    async def load(self):
        self.loaded = False
        self.not_found = False
        self._qty_reset()
        self._plan_clear()
        self.plan_choice = ""
        self._cancel_clear()
        tab = clean_text(self.router.url.query_parameters.get("tab", ""))
        self.tab = tab if tab in TABS else "overview"
        try:
            self._sub_id = _sub_id_from_path(self.router.url.path)
        except NotFound:
            try:
                await self._require()  # a signed-out visitor signs in first, whatever the address
            except DomainError as exc:
                return self._fail(exc)
            self.not_found, self.loaded = True, True
            return
        return await self._reload()

    async def _reload(self):
        try:
            detail, history, form, usage, alerts, tz = await self._view(_load, self._sub_id)
        except NotFound:
            self.not_found, self.loaded = True, True
            self.d = {}
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._show(detail, history, form, usage, tz)
        self._show_anomalies(alerts)
        self.loaded = True

    def _show(self, x: dict, history: list[dict], form: dict | None, usage, tz: str) -> None:
        lang, cur = self._lang, x["currency"]
        money = lambda v: fmt_money(v, cur, lang)  # noqa: E731
        self._show_at_vendor(x, tz)
        status = x["status"]
        licence = x["billing_type"] == "license"
        active = status == "active"
        period = x["period"] or {}
        self.d = {
            "id": str(x["id"]),
            "name": x["name"],
            "product": x["product"],
            "plan": x["plan"],
            "vendor": x["vendor"],
            "portal_url": x["portal_url"] or "",
            "status": status_label(self, status),
            "status_color": STATUS_COLORS.get(status, "gray"),
            "model": model_label(self, x["payment_model"]),
            "quantity": str(x["quantity"]),
            "min": str(x["min_quantity"]),
            "max": str(x["max_quantity"]),
            "term_start": fmt_date(x["term_start"], lang, tz) if x["term_start"] else "—",
            "term_end": fmt_date(x["end_date"], lang) if x["end_date"] else "—",
            "next_billing": fmt_date(x["next_billing_at"], lang, tz) if x["next_billing_at"] else "",
            "trial_ends": fmt_date(x["trial_ends_at"], lang, tz) if x["trial_ends_at"] else "",
            "grace_until": text_date(x["grace_until"], lang, tz) if x["grace_until"] else "",
            "recurring": money(x.get("recurring_price")) if x.get("recurring_price") is not None else "",
            "period": (self._t("subscription.period_left", days=period["remaining_days"], total=period["total_days"],
                               end=text_date(period["end"], lang, tz)) if period else ""),
            "term_end_text": text_date(x["end_date"], lang) if x["end_date"] else "",
            "vendor_ref": x["vendor_ref"] or "—",
            "created": fmt_datetime(x["created_at"], lang, tz) if x["created_at"] else "—",
            "currency": cur,
            "activation_md": x["activation_md"] or "",
            "description": x["description"] or "",
            "is_licence": flag(licence),
            "is_payg": flag(not licence),
            "is_trial": flag(x["is_trial"]),
            "trial_convert": flag(x["trial_convert"]),
            "auto_renew": flag(x["auto_renew"]),
            "cancel_at_term_end": flag(x["cancel_at_term_end"]),
            "show_auto_renew": auto_renew_shown(x),
            "can_qty": flag(x["can_change_quantity"]),
            "can_suspend": flag(x["suspendable"] and active),
            "can_resume": flag(status == "suspended"),
            "can_cancel": flag(status in ("active", "trial", "suspended", "pending") and not x["cancel_at_term_end"]),
            "can_change_plan": flag(active and not x["is_trial"] and bool(x["plan_options"])),
            "refundable": str(x["refundable_now"]),
            "ended": flag(status in ("expired", "cancelled")),
        }
        self.batches = [
            {"quantity": str(b["quantity"]), "source": self._t(f"subscription.batch.{b['source']}"),
             "added": fmt_datetime(b["added_at"], lang, tz),
             "window": (self._window_left(b["window_seconds_left"]) if b["in_window"]
                        else self._t("subscription.window_closed")),
             "in_window": flag(b["in_window"])}
            for b in x["batches"]
        ]
        self.changes = [self._change_view(c) for c in x["scheduled_changes"]]
        self.plan_options = [
            {"code": o["code"], "name": f"{o['product']} — {o['name']}",
             "label": f"{o['name']} — {o['product']} ({self._t('subscription.plan.' + o['direction'])})"}
            for o in x["plan_options"]
        ]
        self.events = [self._event_view(e, tz) for e in history]
        self.qty_value = str(x["quantity"])
        self.usage, self.usage_services, self.budget, self.budget_thresholds_view = {}, [], {}, []
        if form is not None:
            self._show_budget(form)
        if usage is not None:
            total = usage.total
            budget_amount = usage.budget
            self.usage = {
                "month": fmt.format_month(usage.start, lang),
                "total": fmt_money(total, usage.currency, lang),
                "budget": fmt_money(budget_amount, usage.currency, lang) if budget_amount else "",
                "percent": (fmt.format_percent((total * 100 / budget_amount).quantize(Decimal("0.1")), lang)
                            if budget_amount else ""),
                "analytics_href": f"/analytics?subscription={x['id']}",
            }
            self.usage_services = [
                {"name": self._t("analytics.iaas.credits") if s.key == iaas.CREDITS else s.label or s.key,
                 "amount": fmt_money(s.total, usage.currency, lang)}
                for s in ([s for s in usage.by_service if s.key != iaas.CREDITS][:10]
                          + [s for s in usage.by_service if s.key == iaas.CREDITS])]

    def _show_at_vendor(self, x: dict, tz: str) -> None:
        """The open provisioning tasks ("awaiting activation since ...", "a change waits at the
        vendor since ...") and the vendor's last refusal with its reason."""
        lang = self._lang
        texts = []
        for t in x.get("at_vendor") or []:
            since = fmt_datetime(t["requested_at"], lang, tz)
            if t["action"] == "order":
                texts.append(self._t("subscription.at_vendor.order", since=since,
                                     amount=fmt_money(t["reserved"], t["currency"], lang)))
            else:
                action = t["action"]
                if t["params"].get("refund"):  # a decrease or cancellation refunded once confirmed
                    action = "take_back" if action == "quantity" else "cancel_refund"
                what = self._t(f"subscription.at_vendor.action.{action}", **{k: str(v) for k, v in t["params"].items()})
                texts.append(self._t("subscription.at_vendor.change", what=what, since=since))
        self.at_vendor = texts
        refused = x.get("refused")
        self.d_refused = (self._t("subscription.at_vendor.refused", reason=refused["reason"],
                                  at=fmt_datetime(refused["at"], lang, tz)) if refused and refused["at"] else "")

    def _show_anomalies(self, alerts) -> None:
        rows, enabled = alerts if alerts is not None else ([], False)
        self.anomaly_alerts = bool(enabled)
        self.anomalies = [self._anomaly_view(a) for a in rows]

    def _anomaly_view(self, a: dict) -> dict[str, str]:
        """One anomaly: the sentence the mail says, and the services and resource groups behind it."""
        lang, cur = self._lang, a["currency"]
        money = lambda v: fmt_money(v, cur, lang)  # noqa: E731
        params = {**a["explanation_params"], "day": text_date(a["day"], lang)}
        for name in ("actual", "expected", "low", "high"):
            params[name] = money(params[name])

        def items(rows, none_key):
            return "; ".join(
                self._t("anomaly.contributor", name=i["name"] or self._t(none_key), actual=money(i["actual"]),
                        expected=money(i["expected"]),
                        change=(("+" if i["change"] > 0 else "−") + money(abs(i["change"])))
                        + (f" ({self._t('anomaly.new')})" if i["new"] else ""))
                for i in rows)

        return {
            "id": str(a["id"]),
            "title": self._t(f"anomaly.direction.{a['direction']}"),
            "day": fmt_date(a["day"], lang),
            "text": self._t(a["explanation_key"], **params),
            "services": items(a["services"], "anomaly.no_service"),
            "groups": items(a["resource_groups"], "anomaly.no_resource_group"),
            "color": "red" if a["direction"] == "spike" else "blue",
        }

    @rx.event
    async def toggle_anomaly_alerts(self, enabled: bool):
        if not isinstance(enabled, bool):
            return self._fail(InvalidInput("flag", key="error.invalid_flag"))
        return await self._do(anomalies.set_anomaly_alerts, enabled,
                              ok="anomaly.setting_on" if enabled else "anomaly.setting_off")

    def _show_budget(self, form: dict) -> None:
        b = form["budget"]
        self.budget_members = [{"id": str(m["id"]), "label": f"{m['name'] or m['email']} <{m['email']}>"}
                               for m in form["members"]]
        if b is None:
            self.budget = {}
            return
        lang = self._lang
        self.budget = {
            "amount": fmt_money(b["amount"], b["currency"], lang),
            "recipients": ", ".join([r["email"] for r in b["recipients"]] + list(b["extra_emails"])),
        }
        self.budget_thresholds_view = [
            {"text": self._t(f"budget.type.{t['type']}", percent=fmt.format_percent(Decimal(t["percent"]), lang))}
            for t in b["thresholds"]
        ]

    def _window_left(self, seconds: int) -> str:
        days, rest = divmod(max(0, int(seconds)), 86400)
        hours, rest = divmod(rest, 3600)
        return self._t("subscription.window_left", days=days, hours=hours, minutes=rest // 60)

    def _change_view(self, c: dict) -> dict[str, str]:
        when = text_date(c["effective_date"], self._lang)
        if c["kind"] == "quantity":
            text = self._t("subscription.change.quantity", quantity=c["new_quantity"], date=when)
        elif c["kind"] == "plan":
            text = self._t("subscription.change.plan", plan=c["new_plan"] or "", date=when)
        else:
            text = self._t("subscription.change.cancel", date=when)
        return {"id": str(c["id"]), "text": text}

    def _event_view(self, e: dict, tz: str) -> dict[str, str]:
        action = e["action"]
        label = self._t(f"subscription.event.{action}") if action in KNOWN_EVENTS else action
        details = e["details"] or {}
        shown = {k: v for k, v in details.items() if k in (
            "quantity", "old_quantity", "new_quantity", "plan", "from_plan", "to_plan", "amount", "charged",
            "refunded", "enabled", "reason", "scheduled_quantity") and v not in (None, "", "0.00")}
        return {
            "when": fmt_datetime(e["created_at"], self._lang, tz),
            "action": label,
            "user": e["user"] or self._t("subscription.event.system"),
            "details": ", ".join(f"{k}: {v}" for k, v in shown.items()),
        }

    # --- tabs --------------------------------------------------------------------------------
    @rx.event
    def set_tab(self, tab: str):
        tab = clean_text(tab)
        if tab in TABS:
            self.tab = tab

    # --- Resources: licence count ----------------------------------------------------------------
    def _qty_sub_id(self) -> int:
        return self._sub_id

    async def _qty_changed(self) -> None:
        self.qty_step = "form"
        await self._reload()

    # --- Options ---------------------------------------------------------------------------------
    async def _do(self, fn, *args, ok: str, **params):
        """Run one service operation, reload, and say how it went."""
        if self.action_busy:
            return None
        self.action_busy = True
        try:
            result = await self._act(fn, self._sub_id, *args)
        except InsufficientFunds as exc:
            self.action_busy = False
            return rx.toast.error(shortfall_view(self, exc)["text"], close_button=True)
        except Exception as exc:  # noqa: BLE001
            self.action_busy = False
            return self._fail(exc)
        self.action_busy = False
        await self._reload()
        return self._ok(ok, **params) if ok else result

    @rx.event
    async def toggle_auto_renew(self, enabled: bool):
        if not isinstance(enabled, bool):
            return self._fail(InvalidInput("flag", key="error.invalid_flag"))
        return await self._do(lifecycle.set_auto_renew, enabled,
                              ok="subscriptions.auto_renew_on" if enabled else "subscriptions.auto_renew_off")

    @rx.event
    async def toggle_trial_convert(self, enabled: bool):
        if not isinstance(enabled, bool):
            return self._fail(InvalidInput("flag", key="error.invalid_flag"))
        return await self._do(lifecycle.set_trial_convert, enabled, ok="subscription.saved")

    @rx.event
    async def suspend(self):
        return await self._do(lifecycle.suspend, ok="subscription.suspended_ok")

    @rx.event
    async def resume(self):
        return await self._do(lifecycle.resume, ok="subscription.resumed_ok")

    @rx.event
    def set_plan_choice(self, code: str):
        code = clean_text(code, 64)
        if code in {o["code"] for o in self.plan_options}:
            self.plan_choice = code
            self._plan_clear()

    def _plan_clear(self) -> None:
        self.plan_open, self.plan_preview, self.plan_error = False, {}, ""
        self._plan_code = self._plan_quote_id = self._plan_amount = ""

    def _plan_view(self, q) -> dict[str, str]:
        """What the plan change does now and when, in the UI language: the exact amount charged or
        refunded now, the date it takes effect and, for a change that waits, why."""
        lang, cur = self._lang, q.currency
        when = text_date(q.effective_date, lang)
        reason = ""
        if q.withdraws_pending:
            text = self._t("subscription.plan.withdraw_text")
        elif not q.immediate:
            text = self._t("subscription.plan.at_renewal", date=when)
            reason = self._t(f"subscription.plan.why_{q.direction}") if q.direction in WAIT_REASONS else ""
        elif q.charge_now > 0:
            text = self._t("subscription.plan.upgrade_charge", amount=fmt_money(q.charge_now, cur, lang))
        elif q.refund_now > 0:
            text = self._t("subscription.plan.upgrade_refund", amount=fmt_money(q.refund_now, cur, lang))
        else:
            text = self._t("subscription.plan.upgrade_free")
        due = q.amount_due
        target = next((o["name"] for o in self.plan_options if o["code"] == q.to_plan), q.to_plan)
        return {
            "summary": self._t("subscription.plan.summary", plan=target),
            "now": text,
            "later": reason,
            "amount_label": self._t("subscription.amount_now.refund" if due < 0 else "subscription.amount_now.charge"),
            "amount": fmt_money(abs(due), cur, lang),
            "date": when,
            "waits": flag(not q.immediate),
            "withdraws": flag(q.withdraws_pending),
            "recurring": self._t("subscriptions.qty.later_price", amount=fmt_money(q.recurring_price, cur, lang))
            if q.recurring_price else "",
            **shortfall_fields(q.shortfall, cur, lang),
        }

    def _plan_show(self, q) -> None:
        self.plan_preview = self._plan_view(q)
        self._plan_code = q.to_plan
        self._plan_quote_id, self._plan_amount = quote_binding(q)

    @rx.event
    async def preview_plan(self):
        """The confirmation dialog of the chosen plan, from the service's quote (the confirmation
        binds to it)."""
        if not self.plan_choice:
            return
        try:
            q = await self._act(plan_change.quote_plan_change, self._sub_id, self.plan_choice)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._plan_show(q)
        self.plan_error = ""
        self.plan_open = True

    @rx.event
    def set_plan_open(self, value: bool):
        if value is not True and not self.action_busy:
            self._plan_clear()

    @rx.event
    async def confirm_plan(self):
        """Carry the previewed plan change out, once per preview; a stale preview is shown afresh."""
        if self.action_busy or not self.plan_open or not self._plan_code:
            return
        self.action_busy = True
        yield
        try:
            await self._act(plan_change.change_plan, self._sub_id, self._plan_code,
                            quote_id=self._plan_quote_id or None, amount=self._plan_amount or None)
        except InsufficientFunds as exc:
            self.action_busy = False
            self.plan_preview = {**self.plan_preview, **shortfall_fields(exc.shortfall, exc.currency, self._lang)}
            return
        except Exception as exc:  # noqa: BLE001
            self.action_busy = False
            if stale_quote(exc):
                try:
                    q = await self._act(plan_change.quote_plan_change, self._sub_id, self._plan_code)
                except Exception as again:  # noqa: BLE001 - e.g. the plan is no longer offered
                    self._plan_clear()
                    yield self._fail(again)
                    return
                self._plan_show(q)
                self.plan_error = self._error_text(exc)
                return
            yield self._fail(exc)
            return
        p = self.plan_preview
        done = (self._ok("subscription.change.withdrawn") if p.get("withdraws") == "1" else
                self._ok("subscription.plan.scheduled_done", date=p.get("date", "")) if p.get("waits") == "1" else
                self._ok("subscription.plan.done"))
        self.action_busy = False
        self.plan_choice = ""
        self._plan_clear()
        await self._reload()
        yield done

    def _cancel_clear(self) -> None:
        self.cancel_preview, self.cancel_error = {}, ""
        self._cancel_quote_id = self._cancel_amount = ""

    def _cancel_show(self, q) -> None:
        lang = self._lang
        if not q.immediate:
            text = self._t("subscription.cancel.at_end", date=text_date(q.effective_date, lang))
        elif q.charge_now > 0:
            text = self._t("subscription.cancel.now_lapse", amount=fmt_money(q.charge_now, q.currency, lang))
        elif q.vendor_confirms:
            text = self._t("subscription.cancel.vendor_refund", amount=fmt_money(q.refund_now, q.currency, lang))
        elif q.refund_now > 0:
            text = self._t("subscription.cancel.now_refund", amount=fmt_money(q.refund_now, q.currency, lang))
        else:
            text = self._t("subscription.cancel.now")
        charge = q.amount_due > 0
        self.cancel_preview = {"text": text,
                               "amount_label": self._t("subscription.amount_now.charge" if charge
                                                       else "subscription.amount_now.refund"),
                               "amount": fmt_money(abs(q.amount_due), q.currency, lang)}
        self._cancel_quote_id, self._cancel_amount = quote_binding(q)

    @rx.event
    async def preview_cancel(self):
        try:
            q = await self._act(cancellation.quote_cancel, self._sub_id)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._cancel_show(q)
        self.cancel_error = ""

    @rx.event
    def close_cancel(self):
        if not self.action_busy:
            self._cancel_clear()

    @rx.event
    async def confirm_cancel(self):
        """Cancel as previewed (the refund the preview named, once); a stale preview is shown afresh."""
        if self.action_busy or not self.cancel_preview:
            return
        self.action_busy = True
        yield
        try:
            outcome = await self._act(cancellation.cancel, self._sub_id, quote_id=self._cancel_quote_id or None,
                                      amount=self._cancel_amount or None)
        except Exception as exc:  # noqa: BLE001
            self.action_busy = False
            if stale_quote(exc):
                try:
                    q = await self._act(cancellation.quote_cancel, self._sub_id)
                except Exception as again:  # noqa: BLE001
                    self._cancel_clear()
                    yield self._fail(again)
                    return
                self._cancel_show(q)
                self.cancel_error = self._error_text(exc)
                return
            self._cancel_clear()
            yield self._fail(exc)
            return
        self.action_busy = False
        self._cancel_clear()
        await self._reload()
        yield self._ok("subscription.cancel.done_at_vendor" if outcome.at_vendor else "subscription.cancel.done")

    @rx.event
    async def cancel_change(self, change_id: str):
        try:
            cid = parse_id(change_id)
            await self._act(_cancel_change, cid)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        await self._reload()
        return self._ok("subscription.change.withdrawn")

    # --- budget dialog ---------------------------------------------------------------------------
    @rx.event
    async def open_budget(self):
        try:
            form = await self._act(budgets.budget_form, self._sub_id)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        b = form["budget"]
        self._show_budget(form)
        source = b["thresholds"] if b else form["default_thresholds"]
        self.budget_amount = str(b["amount"]) if b else ""
        self.budget_thresholds = [{"percent": str(t["percent"]), "type": t["type"]} for t in source]
        self.budget_recipients = [str(i) for i in b["recipient_user_ids"]] if b else (
            [str(self._user_id)] if self._user_id else [])
        self.budget_emails = ", ".join(b["extra_emails"]) if b else ""
        self.budget_error = ""
        self.budget_open = True

    @rx.event
    def set_budget_open(self, value: bool):
        self.budget_open = value if isinstance(value, bool) else False

    @rx.event
    def set_budget_amount(self, value: str):
        self.budget_amount = clean_text(value, 32)
        self.budget_error = ""

    def _threshold_index(self, index: Any) -> int | None:
        try:
            i = int(str(index))
        except (TypeError, ValueError):
            return None
        return i if 0 <= i < len(self.budget_thresholds) else None

    @rx.event
    def set_threshold_percent(self, index: str, value: str):
        i = self._threshold_index(index)
        if i is not None:
            rows = [dict(r) for r in self.budget_thresholds]
            rows[i]["percent"] = clean_text(value, 16)
            self.budget_thresholds = rows

    @rx.event
    def set_threshold_type(self, index: str, value: str):
        i = self._threshold_index(index)
        if i is not None and value in THRESHOLD_TYPES:
            rows = [dict(r) for r in self.budget_thresholds]
            rows[i]["type"] = value
            self.budget_thresholds = rows

    @rx.event
    def add_threshold(self):
        if len(self.budget_thresholds) < budgets.MAX_THRESHOLDS:
            self.budget_thresholds = self.budget_thresholds + [{"percent": "", "type": "actual"}]

    @rx.event
    def remove_threshold(self, index: str):
        i = self._threshold_index(index)
        if i is not None:
            self.budget_thresholds = [r for n, r in enumerate(self.budget_thresholds) if n != i]

    @rx.event
    def toggle_recipient(self, user_id: str, checked: bool):
        uid = clean_text(user_id, 12)
        if uid not in {m["id"] for m in self.budget_members}:
            return
        chosen = [r for r in self.budget_recipients if r != uid]
        if checked is True:
            chosen.append(uid)
        self.budget_recipients = chosen

    @rx.event
    def set_budget_emails(self, value: str):
        self.budget_emails = clean_text(value, 5000)

    @rx.event
    async def save_budget(self):
        if self.budget_busy:
            return
        self.budget_busy = True
        try:
            await self._act(budgets.set_budget, self._sub_id, amount=self.budget_amount,
                            thresholds=[dict(t) for t in self.budget_thresholds],
                            recipient_user_ids=list(self.budget_recipients), extra_emails=self.budget_emails)
        except DomainError as exc:
            self.budget_busy = False
            if isinstance(exc, InvalidInput):
                self.budget_error = self._error_text(exc)
                return
            return self._fail(exc)
        except Exception as exc:  # noqa: BLE001
            self.budget_busy = False
            return self._fail(exc)
        self.budget_busy = False
        self.budget_open = False
        await self._reload()
        return self._ok("budget.saved")

    @rx.event
    async def remove_budget(self):
        try:
            await self._act(budgets.remove_budget, self._sub_id)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.budget_open = False
        await self._reload()
        return self._ok("budget.removed")


def _cancel_change(session, actor, change_id: int):
    return cancellation.cancel_scheduled_change(session, actor, change_id)
