"""State of /analytics: filters kept in the URL, spending structure and dynamics, IaaS detail.

The URL query is the single source of the filters (``?period=custom&from=2025-01-01&to=...&product=3``):
a change of a filter navigates to the new URL, ``load`` (the page's on_load) parses and validates
it through ``services.reporting.filters.parse_filters`` and loads the figures. So a view can be
bookmarked and shared, and Back returns to the previous filters.

Every public handler resolves the caller again (``_act``) and validates its arguments; the
services check the organisation and the role. Figures are built here from the services' results
(view work only); amounts are formatted on the server in the UI language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import reflex as rx

from ..i18n import format as fmt
from ..models import Organisation
from noventiq_panel.services.reporting import reports, spend
from noventiq_panel.services.reporting.filters import (
    OTHER, PRESETS, FilterOptions, Filters, filter_options, parse_filters, period_presets)
from noventiq_panel.services.reporting.iaas import CREDITS, IaasDetail, iaas_detail
from noventiq_panel.services.reporting.spend import Dynamics, Series, Slice, Structure
from ..services.core.errors import InvalidInput
from ..services.core.money import minor_unit
from .base import EXPORT_FORMATS, BaseState
from .formatting import fmt_date, fmt_money
from .inputs import form_date, shown_date

ROUTE = "/analytics"
STRUCTURE_DIMS = ("product", "vendor", "subscription", "payment_model")
IAAS_DIMS = ("service", "resource_group", "resource")
FILTER_PARAMS = ("product", "vendor", "subscription", "model", "service", "rg")
CHART_HEIGHT = 340


@dataclass
class _View:
    """What one load brings back from the worker thread (plain values, no ORM objects)."""

    filters: Filters
    timezone: str
    options: FilterOptions
    structure: Structure
    dynamics: Dynamics
    iaas: IaasDetail | None
    warning: str | None = None


def _load_view(session, actor, params: dict[str, str]) -> _View:
    org = session.get(Organisation, actor.org_id)
    tz = org.timezone if org else "Asia/Tashkent"
    warning = None
    try:
        filters = parse_filters(params, tz=tz)
    except InvalidInput as exc:
        filters = parse_filters({}, tz=tz)
        warning = exc.key
    options = filter_options(session, actor)
    if filters.subscription_id is not None and filters.subscription_id not in {i for i, _ in options.subscriptions}:
        filters = Filters(start=filters.start, end=filters.end, preset=filters.preset)
        warning = "error.analytics_filter"
    structure = spend.structure(session, actor, filters)
    dyn = spend.dynamics(session, actor, filters)
    payg_ids = {i for i, _ in options.payg_subscriptions}
    iaas = None
    show_iaas = bool(payg_ids) and (filters.subscription_id is None or filters.subscription_id in payg_ids) and \
        (not filters.payment_model or filters.payment_model.startswith("payg"))
    if show_iaas:
        iaas = iaas_detail(session, actor, filters.start, filters.end, filters.subscription_id,
                           service=filters.service, resource_group=filters.resource_group)
    return _View(filters, tz, options, structure, dyn, iaas, warning)


def _export(session, actor, filters: Filters, fmt_: str, locale: str, section: str) -> tuple[str, bytes]:
    return reports.analytics_export(session, actor, filters, fmt_, locale=locale, section=section)


def _pct(value: Decimal | None, lang: str) -> str:
    return "—" if value is None else fmt.format_percent(value, lang, decimals=1)


def _figure(traces: list[dict[str, Any]], lang: str, **layout: Any) -> dict[str, Any]:
    """A Plotly figure as the plain dict the browser receives (``data`` and ``layout``): built
    directly, not through ``plotly.graph_objects``, whose validation of every property cost more
    than the rest of the page load; the page's Plotly component adds the theme's template. Numbers
    in hover texts use the language's decimal and group symbols (``separators``)."""
    return {"data": traces, "layout": _layout(separators=fmt.plot_separators(lang), **layout)}


def _hover(currency: str, lang: str, granularity: str) -> str:
    """The hover text of a point of a money chart: its day (or month) and amount, formatted by
    Plotly in the browser (month names from the chart's locale)."""
    when = "%{x|%-d %b %Y}" if granularity == "day" else "%{x|%b %Y}"
    return when + ": " + fmt.money_template(currency, lang, "%{y:,." + str(minor_unit(currency)) + "f}")


def _layout(**kw: Any) -> dict[str, Any]:
    base = dict(height=CHART_HEIGHT, margin=dict(l=8, r=8, t=8, b=8), autosize=True,
                legend=dict(orientation="h", yanchor="top", y=-0.12, x=0),
                paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", hovermode="closest")
    base.update(kw)
    return base


def _segment(value: str | list[str]) -> str:
    """The value a segmented control sends (a list of one when it allows several)."""
    return str(value[0] if isinstance(value, list) and value else value)


def _date_axis(granularity: str) -> dict[str, Any]:
    if granularity == "day":
        return dict(type="date", tickformat="%-d %b", hoverformat="%-d %b %Y", nticks=10)
    return dict(type="date", tickformat="%b %Y", dtick="M1", hoverformat="%b %Y")


class AnalyticsState(BaseState):
    loaded: bool = False
    # --- filters (as in the URL) -----------------------------------------------------------------
    period: str = "this_month"
    date_from: str = ""  # ISO, inclusive (the custom period's inputs)
    date_to: str = ""

    @rx.var
    def date_from_shown(self) -> str:
        return shown_date(self.date_from, self.locale)

    @rx.var
    def date_to_shown(self) -> str:
        return shown_date(self.date_to, self.locale)
    product: str = ""
    vendor: str = ""
    subscription: str = ""
    model: str = ""
    service: str = ""
    rg: str = ""
    period_label: str = ""
    previous_label: str = ""
    previous_partial: bool = False  # the period runs: compared with the same days of the previous one
    iaas_previous_partial: bool = False
    period_options: list[dict[str, str]] = []
    product_options: list[dict[str, str]] = []
    vendor_options: list[dict[str, str]] = []
    subscription_options: list[dict[str, str]] = []
    model_options: list[dict[str, str]] = []
    service_options: list[dict[str, str]] = []
    rg_options: list[dict[str, str]] = []
    filters_active: bool = False
    # --- overview --------------------------------------------------------------------------------
    currency: str = ""
    total: str = ""
    previous_total: str = ""
    change: str = ""
    change_pct: str = ""
    change_up: bool = False
    has_spend: bool = False
    structure_dim: str = "product"
    structure_rows: list[dict[str, str]] = []
    structure_fig: dict[str, Any] = {}
    dynamics_fig: dict[str, Any] = {}
    dynamics_rows: list[dict[str, str]] = []
    granularity: str = "month"
    # --- IaaS ------------------------------------------------------------------------------------
    has_iaas: bool = False
    iaas_total: str = ""
    iaas_previous_total: str = ""
    iaas_change_pct: str = ""
    iaas_budget: str = ""
    iaas_dim: str = "service"
    iaas_fig: dict[str, Any] = {}
    iaas_cum_fig: dict[str, Any] = {}
    iaas_charts: bool = False  # the IaaS charts (below the fold) are drawn once they come near the screen
    iaas_rows: list[dict[str, str]] = []
    movers: list[dict[str, str]] = []
    iaas_unconverted: str = ""
    iaas_credits: str = ""  # the vendor's credits in the period's total ("" without credits)
    # --- backend ---------------------------------------------------------------------------------
    _filters: dict[str, Any] = {}
    _structure: dict[str, list[dict[str, Any]]] = {}
    _iaas: dict[str, Any] = {}

    @rx.event
    def show_iaas_charts(self, in_view: bool):
        """The IaaS section came near the screen: draw its charts (view only, no data)."""
        if in_view is True:
            self.iaas_charts = True

    # ============================================================================================
    # Loading
    # ============================================================================================
    @rx.event
    async def load(self):
        """on_load: the filters from the URL, then the figures."""
        params = {k: str(v) for k, v in (self.router.url.query_parameters or {}).items()
                  if k in ("period", "from", "to") + FILTER_PARAMS}
        try:
            view = await self._view(_load_view, params)
        except Exception as exc:  # noqa: BLE001 - NotAuthenticated -> sign-in, others -> toast
            return self._fail(exc)
        self._show(view)
        if view.warning:
            return rx.toast.warning(self._t(view.warning))

    def _show(self, v: _View) -> None:
        lang = self._lang
        f = v.filters
        self._filters = {"start": f.start.isoformat(), "end": f.end.isoformat(), "preset": f.preset,
                         "product_id": f.product_id, "vendor_id": f.vendor_id, "subscription_id": f.subscription_id,
                         "payment_model": f.payment_model, "service": f.service, "resource_group": f.resource_group}
        self.period = f.preset
        self.date_from = f.start.isoformat()
        self.date_to = (f.end - timedelta(days=1)).isoformat()
        self.product = str(f.product_id or "")
        self.vendor = str(f.vendor_id or "")
        self.subscription = str(f.subscription_id or "")
        self.model = f.payment_model or ""
        self.service = f.service or ""
        self.rg = f.resource_group or ""
        self.filters_active = any((f.product_id, f.vendor_id, f.subscription_id, f.payment_model, f.service,
                                   f.resource_group))
        last = f.end - timedelta(days=1)
        self.period_label = f"{fmt_date(f.start, lang)} — {fmt_date(last, lang)}"
        d = v.dynamics
        self.previous_label = f"{fmt_date(d.previous_start, lang)} — {fmt_date(d.previous_end - timedelta(days=1), lang)}"
        self.previous_partial = d.partial
        self._options(v.options)
        # Overview
        cur = v.structure.currency
        self.currency = cur
        s = v.structure
        self.total = fmt_money(s.total, cur, lang)
        self.previous_total = fmt_money(d.previous_total, cur, lang)
        self.change = fmt_money(d.change, cur, lang)
        self.change_pct = _pct(d.change_pct, lang)
        self.change_up = d.change > 0
        self.has_spend = s.total != 0 or d.previous_total != 0 or any(x != 0 for x in d.totals)
        self._structure = {
            "product": [self._slice(x, "product") for x in s.by_product],
            "vendor": [self._slice(x, "vendor") for x in s.by_vendor],
            "subscription": [self._slice(x, "subscription") for x in s.by_subscription],
            "payment_model": [self._slice(x, "payment_model") for x in s.by_payment_model],
        }
        self._show_structure()
        self._show_dynamics(d, cur)
        # IaaS
        self.has_iaas = v.iaas is not None
        if v.iaas is not None:
            self._keep_iaas(v.iaas)
            self._show_iaas()
        self.loaded = True

    def _options(self, o: FilterOptions) -> None:
        self.period_options = [{"value": p, "label": self._t(f"analytics.period.{p}")} for p in PRESETS]
        every = {"value": "all", "label": self._t("analytics.filter.all")}
        self.product_options = [every] + [{"value": str(i), "label": n} for i, n in o.products]
        self.vendor_options = [every] + [{"value": str(i), "label": n} for i, n in o.vendors]
        self.subscription_options = [every] + [{"value": str(i), "label": n} for i, n in o.subscriptions]
        models = list(o.payment_models)
        if any(m.startswith("payg") for m in models) and len(models) > 1:
            models = ["payg", "license"] + models
        self.model_options = [every] + [{"value": m, "label": self._t(f"analytics.model.{m}")} for m in models]
        self.service_options = [every] + [{"value": x, "label": x} for x in o.services]
        self.rg_options = [every] + [{"value": x, "label": x} for x in o.resource_groups]

    def _slice(self, x: Slice, dim: str) -> dict[str, Any]:
        if x.key == OTHER:
            label = self._t("analytics.other")
        elif dim == "payment_model":
            label = self._t(f"analytics.model.{x.key}")
        else:
            label = x.label
        return {"key": x.key, "label": label, "amount": str(x.amount), "share": str(x.share)}

    def _show_structure(self) -> None:
        lang, cur = self._lang, self.currency
        rows = self._structure.get(self.structure_dim, [])
        self.structure_rows = [
            {"id": r["key"], "label": r["label"], "amount": fmt_money(Decimal(r["amount"]), cur, lang),
             "share": fmt.format_percent(Decimal(r["share"]), lang, decimals=1)}
            for r in rows
        ]
        positive = [r for r in rows if Decimal(r["amount"]) > 0]
        traces = [dict(
            type="pie", labels=[r["label"] for r in positive], values=[float(r["amount"]) for r in positive],
            hole=0.55, sort=False, textinfo="percent", textposition="inside", insidetextorientation="horizontal",
            customdata=[fmt_money(Decimal(r["amount"]), cur, lang) for r in positive],
            hovertemplate="%{label}<br>%{customdata} (%{percent})<extra></extra>",
        )] if positive else []
        self.structure_fig = _figure(traces, lang, showlegend=True,
                                     legend=dict(orientation="h", yanchor="top", y=-0.02, x=0),
                                     uniformtext=dict(minsize=10, mode="hide"))

    def _bucket_label(self, day: date, granularity: str) -> str:
        lang = self._lang
        if granularity == "day":
            return fmt.format_date(day, lang, format="d MMM")
        return fmt.format_date(day, lang, format="LLL y")

    def _show_dynamics(self, d: Dynamics, cur: str) -> None:
        lang = self._lang
        self.granularity = d.granularity
        labels = [self._bucket_label(b, d.granularity) for b in d.buckets]
        x = [b.isoformat() for b in d.buckets]  # a date axis: Plotly names months in the UI language
        hover = _hover(cur, lang, d.granularity)
        traces = []
        for s in d.series:
            name = self._t("analytics.other") if s.key == OTHER else s.label
            traces.append(dict(
                type="bar", name=name, x=x, y=[float(v) for v in s.values],
                hovertemplate=hover + "<extra>" + name.replace("<", "&lt;")[:40] + "</extra>",
            ))
        n = min(len(x), len(d.previous_totals))
        if n and any(v != 0 for v in d.previous_totals):
            prev_name = self._t("analytics.previous_period")
            traces.append(dict(
                type="scatter", name=prev_name, x=x[:n], y=[float(v) for v in d.previous_totals[:n]], mode="lines+markers",
                line=dict(dash="dot", color="#888"),
                customdata=[f"{self._bucket_label(b, d.granularity)}: {fmt_money(v, cur, lang)}"
                            for b, v in zip(d.previous_buckets[:n], d.previous_totals[:n])],
                hovertemplate="%{customdata}<extra>" + prev_name + "</extra>",
            ))
        self.dynamics_fig = _figure(traces, lang, barmode="relative", xaxis=_date_axis(d.granularity),
                                    yaxis=dict(tickformat="~s", rangemode="tozero"))
        self.dynamics_rows = [
            {"id": b.isoformat(), "period": label, "amount": fmt_money(t, cur, lang),
             "previous": fmt_money(d.previous_totals[i], cur, lang) if i < len(d.previous_totals) else "—"}
            for i, (b, label, t) in enumerate(zip(d.buckets, labels, d.totals))
        ]

    def _keep_iaas(self, i: IaasDetail) -> None:
        """Keep the IaaS detail as plain values (backend var) so a dimension switch needs no query."""
        def series(items: list[Series]) -> list[dict[str, Any]]:
            return [{"key": s.key, "label": s.label, "values": [str(v) for v in s.values], "total": str(s.total),
                     "extra": {k: str(v) for k, v in s.extra.items()}} for s in items]

        self._iaas = {
            "currency": i.currency, "days": [d.isoformat() for d in i.days], "total": str(i.total),
            "previous_total": str(i.previous_total), "budget": str(i.budget) if i.budget is not None else "",
            "service": series(i.by_service), "resource_group": series(i.by_resource_group),
            "resource": series(i.by_resource),
            "cumulative": [(str(c.cumulative), str(c.month_to_date)) for c in i.cumulative],
            "movers": [{"dimension": m.dimension, "key": m.key, "label": m.label, "current": str(m.current),
                        "previous": str(m.previous), "change": str(m.change),
                        "pct": "" if m.change_pct is None else str(m.change_pct),
                        "group": str(m.extra.get("resource_group", ""))} for m in i.movers],
            "unconverted": {k: str(v) for k, v in i.unconverted.items()},
            "previous_partial": i.previous_partial, "credits": str(i.credits),
        }

    def _show_iaas(self) -> None:
        lang = self._lang
        data = self._iaas
        cur = data["currency"]
        total, prev = Decimal(data["total"]), Decimal(data["previous_total"])
        self.iaas_total = fmt_money(total, cur, lang)
        self.iaas_previous_total = fmt_money(prev, cur, lang)
        self.iaas_previous_partial = bool(data.get("previous_partial"))
        self.iaas_change_pct = _pct(None if prev == 0 else (total - prev) * 100 / abs(prev), lang)
        budget = Decimal(data["budget"]) if data["budget"] else None
        self.iaas_budget = fmt_money(budget, cur, lang) if budget is not None else ""
        credits = Decimal(data["credits"])
        self.iaas_credits = fmt_money(credits, cur, lang) if credits else ""
        self.iaas_unconverted = ", ".join(fmt_money(Decimal(v), k, lang) for k, v in data["unconverted"].items())
        days = [date.fromisoformat(d) for d in data["days"]]
        x = data["days"]
        hover = _hover(cur, lang, "day")
        traces = []
        items = data[self.iaas_dim]
        for s in items:
            name = self._iaas_label(s)
            traces.append(dict(
                type="bar", name=name, x=x, y=[float(v) for v in s["values"]],
                hovertemplate=hover + "<extra>" + name.replace("<", "&lt;")[:40] + "</extra>",
            ))
        self.iaas_fig = _figure(traces, lang, barmode="relative", xaxis=_date_axis("day"),
                                yaxis=dict(tickformat="~s", rangemode="tozero"))
        self.iaas_rows = [
            {"id": s["key"], "label": self._iaas_label(s), "group": s["extra"].get("resource_group", ""),
             "service": s["extra"].get("service", ""), "amount": fmt_money(Decimal(s["total"]), cur, lang),
             "share": fmt.format_percent(Decimal(s["total"]) * 100 / total, lang, decimals=1) if total else "—"}
            for s in items
        ]
        several_months = len({(d.year, d.month) for d in days}) > 1
        values = [Decimal(m if several_months else c) for c, m in data["cumulative"]]
        name = self._t("analytics.iaas.month_to_date" if several_months else "analytics.iaas.cumulative")
        cum = [dict(
            type="scatter", name=name, x=x, y=[float(v) for v in values], mode="lines", fill="tozeroy",
            hovertemplate=hover + "<extra></extra>",
        )]
        if budget is not None:
            label = self._t("analytics.iaas.budget_line", amount=self.iaas_budget)
            cum.append(dict(type="scatter", name=label, x=x, y=[float(budget)] * len(x), mode="lines",
                            line=dict(color="#e5484d", dash="dash"), hoverinfo="skip"))
        self.iaas_cum_fig = _figure(cum, lang, xaxis=_date_axis("day"), yaxis=dict(tickformat="~s", rangemode="tozero"))
        self.movers = [
            {"id": f"{m['dimension']}:{n}", "kind": self._t(f"analytics.iaas.dim.{m['dimension']}"),
             "label": self._t("analytics.iaas.credits") if m["key"] == CREDITS
             else m["label"] or self._t("analytics.other"), "group": m["group"],
             "current": fmt_money(Decimal(m["current"]), cur, lang),
             "previous": fmt_money(Decimal(m["previous"]), cur, lang),
             "change": ("+" if Decimal(m["change"]) > 0 else "") + fmt_money(Decimal(m["change"]), cur, lang),
             "pct": _pct(Decimal(m["pct"]) if m["pct"] else None, lang),
             "up": "1" if Decimal(m["change"]) > 0 else ""}
            for n, m in enumerate(data["movers"])
        ]

    def _iaas_label(self, s: dict[str, Any]) -> str:
        if s["key"] == CREDITS:
            return self._t("analytics.iaas.credits")
        if s["key"] == OTHER and self.iaas_dim == "resource":
            return self._t("analytics.iaas.other_resources", count=s["extra"].get("count", ""))
        return s["label"] or self._t("analytics.iaas.none")

    # ============================================================================================
    # Filters: every change navigates to the new URL (bookmarkable); load() does the rest
    # ============================================================================================
    def _query(self, **changes: str) -> dict[str, str]:
        q = {"period": self.period}
        if self.period == "custom":
            q["from"], q["to"] = self.date_from, self.date_to
        for name in FILTER_PARAMS:
            value = getattr(self, name)
            if value:
                q[name] = value
        for k, v in changes.items():
            if v in ("", "all", None):
                q.pop(k, None)
            else:
                q[k] = v
        if q.get("period") != "custom":
            q.pop("from", None)
            q.pop("to", None)
        return q

    def _go(self, q: dict[str, str]):
        return rx.redirect(f"{ROUTE}?{urlencode(q)}")

    @rx.event
    async def set_period(self, value: str):
        value = str(value)
        if value not in PRESETS:
            return rx.toast.error(self._t("error.analytics_filter"))
        if value == "custom":
            return self._go(self._query(period="custom", **{"from": self.date_from, "to": self.date_to}))
        return self._go(self._query(period=value))

    @rx.event
    async def apply_custom(self, form: dict):
        """The custom period's form: ``from`` and ``to`` (inclusive), days typed in the user's
        language, validated; the URL carries them as ISO dates."""
        try:
            start, end = form_date(form, "from", self.locale), form_date(form, "to", self.locale)
            parse_filters({"period": "custom", "from": start, "to": end})
        except InvalidInput as exc:
            return self._fail(exc)
        return self._go(self._query(period="custom", **{"from": start, "to": end}))

    @rx.event
    async def set_filter(self, name: str, value: str):
        name, value = str(name), str(value)
        if name not in FILTER_PARAMS:
            return rx.toast.error(self._t("error.analytics_filter"))
        if value in ("", "all"):
            return self._go(self._query(**{name: ""}))
        if name in ("product", "vendor", "subscription") and not (value.isdigit() and len(value) <= 12):
            return rx.toast.error(self._t("error.analytics_filter"))
        if len(value) > 255:
            return rx.toast.error(self._t("error.analytics_filter"))
        return self._go(self._query(**{name: value}))

    @rx.event
    async def reset_filters(self):
        return self._go({"period": self.period} if self.period != "custom" else
                        {"period": "custom", "from": self.date_from, "to": self.date_to})

    @rx.event
    async def set_structure_dim(self, dim: str | list[str]):
        dim = _segment(dim)
        if dim not in STRUCTURE_DIMS:
            return
        self.structure_dim = dim
        if self._structure:
            self._show_structure()

    @rx.event
    async def set_iaas_dim(self, dim: str | list[str]):
        dim = _segment(dim)
        if dim not in IAAS_DIMS:
            return
        self.iaas_dim = dim
        if self._iaas:
            self._show_iaas()

    # ============================================================================================
    # Downloads of what is shown
    # ============================================================================================
    @rx.event
    async def download(self, fmt_: str, section: str = "overview"):
        fmt_, section = str(fmt_), str(section)
        if fmt_ not in EXPORT_FORMATS or section not in ("overview", "iaas"):
            return rx.toast.error(self._t("error.analytics_format"))
        f = self._filters
        try:
            if not f:  # nothing loaded yet: this month, unfiltered (the caller is checked below)
                f = {**Filters(*period_presets()["this_month"], preset="this_month").__dict__}
                f.update(start=f["start"].isoformat(), end=f["end"].isoformat())
            filters = Filters(start=date.fromisoformat(f["start"]), end=date.fromisoformat(f["end"]),
                              preset=f["preset"], product_id=f["product_id"], vendor_id=f["vendor_id"],
                              subscription_id=f["subscription_id"], payment_model=f["payment_model"],
                              service=f["service"], resource_group=f["resource_group"])
            filename, data = await self._act(_export, filters, fmt_, self._lang, section)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        return self._download(filename, data, fmt_)


__all__ = ["AnalyticsState"]
