"""Money and number display.

Sums are formatted on the server (``state.formatting.fmt_money``, Babel) into strings that go into
view dicts; these helpers only give them the right look: tabular digits, never wrapped,
right-aligned in tables, red when negative.

    row["amount"] = fmt_money(entry.amount, entry.currency, self._lang)   # in the state
    amount_text(row["amount"])                                               # in the page
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from .text import T

NUMERIC_STYLE = {"font_variant_numeric": "tabular-nums", "white_space": "nowrap"}


def amount_text(value: Any, *, size: str = "2", negative: Any = None, **props: Any) -> rx.Component:
    """A formatted sum (a string Var): tabular digits, no wrapping; red when ``negative``."""
    style = dict(NUMERIC_STYLE)
    if negative is not None:
        props.setdefault("color", rx.cond(negative, rx.color("red", 11), rx.color("gray", 12)))
    return rx.text(value, size=size, style=style, **props)


def big_amount(value: Any, *, negative: Any = None, **props: Any) -> rx.Component:
    """The headline figure of a card (balance, consumption)."""
    return amount_text(value, size=rx.breakpoints(initial="6", xl="7"), weight="bold", negative=negative, **props)


def amount_line(label_key: str, value: Any, *, spread: bool = True, **props: Any) -> rx.Component:
    """A muted label and its sum on one line (credit limit, available, forecast); ``spread`` puts
    them at the two ends of the line, else side by side."""
    layout: dict[str, Any] = {"justify": "between", "width": "100%", "wrap": "wrap"} if spread else {"spacing": "2"}
    return rx.hstack(rx.text(T(label_key), size="2", color=rx.color("gray", 11)), amount_text(value, **props),
                     **layout)
