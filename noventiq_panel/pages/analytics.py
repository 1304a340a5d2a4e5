"""/analytics — spending structure and dynamics, the IaaS (pay-as-you-go) daily detail, downloads.

The filters live in the URL (``?period=...&product=...``); every control navigates to the new URL
and the page's on_load loads what it names, so a view can be bookmarked and shared.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import reflex as rx

from ..components import (
    Column, T, amount_text, big_amount, data_table, date_input, page_header, panel_page, section_card, when_loaded,
)
from ..components.lazy import when_seen
from ..state.analytics import AnalyticsState as S

PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"]}


def _chart(fig: Any, chart_id: str) -> rx.Component:
    """A chart of a figure the state keeps as a plain dict (typed as a Figure for the component)."""
    return rx.box(
        rx.plotly.basic(data=fig.to(go.Figure), config=PLOT_CONFIG, locale=S.locale, use_resize_handler=True,
                        width="100%", height="340px"),
        width="100%",
        min_height="340px",
        id=chart_id,
    )


def _card(title_key: str, *children: rx.Component, card_id: str) -> rx.Component:
    return section_card(title_key, *children, size="4", card_id=card_id)


def _filter(label_key: str, control: rx.Component, **props) -> rx.Component:
    """A filter control with its small label above it."""
    return rx.vstack(rx.text(T(label_key), size="1", color=rx.color("gray", 11)), control, spacing="1", **props)


def _select(options: Any, value: Any, on_change: Any, label_key: str, select_id: str) -> rx.Component:
    return _filter(
        label_key,
        rx.select.root(
            rx.select.trigger(width="100%", id=select_id, aria_label=T(label_key)),
            rx.select.content(rx.foreach(options, lambda o: rx.select.item(o["label"], value=o["value"]))),
            value=rx.cond(value == "", "all", value),
            on_change=on_change,
            size="2",
        ),
        min_width="11rem",
        flex="1",
    )


def _figure(title: str | rx.Component, value: Any, value_id: str, *extra: rx.Component) -> rx.Component:
    """A headline figure of a period: its name (a catalog key or a text), the sum, what to compare
    it with."""
    return rx.card(
        rx.vstack(rx.text(T(title) if isinstance(title, str) else title, size="2", color=rx.color("gray", 11)),
                  big_amount(value, id=value_id), *extra, spacing="1"),
        width="100%",
    )


def _previous_title(partial: Any) -> rx.Component:
    """"Previous period", or, while the period runs, "the same days of the previous period"."""
    return rx.cond(partial, T("analytics.previous_same_days"), T("analytics.previous_period"))


def _figures(*cards: rx.Component) -> rx.Component:
    return rx.grid(*cards, columns=rx.breakpoints(initial="1", sm="3"), spacing="4", width="100%")


def _download_buttons(section: str) -> rx.Component:
    return rx.hstack(
        rx.button(rx.icon("file-text", size=14), "CSV", variant="soft", size="2",
                  on_click=S.download("csv", section), id=f"download-{section}-csv"),
        rx.button(rx.icon("file-spreadsheet", size=14), "XLSX", variant="soft", size="2",
                  on_click=S.download("xlsx", section), id=f"download-{section}-xlsx"),
        spacing="2",
    )


def filters_bar() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.flex(
                _select(S.period_options, S.period, S.set_period, "analytics.filter.period", "filter-period"),
                _select(S.product_options, S.product, lambda v: S.set_filter("product", v),
                        "analytics.filter.product", "filter-product"),
                _select(S.vendor_options, S.vendor, lambda v: S.set_filter("vendor", v),
                        "analytics.filter.vendor", "filter-vendor"),
                _select(S.subscription_options, S.subscription, lambda v: S.set_filter("subscription", v),
                        "analytics.filter.subscription", "filter-subscription"),
                _select(S.model_options, S.model, lambda v: S.set_filter("model", v),
                        "analytics.filter.model", "filter-model"),
                gap="3", wrap="wrap", width="100%", align="end",
            ),
            rx.cond(
                S.period == "custom",
                rx.form(
                    rx.flex(
                        _filter("analytics.filter.from",
                                date_input("from", "filter-from", S.date_from_shown, required=True)),
                        _filter("analytics.filter.to",
                                date_input("to", "filter-to", S.date_to_shown, required=True)),
                        rx.button(T("analytics.filter.apply"), type="submit", size="2", id="filter-apply"),
                        gap="3", wrap="wrap", align="end",
                    ),
                    on_submit=S.apply_custom,
                    reset_on_submit=False,
                ),
                rx.fragment(),
            ),
            rx.flex(
                rx.text(S.period_label, size="2", color=rx.color("gray", 11), id="period-label"),
                rx.cond(S.filters_active,
                        rx.button(rx.icon("x", size=14), T("analytics.filter.reset"), variant="ghost", size="1",
                                  on_click=S.reset_filters, id="filter-reset"),
                        rx.fragment()),
                gap="3", align="center", wrap="wrap",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        id="filters",
    )


def summary() -> rx.Component:
    return _figures(
        _figure("analytics.total_spend", S.total, "total"),
        _figure(_previous_title(S.previous_partial), S.previous_total, "previous-total",
                rx.text(S.previous_label, size="1", color=rx.color("gray", 11))),
        _figure("analytics.change", S.change_pct, "change-pct",
                amount_text(S.change, color=rx.cond(S.change_up, rx.color("red", 11), rx.color("green", 11)),
                            id="change")),
    )


STRUCTURE_COLUMNS = [
    Column("label", "analytics.col.name"),
    Column("amount", "analytics.col.amount_short", align="right", numeric=True),
    Column("share", "analytics.col.share", align="right", numeric=True),
]


def structure_card() -> rx.Component:
    return _card(
        "analytics.structure",
        rx.segmented_control.root(
            rx.segmented_control.item(T("analytics.by_product"), value="product"),
            rx.segmented_control.item(T("analytics.by_vendor"), value="vendor"),
            rx.segmented_control.item(T("analytics.by_subscription"), value="subscription"),
            rx.segmented_control.item(T("analytics.by_payment_model"), value="payment_model"),
            value=S.structure_dim,
            on_change=S.set_structure_dim,
            size="1",
            id="structure-dim",
            max_width="100%",
            overflow_x="auto",
        ),
        rx.grid(
            _chart(S.structure_fig, "structure-chart"),
            data_table(STRUCTURE_COLUMNS, S.structure_rows, table_id="structure-table"),
            columns=rx.breakpoints(initial="1", lg="2"),
            spacing="4",
            width="100%",
            align_items="start",
        ),
        card_id="structure",
    )


DYNAMICS_COLUMNS = [
    Column("period", "analytics.col.period"),
    Column("amount", "analytics.col.current", align="right", numeric=True),
    Column("previous", "analytics.col.previous", align="right", numeric=True),
]


def dynamics_card() -> rx.Component:
    return _card(
        "analytics.dynamics",
        rx.text(rx.cond(S.granularity == "day", T("analytics.per_day"), T("analytics.per_month")), size="1",
                color=rx.color("gray", 11)),
        _chart(S.dynamics_fig, "dynamics-chart"),
        rx.accordion.root(
            rx.accordion.item(
                header=T("analytics.show_table"),
                content=data_table(DYNAMICS_COLUMNS, S.dynamics_rows, table_id="dynamics-table"),
                value="table",
            ),
            collapsible=True,
            type="single",
            variant="ghost",
            width="100%",
        ),
        card_id="dynamics",
    )


IAAS_COLUMNS = [
    Column("label", "analytics.col.name"),
    Column("group", "analytics.col.resource_group", hide_on_phone=True),
    Column("amount", "analytics.col.amount_short", align="right", numeric=True),
    Column("share", "analytics.col.share", align="right", numeric=True),
]

MOVER_COLUMNS = [
    Column("label", "analytics.col.name"),
    Column("kind", "analytics.col.kind", hide_on_phone=True),
    Column("previous", "analytics.col.previous", align="right", numeric=True, hide_on_phone=True),
    Column("current", "analytics.col.current", align="right", numeric=True),
    Column("change", "analytics.col.change", align="right", numeric=True),
    Column("pct", "analytics.col.change_pct", align="right", numeric=True),
]


def iaas_section() -> rx.Component:
    return rx.vstack(
        rx.flex(
            rx.vstack(
                rx.heading(T("analytics.iaas.title"), size="5", as_="h2"),
                rx.text(T("analytics.iaas.subtitle"), size="2", color=rx.color("gray", 11)),
                spacing="1",
            ),
            _download_buttons("iaas"),
            justify="between", align="center", width="100%", wrap="wrap", gap="3",
        ),
        rx.flex(
            _select(S.service_options, S.service, lambda v: S.set_filter("service", v),
                    "analytics.filter.service", "filter-service"),
            _select(S.rg_options, S.rg, lambda v: S.set_filter("rg", v),
                    "analytics.filter.resource_group", "filter-rg"),
            gap="3", wrap="wrap", width="100%",
        ),
        _figures(
            _figure("analytics.iaas.total", S.iaas_total, "iaas-total",
                    rx.cond(S.iaas_credits != "",
                            rx.text(T("analytics.iaas.credits_note", amount=S.iaas_credits), size="2",
                                    color=rx.color("green", 11), id="iaas-credits"),
                            rx.fragment())),
            _figure(_previous_title(S.iaas_previous_partial), S.iaas_previous_total, "iaas-previous",
                    rx.text(S.iaas_change_pct, size="2", color=rx.color("gray", 11))),
            rx.card(rx.vstack(rx.text(T("analytics.iaas.budget"), size="2", color=rx.color("gray", 11)),
                              rx.cond(S.iaas_budget != "", big_amount(S.iaas_budget, id="iaas-budget"),
                                      rx.text(T("analytics.iaas.no_budget"), size="2", color=rx.color("gray", 11))),
                              spacing="1"), width="100%"),
        ),
        rx.cond(S.iaas_unconverted != "",
                rx.callout(T("analytics.iaas.unconverted", amount=S.iaas_unconverted), icon="info", size="1",
                           width="100%"),
                rx.fragment()),
        _card(
            "analytics.iaas.daily",
            rx.segmented_control.root(
                rx.segmented_control.item(T("analytics.iaas.dim.service"), value="service"),
                rx.segmented_control.item(T("analytics.iaas.dim.resource_group"), value="resource_group"),
                rx.segmented_control.item(T("analytics.iaas.dim.resource"), value="resource"),
                value=S.iaas_dim,
                on_change=S.set_iaas_dim,
                size="1",
                id="iaas-dim",
            ),
            when_seen(S.iaas_charts, S.show_iaas_charts, _chart(S.iaas_fig, "iaas-chart"), height="340px"),
            data_table(IAAS_COLUMNS, S.iaas_rows, table_id="iaas-table"),
            card_id="iaas-daily",
        ),
        _card("analytics.iaas.cumulative_title",
              when_seen(S.iaas_charts, S.show_iaas_charts, _chart(S.iaas_cum_fig, "iaas-cumulative-chart"),
                        height="340px"),
              card_id="iaas-cumulative"),
        _card("analytics.iaas.movers", data_table(MOVER_COLUMNS, S.movers, table_id="movers-table",
                                                  empty_key="analytics.iaas.no_movers"),
              card_id="iaas-movers"),
        spacing="4",
        width="100%",
        id="iaas",
    )


@panel_page("/analytics", title_key="analytics.title", section="analytics", on_load=S.load)
def analytics_page() -> rx.Component:
    return rx.vstack(
        page_header("analytics.title", _download_buttons("overview"), subtitle=S.org_name),
        when_loaded(
            S.loaded,
            rx.vstack(
                filters_bar(),
                summary(),
                rx.cond(
                    S.has_spend,
                    rx.vstack(structure_card(), dynamics_card(), spacing="4", width="100%"),
                    rx.callout(T("analytics.none"), icon="chart-no-axes-column", width="100%", id="no-spend"),
                ),
                rx.cond(S.has_iaas, iaas_section(), rx.fragment()),
                spacing="4",
                width="100%",
            ),
        ),
        spacing="0",
        width="100%",
    )
