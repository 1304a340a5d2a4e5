"""/subscriptions — the organisation's subscriptions: status, payment model, end date; search,
filters, sorting and paging; the auto-renew switch, the licence-count dialog and the vendor portal.

Every action goes through ``SubscriptionsState`` handlers, which call the services (they check the
role); the controls are hidden from read-only roles as a convenience only.
"""

from __future__ import annotations

import reflex as rx

from ..components import (
    T, button_row, close_button, empty_box, error_callout, field_label, filter_bar, hint, page_header, paged,
    panel_page, quote_confirm, search_form, sort_header, step_dialog, table_box, when_loaded,
)
from ..state.base import BaseState
from ..state.subscriptions import ALL, STATUSES, SubscriptionsState as S

SORTABLE = {"name", "status", "term_end", "quantity"}
HEADERS = [  # (sort key or None, label key, align, shown on phones)
    ("name", "subscriptions.col.name", "left", True),
    ("status", "subscriptions.col.status", "left", True),
    ("term_end", "subscriptions.col.end", "left", True),
    ("quantity", "subscriptions.col.quantity", "right", False),
    (None, "subscriptions.auto_renew_short", "left", False),
    (None, None, "right", True),
]
WIDE = rx.breakpoints(initial="none", md="table-cell")


def filters() -> rx.Component:
    return filter_bar(
        search_form(S, placeholder_key="subscriptions.search", input_id="subs-search", width="18rem"),
        rx.select.root(
            rx.select.trigger(id="subs-status", min_width="10rem", aria_label=T("a11y.status_filter")),
            rx.select.content(
                rx.select.item(T("subscriptions.filter.current"), value="current"),
                rx.select.item(T("subscriptions.filter.all"), value=ALL),
                *[rx.select.item(T(f"subscriptions.status.{s}"), value=s) for s in STATUSES],
            ),
            value=S.status_filter,
            on_change=S.set_status_filter,
        ),
        rx.select.root(
            rx.select.trigger(id="subs-vendor", min_width="10rem", aria_label=T("a11y.vendor_filter")),
            rx.select.content(
                rx.select.item(T("subscriptions.filter.all_vendors"), value=ALL),
                rx.foreach(S.vendor_options, lambda v: rx.select.item(v["label"], value=v["value"])),
            ),
            value=S.vendor_filter,
            on_change=S.set_vendor_filter,
        ),
    )


def header_cell(key, label_key: str | None, align: str, phone: bool) -> rx.Component:
    label = T(label_key) if label_key else ""
    if key in SORTABLE:
        label = sort_header(label, key, align, S.sort_key, S.sort_desc, S.sort_by)
    named = {} if label_key else {"aria_label": T("a11y.actions")}  # the actions column: no visible title
    return rx.table.column_header_cell(label, text_align=align, white_space="nowrap",
                                       display=None if phone else WIDE, **named)


def table_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.link(row["name"], href=row["href"], weight="medium"),
                rx.text(row["vendor"], " · ", row["model"], size="1", color=rx.color("gray", 11)),
                spacing="0",
            ),
            min_width="13rem",
        ),
        rx.table.cell(rx.badge(row["status"], color_scheme=row["status_color"], variant="soft")),
        rx.table.cell(
            rx.vstack(
                rx.cond(row["end_label"] != "", rx.text(row["end_label"], size="1", color=rx.color("gray", 11)),
                        rx.fragment()),
                rx.text(row["end"], size="2", style={"white_space": "nowrap"}),
                spacing="0",
            ),
        ),
        rx.table.cell(rx.text(row["quantity"], style={"font_variant_numeric": "tabular-nums"}), text_align="right",
                      display=WIDE),
        rx.table.cell(
            rx.cond(
                row["show_auto_renew"] == "1",
                rx.tooltip(
                    rx.box(rx.switch(checked=row["auto_renew"] == "1",
                                     on_change=lambda value: S.toggle_auto_renew(row["id"], value),
                                     disabled=~BaseState.can_write, size="1", class_name="auto-renew",
                                     aria_label=T("subscriptions.auto_renew_short"))),
                    content=T("subscriptions.auto_renew_hint"),
                ),
                rx.fragment(),
            ),
            display=WIDE,
        ),
        rx.table.cell(row_actions(row), text_align="right", white_space="nowrap"),
        class_name="nq-row",
    )


def subscriptions_table() -> rx.Component:
    return paged(
        rx.cond(
            S.rows.length() > 0,
            table_box([header_cell(*h) for h in HEADERS], S.rows, table_row, size="2", table_id="subscriptions-table"),
            empty_box("subscriptions.nothing_found", "subs-nothing"),
        ),
        S.page, S.pages, S.go_page, S.total,
    )


def row_actions(row: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.cond(
            (row["can_qty"] == "1") & BaseState.can_write,
            rx.tooltip(
                rx.icon_button(rx.icon("users", size=14), size="1", variant="soft", on_click=S.open_qty(row["id"]),
                               class_name="change-qty", aria_label=T("subscriptions.qty.title")),
                content=T("subscriptions.qty.title"),
            ),
            rx.fragment(),
        ),
        rx.cond(
            row["portal_url"] != "",
            rx.tooltip(
                rx.link(
                    rx.icon_button(rx.icon("external-link", size=14), size="1", variant="ghost",
                                   aria_label=T("subscriptions.portal")),
                    href=row["portal_url"],
                    is_external=True,
                    class_name="vendor-portal",
                ),
                content=T("subscriptions.portal"),
            ),
            rx.fragment(),
        ),
        spacing="2",
        align="center",
        justify="end",
    )


def quantity_form() -> rx.Component:
    return rx.vstack(
        rx.text(T("subscriptions.qty.current", quantity=S.qty_current), size="2"),
        field_label("subscriptions.qty.new", "qty-value"),
        rx.form(
            rx.vstack(
                # the number goes with the preview (the form): no event per keystroke
                rx.input(name="quantity", default_value=S.qty_value, key=S.qty_value, id="qty-value", type="number",
                         min=S.qty_min, max=S.qty_max, step="1", input_mode="numeric", width="100%", size="3",
                         auto_focus=True),
                rx.text(T("subscriptions.qty.range", min=S.qty_min, max=S.qty_max), size="1",
                        color=rx.color("gray", 11)),
                error_callout(S.qty_error, "qty-error"),
                hint("subscriptions.qty.window_note"),
                button_row(close_button(), rx.button(T("subscriptions.qty.preview"), type="submit", id="qty-preview")),
                spacing="2",
                width="100%",
            ),
            on_submit=S.preview_qty,
            reset_on_submit=False,
            width="100%",
        ),
        spacing="2",
        width="100%",
    )


def quantity_confirm(state=S, id_prefix: str = "qty", end: bool = True) -> rx.Component:
    """The confirmation of a licence-count change (``state``: a ``QuantityChange`` page state),
    in this page's dialog and on the detail page's Resources tab."""
    p = state.qty_preview
    return quote_confirm(
        T("subscriptions.qty.change", old=p["old"], new=p["new"]), p, id_prefix,
        error_callout(state.qty_error, f"{id_prefix}-changed"),
        on_back=state.qty_back, confirm_key="subscriptions.qty.confirm", on_confirm=state.confirm_qty,
        busy=state.qty_busy, shortfall=(state.request_qty_invoice, state.qty_invoice), end=end,
    )


def quantity_dialog() -> rx.Component:
    return step_dialog(
        T("subscriptions.qty.title"),
        rx.cond(S.qty_step == "confirm", quantity_confirm(), quantity_form()),
        description=S.qty_name,
        open=S.qty_open,
        on_open_change=S.set_qty_open,
    )


def empty_state() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon("layers", size=32, color=rx.color("gray", 9)),
            rx.text(T("subscriptions.empty"), size="3", weight="medium"),
            rx.text(T("subscriptions.empty_hint"), size="2", color=rx.color("gray", 11)),
            rx.cond(S.can_write,
                    rx.link(rx.button(rx.icon("shopping-cart", size=16), T("subscriptions.buy")), href="/catalog")),
            spacing="3",
            align="center",
        ),
        padding="3rem",
        width="100%",
        border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="8px",
        id="subs-empty",
    )


@panel_page("/subscriptions", title_key="subscriptions.title", section="subscriptions", on_load=S.load)
def subscriptions_page() -> rx.Component:
    no_filters = (S.search == "") & ((S.status_filter == ALL) | (S.status_filter == "current")) & \
        (S.vendor_filter == ALL)
    return rx.vstack(
        page_header(
            "subscriptions.title",
            rx.cond(S.can_write,
                    rx.link(rx.button(rx.icon("shopping-cart", size=16), T("subscriptions.buy")), href="/catalog",
                            id="buy-subscription")),
        ),
        when_loaded(
            S.loaded,
            rx.cond(
                (S.total == 0) & no_filters,
                rx.vstack(filters(), empty_state(), spacing="0", width="100%"),
                rx.vstack(filters(), subscriptions_table(), spacing="0", width="100%"),
            ),
        ),
        quantity_dialog(),
        spacing="0",
        width="100%",
    )
