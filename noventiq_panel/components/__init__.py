"""Shared UI pieces: the layout and page decorator, translated text, cards, forms and dialogs,
tables, the search box, money and the confirmation step of a charge.

Components sit above the states: they may read ``state.base.BaseState`` (the signed-in frame) and
take a page's state as an argument; the states never import them (their view text comes from
``state.formatting``)."""

from .cards import card_title, section_card
from .dialogs import confirm_dialog, step_dialog
from .forms import (
    back_button,
    button_row,
    close_button,
    date_input,
    error_callout,
    field_label,
    hint,
    labelled,
    read_only_note,
)
from .layout import page_header, panel_page, tab_panel, when_loaded
from .money import amount_line, amount_text, big_amount
from .preview import quote_confirm, shortfall_block
from .search import filter_bar, search_form
from .tables import Column, data_table, empty_box, paged, sort_header, table_box
from .text import T

__all__ = [
    "Column",
    "T",
    "amount_line",
    "amount_text",
    "back_button",
    "big_amount",
    "button_row",
    "card_title",
    "close_button",
    "confirm_dialog",
    "data_table",
    "empty_box",
    "error_callout",
    "field_label",
    "filter_bar",
    "hint",
    "labelled",
    "date_input",
    "page_header",
    "paged",
    "panel_page",
    "quote_confirm",
    "read_only_note",
    "search_form",
    "section_card",
    "shortfall_block",
    "sort_header",
    "step_dialog",
    "tab_panel",
    "table_box",
    "when_loaded",
]
