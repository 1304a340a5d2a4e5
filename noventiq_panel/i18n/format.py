"""Locale-aware formatting of money, numbers, percentages, dates and times (Babel).

Shared by the mail templates and the web pages, so a figure reads the same everywhere:

    format_money(Decimal("1234567.89"), "UZS", "ru")  -> "1 234 567,89 сум"
    format_money(Decimal("1234567.89"), "UZS", "en")  -> "UZS 1,234,567.89"
    format_money(Decimal("-12.5"), "USD", "en")       -> "-$12.50"
    format_datetime(dt_utc, "Asia/Tashkent", "ru")    -> "24 сент. 2025 г., 14:05"

The spaces inside the results are NO-BREAK SPACEs (U+00A0), as Babel/CLDR write them, so an amount
never breaks across lines; compare with ``.replace("\\xa0", " ")`` in tests if needed.

Rules:
- Money is ``Decimal`` (or int / numeric str); a float is refused (``InvalidInput``, key
  ``error.float``). The amount is rounded half-up to the currency's minor unit for display.
- Supported locales are ``ru`` (default) and ``en``; "ru-RU", "en_US", None and unknown values are
  normalised by :func:`normalize_locale`.
- Datetimes must be timezone-aware (stored UTC); they are shown in the given IANA time zone
  (the organisation's, Asia/Tashkent by default).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date as _babel_date
from babel.dates import format_time as _babel_time
from babel.numbers import format_decimal as _babel_decimal
from babel.numbers import get_currency_name, get_currency_symbol, get_decimal_symbol, get_group_symbol

from ..services.core.errors import InvalidInput
from ..services.core.money import minor_unit, to_decimal
from . import DEFAULT_LOCALE
from . import LOCALES as SUPPORTED_LOCALES  # the one list of languages

DEFAULT_TZ = "Asia/Tashkent"
NBSP = "\u00a0"

# Currency signs Babel does not know the way our customers write them. CLDR gives "UZS" for the
# sum in Russian; in Uzbekistan it is written «сум».
_SYMBOLS: dict[tuple[str, str], str] = {
    ("ru", "UZS"): "сум",
}
_NAMES: dict[tuple[str, str], str] = {
    ("ru", "UZS"): "узбекский сум",
    ("en", "UZS"): "Uzbekistani som",
    ("uz", "UZS"): "oʻzbek soʻmi",
}
# Babel's locale of each language: Uzbek is written in the Latin script.
_BABEL = {"uz": "uz_Latn"}


def normalize_locale(locale: str | None) -> str:
    """'ru', 'ru-RU', 'RU_ru' -> 'ru'; 'en-GB' -> 'en'; anything else -> the default 'ru'."""
    if not locale:
        return DEFAULT_LOCALE
    lang = str(locale).strip().replace("-", "_").split("_", 1)[0].lower()
    return lang if lang in SUPPORTED_LOCALES else DEFAULT_LOCALE


@lru_cache(maxsize=8)
def _locale(locale: str) -> Locale:
    return Locale.parse(_BABEL.get(locale, locale))


def _zone(tz: str | None) -> ZoneInfo:
    return ZoneInfo(tz or DEFAULT_TZ)


def currency_symbol(currency: str, locale: str | None = DEFAULT_LOCALE) -> str:
    """The sign written next to an amount: 'сум' (ru, UZS), 'UZS' (en), '$', '€', '₽'..."""
    loc = normalize_locale(locale)
    code = currency.upper()
    return _SYMBOLS.get((loc, code)) or get_currency_symbol(code, locale=_locale(loc))


def currency_name(currency: str, locale: str | None = DEFAULT_LOCALE) -> str:
    """The currency's name for select boxes: 'узбекский сум', 'US Dollar'..."""
    loc = normalize_locale(locale)
    code = currency.upper()
    return _NAMES.get((loc, code)) or get_currency_name(code, locale=_locale(loc))


def _digits_pattern(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places > 0 else "")


def format_number(value, locale: str | None = DEFAULT_LOCALE, *, decimals: int | None = None) -> str:
    """A plain number with the locale's grouping: ru '1 234 567,5', en '1,234,567.5'.

    ``decimals`` fixes the number of decimal places (rounded half-up); by default the value's own
    decimals are kept (up to 6, trailing zeros dropped). ints stay ints. Floats are accepted here
    (percentages, chart values), but money should go through :func:`format_money`.
    """
    loc = normalize_locale(locale)
    if isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = to_decimal(value, field="number")
    if decimals is not None:
        number = number.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        if number == 0:
            number = abs(number)  # never "-0"
        return _grouped(number, decimals, loc)
    else:
        number = number.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP).normalize()
        places = max(0, -number.as_tuple().exponent)
        pattern = "#,##0" + ("." + "#" * places if places else "")
    if number == 0:
        number = abs(number)  # never "-0"
    return _babel_decimal(number, format=pattern, locale=_locale(loc), decimal_quantization=True)


def format_money(amount, currency: str, locale: str | None = DEFAULT_LOCALE, *, with_sign: bool = True,
                 decimals: int | None = None) -> str:
    """An amount in a currency, as the locale writes it.

    ru: '1 234 567,89 сум', '12,50 $'; en: 'UZS 1,234,567.89', '$12.50'; negatives '-…'.
    ``with_sign=False`` gives the number only ('1 234 567,89'), for table columns whose header
    names the currency. ``decimals`` overrides the currency's minor unit (e.g. 0 for chart labels).
    """
    loc = normalize_locale(locale)
    code = (currency or "").upper()
    value = to_decimal(amount, field="amount")
    places = minor_unit(code) if decimals is None else decimals
    value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    negative = value < 0
    number = _grouped(abs(value), places, loc)
    if not with_sign:
        return ("-" if negative else "") + number
    symbol, first = _money_sign(loc, code)
    if first:
        # The sign goes first (en). A sign made of letters ('UZS') is separated by a space
        # (CLDR currency spacing); '$12.50' is not.
        glue = NBSP if symbol[-1:].isalpha() else ""
        text = f"{symbol}{glue}{number}"
    else:
        text = f"{number}{NBSP}{symbol}"
    return ("-" if negative else "") + text


def money_template(currency: str, locale: str | None, number: str) -> str:
    """``number`` (e.g. Plotly's ``%{y:,.2f}``) with the currency's sign where the locale writes it:
    ru '%{y:,.2f} сум', en 'UZS %{y:,.2f}', '$%{y:,.2f}'. Charts format their hover text with it
    in the browser (with :func:`plot_separators`), not one string per point on the server."""
    symbol, first = _money_sign(normalize_locale(locale), (currency or "").upper())
    if first:
        return symbol + (NBSP if symbol[-1:].isalpha() else "") + number
    return number + NBSP + symbol


def plot_separators(locale: str | None) -> str:
    """Plotly's ``layout.separators`` for the locale: the decimal symbol, then the group symbol."""
    group, point = _number_symbols(normalize_locale(locale))
    return point + group


def _grouped(number: Decimal, places: int, loc: str) -> str:
    """``number`` (already rounded) in groups of three with the locale's symbols, as Babel's
    '#,##0.00' pattern writes it (a test compares both), without parsing the pattern again for each
    of a page's many amounts."""
    group, point = _number_symbols(loc)
    return f"{number:,.{places}f}".translate({ord(","): group, ord("."): point})


@lru_cache(maxsize=16)
def _number_symbols(loc: str) -> tuple[str, str]:
    """The locale's group and decimal symbols (ru: no-break space and comma)."""
    return get_group_symbol(_locale(loc)), get_decimal_symbol(_locale(loc))


@lru_cache(maxsize=64)
def _money_sign(loc: str, code: str) -> tuple[str, bool]:
    """The currency's sign in the locale and whether the locale writes it before the number."""
    pattern = _locale(loc).currency_formats["standard"].pattern.split(";", 1)[0]
    return currency_symbol(code, loc), pattern.lstrip().startswith("¤")


def format_percent(value, locale: str | None = DEFAULT_LOCALE, *, decimals: int | None = None,
                   fraction: bool = False) -> str:
    """A percentage. ``value`` is in percent points (80 -> ru '80 %', en '80%'; 12.5 -> '12,5 %'),
    or a fraction when ``fraction=True`` (0.8 -> '80 %'). Decimals as in :func:`format_number`."""
    loc = normalize_locale(locale)
    number = Decimal(repr(value)) if isinstance(value, float) else to_decimal(value, field="percent")
    if fraction:
        number = number * 100
    return format_number(number, loc, decimals=decimals) + _percent_sign(loc)


@lru_cache(maxsize=8)
def _percent_sign(loc: str) -> str:
    pattern = _locale(loc).percent_formats[None].pattern
    return f"{NBSP}%" if "\u00a0%" in pattern or " %" in pattern else "%"


# Dates inside running text: no "г." that would clash with a full stop ("до 24 октября 2025.").
_TEXT_DATE = {"ru": "d MMMM y", "en": "MMMM d, y", "uz": "d-MMMM, y"}
# CLDR's short Uzbek date is 24/09/25; documents and people in Uzbekistan write 24.09.2025.
_SHORT_DATE = {"uz": "dd.MM.y"}


def _date_pattern(format: str, loc: str) -> str:
    if format == "text":
        return _TEXT_DATE[loc]
    return _SHORT_DATE.get(loc, format) if format == "short" else format


def _as_local(dt: datetime, tz: str | None) -> datetime:
    if not isinstance(dt, datetime):
        raise TypeError(f"a datetime is required, got {type(dt).__name__}")
    if dt.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware (UTC) datetime")
    return dt.astimezone(_zone(tz))


def format_date(value: date | datetime, locale: str | None = DEFAULT_LOCALE, *, tz: str | None = None,
                format: str = "medium") -> str:
    """A calendar day. ``format``: 'short' (ru 24.09.2025, en 9/24/25), 'medium' (ru 24 сент. 2025 г.,
    en Sep 24, 2025), 'long' (ru 24 сентября 2025 г.), 'full', 'text' (for sentences: ru 24 сентября
    2025, en September 24, 2025) or a CLDR pattern ('dd.MM.yyyy').

    A datetime is first converted to ``tz`` (default Asia/Tashkent), so 2025-09-30 20:00 UTC is
    1 October in Tashkent.
    """
    loc = normalize_locale(locale)
    if isinstance(value, datetime):
        value = _as_local(value, tz).date()
    return _day_text(value, _date_pattern(format, loc), loc)


@lru_cache(maxsize=4096)
def _day_text(day: date, pattern: str, loc: str) -> str:
    """Babel's text of a day (a page writes the same days again and again: chart buckets, terms)."""
    return _babel_date(day, format=pattern, locale=_locale(loc))


def format_month(value: date | datetime, locale: str | None = DEFAULT_LOCALE, *, tz: str | None = None) -> str:
    """A month as a heading: ru 'сентябрь 2025', en 'September 2025'."""
    loc = normalize_locale(locale)
    if isinstance(value, datetime):
        value = _as_local(value, tz).date()
    month = _babel_date(value, format="LLLL y", locale=_locale(loc))
    return month.lower() if loc == "uz" else month  # Uzbek writes month names in lower case, as Russian


def format_time(dt: datetime, tz: str | None = DEFAULT_TZ, locale: str | None = DEFAULT_LOCALE) -> str:
    """Time of day in ``tz``: ru '14:05', en '2:05 PM'."""
    if tz in SUPPORTED_LOCALES:
        tz, locale = DEFAULT_TZ, tz
    loc = normalize_locale(locale)
    return _babel_time(_as_local(dt, tz), format="short", locale=_locale(loc))


def format_datetime(dt: datetime, tz: str | None = DEFAULT_TZ, locale: str | None = DEFAULT_LOCALE, *,
                    format: str = "medium") -> str:
    """A moment in ``tz`` without seconds: ru '24 сент. 2025 г., 14:05', en 'Sep 24, 2025, 2:05 PM'.

    ``format`` is the date part's style ('short' gives ru '24.09.2025, 14:05'; 'text' ru
    '24 сентября 2025, 14:05').
    ``format_datetime(dt, "en")`` (a locale code where the zone goes) is read as the default
    zone in that locale, so a two-argument call cannot crash.
    """
    if tz in SUPPORTED_LOCALES:
        tz, locale = DEFAULT_TZ, tz
    loc = normalize_locale(locale)
    local = _as_local(dt, tz)
    day = _babel_date(local.date(), format=_date_pattern(format, loc), locale=_locale(loc))
    clock = _babel_time(local, format="short", locale=_locale(loc))
    glue = _locale(loc).datetime_formats.get(format) or "{1}, {0}"
    if not isinstance(glue, str):
        glue = "{1}, {0}"
    return glue.replace("{1}", day).replace("{0}", clock)


__all__ = [
    "DEFAULT_LOCALE",
    "DEFAULT_TZ",
    "NBSP",
    "SUPPORTED_LOCALES",
    "currency_name",
    "currency_symbol",
    "format_date",
    "format_datetime",
    "format_money",
    "format_month",
    "format_number",
    "format_percent",
    "format_time",
    "normalize_locale",
]


# --- dates typed into a form -------------------------------------------------------------------
# A text field, not the browser's date picker (which shows the browser's language, not the
# user's): day.month.year in Russian and Uzbek, month/day/year in English; ISO dates are always
# understood (links and the analytics URL carry them).
_INPUT_DATE = {"en": "MM/dd/y"}
_INPUT_DMY = re.compile(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4})")
_INPUT_MDY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def format_input_date(value: date | None, locale: str | None = DEFAULT_LOCALE) -> str:
    """A day as the user types it: ru/uz 05.12.2026, en 12/05/2026 ("" for None)."""
    if value is None:
        return ""
    return _babel_date(value, format=_INPUT_DATE.get(normalize_locale(locale), "dd.MM.y"), locale=_locale("en"))


def parse_input_date(text: str | None, locale: str | None = DEFAULT_LOCALE, *, field: str = "date") -> date | None:
    """The day a user typed (see :func:`format_input_date`; an ISO date too); None for an empty
    field; InvalidInput ``error.date_invalid`` (with the expected form) for anything else."""
    text = (text or "").strip() if isinstance(text, str) else None
    if text == "":
        return None
    loc = normalize_locale(locale)
    try:
        if text is None or len(text) > 10:
            raise ValueError(text)
        if _ISO.fullmatch(text):
            return date.fromisoformat(text)
        found = (_INPUT_MDY if loc == "en" else _INPUT_DMY).fullmatch(text)
        if found is None:
            raise ValueError(text)
        a, b, year = (int(g) for g in found.groups())
        month, day = (a, b) if loc == "en" else (b, a)
        return date(year, month, day)
    except ValueError:
        raise InvalidInput(f"{field}: not a date", field=field, key="error.date_invalid",
                           example=format_input_date(date(2026, 12, 5), loc)) from None
