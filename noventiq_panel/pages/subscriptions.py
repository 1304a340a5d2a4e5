"""/subscriptions — the organisation's subscriptions: status, payment model, end date; search,
filters, sorting and paging; the auto-renew switch, the licence-count dialog and the vendor portal.

Every action goes through ``SubscriptionsState`` handlers, which call the services (they check the
role); the controls are hidden from read-only roles as a convenience only.
"""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page, search_form
from ..components.tables import pager
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
    return rx.flex(
        search_form(S, placeholder_key="subscriptions.search", input_id="subs-search", width="18rem"),
        rx.select.root(
            rx.select.trigger(id="subs-status", min_width="10rem"),
            rx.select.content(
                rx.select.item(T("subscriptions.filter.current"), value="current"),
                rx.select.item(T("subscriptions.filter.all"), value=ALL),
                *[rx.select.item(T(f"subscriptions.status.{s}"), value=s) for s in STATUSES],
            ),
            value=S.status_filter,
            on_change=S.set_status_filter,
        ),
        rx.select.root(
            rx.select.trigger(id="subs-vendor", min_width="10rem"),
            rx.select.content(
                rx.select.item(T("subscriptions.filter.all_vendors"), value=ALL),
                rx.foreach(S.vendor_options, lambda v: rx.select.item(v["label"], value=v["value"])),
            ),
            value=S.vendor_filter,
            on_change=S.set_vendor_filter,
        ),
        gap="2",
        wrap="wrap",
        align="center",
        width="100%",
        margin_bottom="1rem",
    )


def header_cell(key, label_key: str | None, align: str, phone: bool) -> rx.Component:
    label = T(label_key) if label_key else ""
    if key in SORTABLE:
        icon = rx.cond(
            S.sort_key == key,
            rx.cond(S.sort_desc, rx.icon("arrow-down", size=14), rx.icon("arrow-up", size=14)),
            rx.icon("arrow-up-down", size=14, opacity="0.35"),
        )
        label = rx.hstack(label, icon, spacing="1", align="center", cursor="pointer", on_click=S.sort_by(key),
                          justify="end" if align == "right" else "start", class_name=f"sort-{key}")
    return rx.table.column_header_cell(label, text_align=align, white_space="nowrap",
                                       display=None if phone else WIDE)


def table_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.link(row["name"], href=row["href"], weight="medium"),
                rx.text(row["vendor"], " · ", row["model"], size="1", color=rx.color("gray", 10)),
                spacing="0",
            ),
            min_width="13rem",
        ),
        rx.table.cell(rx.badge(row["status"], color_scheme=row["status_color"], variant="soft")),
        rx.table.cell(
            rx.vstack(
                rx.cond(row["end_label"] != "", rx.text(row["end_label"], size="1", color=rx.color("gray", 10)),
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
                                     disabled=~BaseState.can_write, size="1", class_name="auto-renew")),
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
    table = rx.table.root(
        rx.table.header(rx.table.row(*[header_cell(*h) for h in HEADERS])),
        rx.table.body(rx.foreach(S.rows, table_row)),
        variant="surface",
        size="2",
        width="100%",
        id="subscriptions-table",
    )
    return rx.vstack(
        rx.cond(
            S.rows.length() > 0,
            rx.box(table, overflow_x="auto", width="100%"),
            rx.center(rx.text(T("subscriptions.nothing_found"), color=rx.color("gray", 10)), padding="2rem",
                      width="100%", border=f"1px dashed {rx.color('gray', 6)}", border_radius="8px",
                      id="subs-nothing"),
        ),
        rx.cond(S.pages > 1, pager(S.page, S.pages, S.go_page, S.total), rx.fragment()),
        spacing="0",
        width="100%",
    )


def row_actions(row: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.cond(
            (row["can_qty"] == "1") & BaseState.can_write,
            rx.tooltip(
                rx.icon_button(rx.icon("users", size=14), size="1", variant="soft", on_click=S.open_qty(row["id"]),
                               class_name="change-qty", aria_label="licences"),
                content=T("subscriptions.qty.title"),
            ),
            rx.fragment(),
        ),
        rx.cond(
            row["portal_url"] != "",
            rx.tooltip(
                rx.link(
                    rx.icon_button(rx.icon("external-link", size=14), size="1", variant="ghost",
                                   aria_label="vendor portal"),
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
        rx.text(T("subscriptions.qty.new"), as_="label", html_for="qty-value", size="2", weight="medium"),
        rx.input(value=S.qty_value, on_change=S.set_qty_value, id="qty-value", type="number", min=S.qty_min,
                 max=S.qty_max, step="1", input_mode="numeric", width="100%", size="3", auto_focus=True),
        rx.text(T("subscriptions.qty.range", min=S.qty_min, max=S.qty_max), size="1", color=rx.color("gray", 10)),
        rx.cond(S.qty_error != "",
                rx.callout(S.qty_error, icon="circle-alert", color_scheme="red", size="1", width="100%",
                           id="qty-error"),
                rx.fragment()),
        rx.text(T("subscriptions.qty.window_note"), size="1", color=rx.color("gray", 10)),
        rx.hstack(
            rx.dialog.close(rx.button(T("common.cancel"), variant="soft", color_scheme="gray")),
            rx.button(T("subscriptions.qty.preview"), on_click=S.preview_qty, id="qty-preview"),
            justify="end", width="100%", spacing="3", margin_top="0.5rem",
        ),
        spacing="2",
        width="100%",
    )


def shortfall_block(preview: rx.Var, on_invoice, invoice_number: rx.Var) -> rx.Component:
    """Shown when the balance does not cover the charge: the missing amount, a top-up link with
    exactly that amount, and an invoice for it (the action is carried out once it is paid)."""
    return rx.cond(
        preview["shortfall"] != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("wallet", size=16)),
            rx.vstack(
                rx.text(T("subscriptions.shortfall", amount=preview["shortfall"]), size="2"),
                rx.hstack(
                    rx.link(rx.button(rx.icon("plus", size=14), T("subscriptions.top_up"), size="1"),
                            href=preview["topup_href"], class_name="topup-link"),
                    rx.cond(invoice_number == "",
                            rx.button(rx.icon("file-text", size=14), T("subscriptions.invoice"), size="1",
                                      variant="soft", on_click=on_invoice, class_name="shortfall-invoice"),
                            rx.link(T("subscriptions.invoice_open", number=invoice_number), href="/billing",
                                    size="2")),
                    spacing="2",
                    wrap="wrap",
                ),
                spacing="2",
            ),
            color_scheme="orange",
            width="100%",
            class_name="shortfall",
        ),
        rx.fragment(),
    )


def quantity_confirm() -> rx.Component:
    p = S.qty_preview
    return rx.vstack(
        rx.text(T("subscriptions.qty.change", old=p["old"], new=p["new"]), size="3", weight="medium"),
        rx.callout(p["now"], icon="info", size="1", width="100%", id="qty-now"),
        rx.cond(p["later"] != "", rx.text(p["later"], size="2", id="qty-later"), rx.fragment()),
        shortfall_block(p, S.request_qty_invoice, S.qty_invoice),
        rx.hstack(
            rx.button(T("common.back"), variant="soft", color_scheme="gray", on_click=S.qty_back),
            rx.button(T("subscriptions.qty.confirm"), on_click=S.confirm_qty, loading=S.qty_busy,
                      disabled=p["shortfall"] != "", id="qty-confirm"),
            justify="end", width="100%", spacing="3", margin_top="0.5rem",
        ),
        spacing="3",
        width="100%",
    )


def quantity_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(T("subscriptions.qty.title")),
            rx.dialog.description(S.qty_name, size="2", color=rx.color("gray", 11), margin_bottom="0.75rem"),
            rx.cond(S.qty_step == "confirm", quantity_confirm(), quantity_form()),
            max_width="30rem",
        ),
        open=S.qty_open,
        on_open_change=S.set_qty_open,
    )


def empty_state() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon("layers", size=32, color=rx.color("gray", 9)),
            rx.text(T("subscriptions.empty"), size="3", weight="medium"),
            rx.text(T("subscriptions.empty_hint"), size="2", color=rx.color("gray", 11)),
            rx.link(rx.button(rx.icon("shopping-cart", size=16), T("subscriptions.buy")), href="/catalog"),
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
            rx.link(rx.button(rx.icon("shopping-cart", size=16), T("subscriptions.buy")), href="/catalog",
                    id="buy-subscription"),
        ),
        rx.cond(
            S.loaded,
            rx.cond(
                (S.total == 0) & no_filters,
                rx.vstack(filters(), empty_state(), spacing="0", width="100%"),
                rx.vstack(filters(), subscriptions_table(), spacing="0", width="100%"),
            ),
            rx.center(rx.spinner(size="3"), padding="3rem", width="100%"),
        ),
        quantity_dialog(),
        spacing="0",
        width="100%",
    )
