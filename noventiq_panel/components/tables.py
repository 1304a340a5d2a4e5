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
(``row["id"]``) from the browser: validate them (``paging.clamp_page``, ``key in allowed``).
"""

from __future__ import annotations

import math
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


def page_count(total: int, size: int) -> int:
    return max(1, math.ceil(max(0, int(total)) / max(1, int(size))))


def clamp_page(page: Any, total: int, size: int) -> int:
    """A 1-based page number from browser input, within [1, pages]."""
    try:
        number = int(str(page))
    except (TypeError, ValueError):
        number = 1
    return min(max(1, number), page_count(total, size))


def sort_rows(rows: list[dict], key: str, desc: bool, sort_values: dict[str, Any] | None = None) -> list[dict]:
    """Sort prepared rows in Python by ``row["_sort"][key]`` when present (the raw value: Decimal,
    date), else by the displayed text. Use for small in-memory lists; page big ones in SQL."""

    def value(row: dict):
        raw = (row.get("_sort") or {}).get(key)
        if raw is None:
            raw = row.get(key, "")
        return (raw is None, raw)

    return sorted(rows, key=value, reverse=desc)


def _header_cell(col: Column, sort_key: Any, sort_desc: Any, on_sort: Any) -> rx.Component:
    label: Any = T(col.label_key)
    props: dict[str, Any] = {"white_space": "nowrap"}
    if col.min_width:
        props["min_width"] = col.min_width
    if col.hide_on_phone:
        props["display"] = WIDE_CELL
    if col.sortable and on_sort is not None and sort_key is not None:
        icon = rx.cond(
            sort_key == col.key,
            rx.cond(sort_desc, rx.icon("arrow-down", size=14), rx.icon("arrow-up", size=14)),
            rx.icon("arrow-up-down", size=14, opacity="0.35"),
        )
        content = rx.hstack(
            label,
            icon,
            spacing="1",
            align="center",
            justify="end" if col.align == "right" else "start",
            cursor="pointer",
            on_click=on_sort(col.key),
            class_name=f"sort-{col.key}",
        )
    else:
        content = label
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
        rx.text(T("table.total", count=total), size="2", color=rx.color("gray", 11))
        if total is not None else rx.fragment(),
        rx.spacer(),
        rx.icon_button(
            rx.icon("chevron-left", size=16),
            on_click=on_page(page - 1),
            disabled=page <= 1,
            variant="soft",
            size="1",
            aria_label="previous page",
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
            aria_label="next page",
            class_name="pager-next",
        ),
        spacing="2",
        align="center",
        width="100%",
        padding_top="0.75rem",
    )


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
        headers.append(rx.table.column_header_cell(T(actions_label_key) if actions_label_key else ""))
    table = rx.table.root(
        rx.table.header(rx.table.row(*headers)),
        rx.table.body(rx.foreach(rows, render_row)),
        variant="surface",
        size=TABLE_SIZE,
        width="100%",
        id=table_id,
    )
    body = rx.cond(
        rows.length() > 0,
        rx.box(table, overflow_x="auto", width="100%"),
        rx.center(rx.text(T(empty_key), color=rx.color("gray", 10)), padding="2rem", width="100%",
                  border=f"1px dashed {rx.color('gray', 6)}", border_radius="8px"),
    )
    if page is not None and pages is not None and on_page is not None:
        return rx.vstack(body, rx.cond(pages > 1, pager(page, pages, on_page, total), rx.fragment()),
                         spacing="0", width="100%")
    return body
