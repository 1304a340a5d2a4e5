"""Money and number display.

Sums are formatted on the server (``i18n.format``, Babel) into strings that go into view dicts;
these helpers only give them the right look: tabular digits, never wrapped, right-aligned in
tables, red when negative.

    row["amount"] = fmt_money(entry.amount, entry.currency, self.locale)   # in the state
    amount_text(row["amount"])                                               # in the page
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import reflex as rx

from ..i18n import format as _fmt

NUMERIC_STYLE = {"font_variant_numeric": "tabular-nums", "white_space": "nowrap"}


def fmt_money(amount: Decimal | int | str | None, currency: str, locale: str, **kw: Any) -> str:
    """'1 234 567,89 сум' (ru) / 'UZS 1,234,567.89' (en); '—' for None."""
    if amount is None:
        return "—"
    return _fmt.format_money(amount, currency, locale, **kw)


def fmt_number(value: Any, locale: str, **kw: Any) -> str:
    return "—" if value is None else _fmt.format_number(value, locale, **kw)


def fmt_date(value: date | datetime | None, locale: str, tz: str | None = None, **kw: Any) -> str:
    """A day in the locale's words ('24 сент. 2025 г.'); datetimes in the organisation's zone."""
    return "—" if value is None else _fmt.format_date(value, locale, tz=tz, **kw)


def fmt_datetime(value: datetime | None, locale: str, tz: str | None = None, **kw: Any) -> str:
    return "—" if value is None else _fmt.format_datetime(value, tz or _fmt.DEFAULT_TZ, locale, **kw)


def amount_text(value: Any, *, size: str = "2", negative: Any = None, **props: Any) -> rx.Component:
    """A formatted sum (a string Var): tabular digits, no wrapping; red when ``negative``."""
    style = dict(NUMERIC_STYLE)
    if negative is not None:
        props.setdefault("color", rx.cond(negative, rx.color("red", 11), rx.color("gray", 12)))
    return rx.text(value, size=size, style=style, **props)


def big_amount(value: Any, *, negative: Any = None, **props: Any) -> rx.Component:
    """The headline figure of a card (balance, consumption)."""
    return amount_text(value, size=rx.breakpoints(initial="6", xl="7"), weight="bold", negative=negative, **props)
