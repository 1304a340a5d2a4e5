"""Shared UI pieces: the layout and page decorator, translated text, tables, dialogs, search, money."""

from .dialogs import confirm_dialog
from .layout import page_header, panel_page
from .search import search_form
from .money import amount_text, big_amount, fmt_date, fmt_datetime, fmt_money, fmt_number
from .tables import Column, clamp_page, data_table, page_count, sort_rows
from .text import T, T_var

__all__ = [
    "Column",
    "T",
    "T_var",
    "amount_text",
    "big_amount",
    "clamp_page",
    "confirm_dialog",
    "data_table",
    "fmt_date",
    "fmt_datetime",
    "fmt_money",
    "fmt_number",
    "page_count",
    "page_header",
    "panel_page",
    "search_form",
    "sort_rows",
]
