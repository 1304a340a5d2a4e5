"""A sortable, paged table over rows the state prepared (plain dicts of strings).

The state keeps all rows or a database page in a backend var and puts the visible page into a
public ``list[dict[str, str]]``; sorting and paging are handlers of the page state:

    COLUMNS = [
        Column("number", "billing.col.number", sortable=True),
        Column("amount", "billing.col.amount", align="right", numeric=True, sortable=True),
        Column("status", "billing.col.status"),
    ]
    data_table(COLUMNS, State.rows, sort_key=State.sort_key, sort_desc=State.sort_desc,
               on_sort=State.sort_by, page=State.page, pages=State.pages, on_page=State.go_page,
               on_row_click=State.open_row)

Handlers receive ``sort_by(key: str)``, ``go_page(page: int)`` (1-based) and ``open_row(row_id)``
(``row["id"]``) from the browser: validate them (``state.paging.clamp_page``, ``key in allowed``).

A table whose cells need more than a ``Column`` says is put together from the same pieces:
``sort_header``, ``table_box`` (the surface table that scrolls sideways), ``empty_box`` and
``paged`` (the pager under it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import reflex as rx

from .money import NUMERIC_STYLE
from .text import T


@dataclass(frozen=True)
class Column:
    key: str  # key of the row dict
    label_key: str  # catalog key of the header
    align: str = "left"  # "right" for sums and numbers
    sortable: bool = False
    numeric: bool = False  # tabular digits, no wrapping
    href_key: str | None = None  # row[href_key] makes the cell a link
    badge_color_key: str | None = None  # row[badge_color_key] shows the cell as a coloured badge
    min_width: str | None = None
    hide_on_phone: bool = False


# Radix table size: tighter cells on a phone, where every column counts.
TABLE_SIZE = rx.breakpoints(initial="1", sm="2")
# Shown from the tablet width up (a column, a long label) / only on a phone (what stands in for it).
WIDE_CELL = rx.breakpoints(initial="none", sm="table-cell")
WIDE_INLINE = rx.breakpoints(initial="none", sm="inline")
PHONE_INLINE = rx.breakpoints(initial="inline", sm="none")
PHONE_FLEX = rx.breakpoints(initial="flex", sm="none")


def sort_header(label: Any, key: str, align: str, sort_key: Any, sort_desc: Any, on_sort: Any) -> rx.Component:
    """A header label that sorts by ``key`` when clicked, with the arrow of the current order."""
    icon = rx.cond(
        sort_key == key,
        rx.cond(sort_desc, rx.icon("arrow-down", size=14), rx.icon("arrow-up", size=14)),
        rx.icon("arrow-up-down", size=14, opacity="0.35"),
    )
    return rx.hstack(
        label,
        icon,
        spacing="1",
        align="center",
        justify="end" if align == "right" else "start",
        cursor="pointer",
        on_click=on_sort(key),
        class_name=f"sort-{key}",
    )


def _header_cell(col: Column, sort_key: Any, sort_desc: Any, on_sort: Any) -> rx.Component:
    content: Any = T(col.label_key)
    props: dict[str, Any] = {"white_space": "nowrap"}
    if col.min_width:
        props["min_width"] = col.min_width
    if col.hide_on_phone:
        props["display"] = WIDE_CELL
    if col.sortable and on_sort is not None and sort_key is not None:
        content = sort_header(content, col.key, col.align, sort_key, sort_desc, on_sort)
    return rx.table.column_header_cell(content, text_align=col.align, **props)


def _cell(col: Column, row: Any) -> rx.Component:
    value = row[col.key]
    if col.href_key:
        inner: Any = rx.link(value, href=row[col.href_key])
    elif col.badge_color_key:
        inner = rx.badge(value, color_scheme=row[col.badge_color_key], variant="soft")
    elif col.numeric:
        inner = rx.text(value, style=NUMERIC_STYLE)
    else:
        inner = value
    props: dict[str, Any] = {"text_align": col.align}
    if col.hide_on_phone:
        props["display"] = WIDE_CELL
    if col.min_width:
        props["min_width"] = col.min_width
    return rx.table.cell(inner, **props)


def pager(page: Any, pages: Any, on_page: Any, total: Any = None) -> rx.Component:
    return rx.hstack(
        rx.text(T("table.total", count=total), size="2", color=rx.color("gray", 11), class_name="pager-total")
        if total is not None else rx.fragment(),
        rx.spacer(),
        rx.icon_button(
            rx.icon("chevron-left", size=16),
            on_click=on_page(page - 1),
            disabled=page <= 1,
            variant="soft",
            size="1",
            aria_label=T("a11y.previous_page"),
            class_name="pager-prev",
        ),
        rx.text(T("table.page_of", page=page, pages=pages), size="2", style=NUMERIC_STYLE,
                class_name="pager-label"),
        rx.icon_button(
            rx.icon("chevron-right", size=16),
            on_click=on_page(page + 1),
            disabled=page >= pages,
            variant="soft",
            size="1",
            aria_label=T("a11y.next_page"),
            class_name="pager-next",
        ),
        spacing="2",
        align="center",
        width="100%",
        padding_top="0.75rem",
    )


def table_box(headers: list[rx.Component], rows: Any, render_row: Any, *, size: Any = TABLE_SIZE,
              table_id: str | None = None, **box_props: Any) -> rx.Component:
    """A surface table of ``rows`` (``render_row(row)`` each) that scrolls sideways when the screen
    is narrower than it. ``size=None``: Radix's default cell size."""
    table_props: dict[str, Any] = {} if size is None else {"size": size}
    return rx.box(
        rx.table.root(
            rx.table.header(rx.table.row(*headers)),
            rx.table.body(rx.foreach(rows, render_row)),
            variant="surface",
            width="100%",
            id=table_id,
            **table_props,
        ),
        overflow_x="auto",
        width="100%",
        **box_props,
    )


def empty_box(key: str, box_id: str | None = None) -> rx.Component:
    """What stands in for a table without rows."""
    return rx.center(rx.text(T(key), color=rx.color("gray", 11)), padding="2rem", width="100%",
                     border=f"1px dashed {rx.color('gray', 6)}", border_radius="8px", id=box_id)


def paged(body: rx.Component, page: Any, pages: Any, on_page: Any, total: Any = None) -> rx.Component:
    """``body`` (a table) with the pager under it when there is more than one page."""
    return rx.vstack(body, rx.cond(pages > 1, pager(page, pages, on_page, total), rx.fragment()),
                     spacing="0", width="100%")


def data_table(
    columns: list[Column],
    rows: Any,
    *,
    sort_key: Any = None,
    sort_desc: Any = None,
    on_sort: Any = None,
    page: Any = None,
    pages: Any = None,
    on_page: Any = None,
    total: Any = None,
    on_row_click: Any = None,
    empty_key: str = "table.empty",
    actions: Any = None,
    actions_label_key: str | None = None,
    table_id: str | None = None,
) -> rx.Component:
    """Render ``rows`` (a list-of-dicts Var). ``actions(row)`` adds a last cell of buttons."""

    def render_row(row: Any) -> rx.Component:
        cells = [_cell(c, row) for c in columns]
        if actions is not None:
            cells.append(rx.table.cell(actions(row), text_align="right", white_space="nowrap"))
        props: dict[str, Any] = {"class_name": "nq-row"}
        if on_row_click is not None:
            props["on_click"] = on_row_click(row["id"])
            props["cursor"] = "pointer"
            props["_hover"] = {"background": rx.color("accent", 2)}
        return rx.table.row(*cells, **props)

    headers = [_header_cell(c, sort_key, sort_desc, on_sort) for c in columns]
    if actions is not None:
        headers.append(rx.table.column_header_cell(T(actions_label_key)) if actions_label_key
                       else rx.table.column_header_cell("", aria_label=T("a11y.actions")))
    body = rx.cond(rows.length() > 0, table_box(headers, rows, render_row, table_id=table_id), empty_box(empty_key))
    if page is not None and pages is not None and on_page is not None:
        return paged(body, page, pages, on_page, total)
    return body
