"""View text of the page states: figures, dates and flags as the strings the view dicts hold.

Sums and dates are formatted on the server in the UI language (``BaseState._lang``) through
``i18n.format`` (Babel), so a figure reads the same in the panel, the mails and the PDFs; a missing
value shows as "—". The components only give the strings their look (``components.money``).

    row["amount"] = fmt_money(entry.amount, entry.currency, self._lang)
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..i18n import format as _fmt

NONE = "—"


def fmt_money(amount: Decimal | int | str | None, currency: str, locale: str, **kw: Any) -> str:
    """'1 234 567,89 сум' (ru) / 'UZS 1,234,567.89' (en); '—' for None."""
    if amount is None:
        return NONE
    return _fmt.format_money(amount, currency, locale, **kw)


def fmt_date(value: date | datetime | None, locale: str, tz: str | None = None, **kw: Any) -> str:
    """A day in the locale's words ('24 сент. 2025 г.'); datetimes in the organisation's zone."""
    return NONE if value is None else _fmt.format_date(value, locale, tz=tz, **kw)


def fmt_datetime(value: datetime | None, locale: str, tz: str | None = None, **kw: Any) -> str:
    return NONE if value is None else _fmt.format_datetime(value, tz or _fmt.DEFAULT_TZ, locale, **kw)


def text_date(value: date | datetime | None, lang: str, tz: str | None = None) -> str:
    """A date inside a sentence: '29 января 2027' (no 'г.' to clash with a full stop)."""
    return fmt_date(value, lang, tz, format="text")


def flag(value: Any) -> str:
    """Booleans travel to the browser as "1" / "" (view dicts hold strings only)."""
    return "1" if value else ""
