"""Shared formatting (noventiq_panel.i18n.format): money, numbers, percentages, dates, times."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from noventiq_panel.i18n import format as fmt
from noventiq_panel.services.core.errors import InvalidInput

D = Decimal


def plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


@pytest.mark.parametrize("amount, currency, locale, expected", [
    (D("1234567.89"), "UZS", "ru", "1 234 567,89 сум"),
    (D("1234567.89"), "UZS", "en", "UZS 1,234,567.89"),
    (D("12.5"), "USD", "en", "$12.50"),
    (D("12.5"), "USD", "ru", "12,50 $"),
    (D("-1234.5"), "UZS", "ru", "-1 234,50 сум"),
    (D("-1234.5"), "UZS", "en", "-UZS 1,234.50"),
    (D("0"), "UZS", "ru", "0,00 сум"),
    (D("-0.001"), "UZS", "ru", "0,00 сум"),
    (D("0.005"), "USD", "en", "$0.01"),  # half-up, not banker's rounding
    (D("0.125"), "UZS", "ru", "0,13 сум"),
    (1000, "EUR", "en", "€1,000.00"),
    ("1500.5", "UZS", "ru", "1 500,50 сум"),
    (D("1000"), "JPY", "en", "¥1,000"),
    (D("1234567.89"), "UZS", "uz", "1 234 567,89 soʻm"),
    (D("-1234.5"), "UZS", "uz", "-1 234,50 soʻm"),
    (D("12.5"), "USD", "uz", "12,50 US$"),
])
def test_format_money(amount, currency, locale, expected):
    assert plain(fmt.format_money(amount, currency, locale)) == expected


def test_money_keeps_an_amount_on_one_line():
    assert "\u00a0" in fmt.format_money(D("1234567.89"), "UZS", "ru")
    assert " " not in fmt.format_money(D("1234567.89"), "UZS", "ru")


def test_money_without_sign_and_other_precision():
    assert plain(fmt.format_money(D("1234567.89"), "UZS", "ru", with_sign=False)) == "1 234 567,89"
    assert plain(fmt.format_money(D("1234567.89"), "UZS", "en", decimals=0)) == "UZS 1,234,568"


def test_money_refuses_float():
    with pytest.raises(InvalidInput):
        fmt.format_money(0.1, "UZS", "ru")


def test_unknown_or_regional_locales_fall_back():
    assert fmt.normalize_locale("en-US") == "en"
    assert fmt.normalize_locale("RU_ru") == "ru"
    assert fmt.normalize_locale(None) == "ru"
    assert fmt.normalize_locale("uz-Latn-UZ") == "uz"
    assert fmt.normalize_locale("kk") == "ru"
    assert plain(fmt.format_money(D("1"), "UZS", "en_GB")) == "UZS 1.00"


def test_currency_names():
    assert fmt.currency_symbol("UZS", "ru") == "сум"
    assert fmt.currency_name("UZS", "ru") == "узбекский сум"
    assert fmt.currency_name("USD", "en") == "US Dollar"
    assert fmt.currency_symbol("UZS", "uz") == "soʻm"
    assert fmt.currency_name("UZS", "uz") == "oʻzbek soʻmi"


@pytest.mark.parametrize("value, locale, kw, expected", [
    (D("1234567.5"), "ru", {}, "1 234 567,5"),
    (D("1234567.5"), "en", {}, "1,234,567.5"),
    (D("2.50"), "en", {}, "2.5"),
    (3, "ru", {}, "3"),
    (D("2.345"), "ru", {"decimals": 2}, "2,35"),
    (D("1234567.5"), "uz", {}, "1 234 567,5"),
    (1.25, "en", {}, "1.25"),
    (D("-0.0001"), "en", {"decimals": 2}, "0.00"),
])
def test_format_number(value, locale, kw, expected):
    assert plain(fmt.format_number(value, locale, **kw)) == expected


@pytest.mark.parametrize("value, locale, kw, expected", [
    (80, "ru", {}, "80 %"),
    (80, "en", {}, "80%"),
    (D("12.5"), "ru", {}, "12,5 %"),
    (D("0.8"), "en", {"fraction": True}, "80%"),
    (D("33.333"), "en", {"decimals": 1}, "33.3%"),
])
def test_format_percent(value, locale, kw, expected):
    assert plain(fmt.format_percent(value, locale, **kw)) == expected


def test_dates_and_months():
    d = date(2025, 9, 24)
    assert plain(fmt.format_date(d, "ru")) == "24 сент. 2025 г."
    assert fmt.format_date(d, "en") == "Sep 24, 2025"
    assert fmt.format_date(d, "ru", format="short") == "24.09.2025"
    assert fmt.format_date(d, "ru", format="text") == "24 сентября 2025"
    assert fmt.format_date(d, "en", format="text") == "September 24, 2025"
    assert fmt.format_date(d, "ru", format="dd.MM.yyyy") == "24.09.2025"
    assert fmt.format_month(d, "ru") == "сентябрь 2025"
    assert fmt.format_month(d, "en") == "September 2025"
    assert fmt.format_date(d, "uz", format="text") == "24-sentabr, 2025"
    assert fmt.format_date(d, "uz", format="short") == "24.09.2025"
    assert fmt.format_datetime(datetime(2025, 9, 30, 20, 30, tzinfo=timezone.utc), "Asia/Tashkent", "uz",
                               format="short") == "01.10.2025, 01:30"
    assert fmt.format_month(d, "uz") == "sentabr 2025"


def test_a_moment_is_shown_in_the_organisations_time_zone():
    late = datetime(2025, 9, 30, 20, 30, tzinfo=timezone.utc)  # 1 October 01:30 in Tashkent
    assert fmt.format_date(late, "ru", format="short") == "01.10.2025"
    assert fmt.format_date(late, "ru", tz="UTC", format="short") == "30.09.2025"
    assert plain(fmt.format_datetime(late, "Asia/Tashkent", "ru")) == "1 окт. 2025 г., 01:30"
    assert plain(fmt.format_datetime(late, "Asia/Tashkent", "en")) == "Oct 1, 2025, 1:30 AM"
    assert fmt.format_datetime(late, "Asia/Tashkent", "ru", format="short") == "01.10.2025, 01:30"
    assert fmt.format_time(late, "Asia/Tashkent", "ru") == "01:30"
    # a locale passed where the zone goes (format_datetime(dt, "en")) still works
    assert plain(fmt.format_datetime(late, "en")) == "Oct 1, 2025, 1:30 AM"
    assert fmt.format_month(late, "en") == "October 2025"


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError):
        fmt.format_datetime(datetime(2025, 9, 30, 20, 30), "Asia/Tashkent", "ru")


@pytest.mark.parametrize("text, locale, expected", [
    ("05.12.2026", "ru", date(2026, 12, 5)), ("5.1.2026", "uz", date(2026, 1, 5)), ("12/05/2026", "en", date(2026, 12, 5)),
    ("2026-12-05", "ru", date(2026, 12, 5)), ("2026-12-05", "en", date(2026, 12, 5)), ("  ", "ru", None), ("", "en", None),
])
def test_a_day_typed_in_the_users_language(text, locale, expected):
    """Issue 19: the date fields follow the user's language, not the browser's."""
    assert fmt.parse_input_date(text, locale) == expected
    if expected:
        assert fmt.parse_input_date(fmt.format_input_date(expected, locale), locale) == expected


@pytest.mark.parametrize("text, locale", [("31.02.2026", "ru"), ("12/31/2026", "ru"), ("05.12.2026", "en"),
                                          ("5.12.26", "uz"), ("2026-13-01", "ru"), ("1" * 11, "ru"), ("сегодня", "ru")])
def test_a_day_that_is_not_one_is_refused_with_the_expected_form(text, locale):
    with pytest.raises(InvalidInput) as exc:
        fmt.parse_input_date(text, locale)
    assert exc.value.key == "error.date_invalid"
    assert exc.value.params["example"] == ("12/05/2026" if locale == "en" else "05.12.2026")


@given(st.decimals(min_value=-10**12, max_value=10**12, places=6, allow_nan=False, allow_infinity=False),
       st.sampled_from(["UZS", "USD", "EUR", "RUB", "JPY"]), st.sampled_from(["ru", "en", "uz"]))
def test_money_digits_are_written_as_babel_writes_them(value, currency, lang):
    """format_money groups digits itself (it is called for every amount of a page); Babel's
    '#,##0.00' pattern in the same locale is the reference."""
    from babel.numbers import format_decimal

    from noventiq_panel.i18n.format import _locale, minor_unit

    places = minor_unit(currency)
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    expected = format_decimal(abs(rounded), format="#,##0" + ("." + "0" * places if places else ""),
                              locale=_locale(lang), decimal_quantization=True)
    assert fmt.format_money(value, currency, lang, with_sign=False) == ("-" if rounded < 0 else "") + expected


@given(st.decimals(min_value=-10**9, max_value=10**9, places=4, allow_nan=False, allow_infinity=False),
       st.integers(min_value=0, max_value=3), st.sampled_from(["ru", "en", "uz"]))
def test_numbers_with_fixed_decimals_are_written_as_babel_writes_them(value, decimals, lang):
    from babel.numbers import format_decimal

    from noventiq_panel.i18n.format import _locale

    rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    expected = format_decimal(abs(rounded) if rounded == 0 else rounded,
                              format="#,##0" + ("." + "0" * decimals if decimals else ""),
                              locale=_locale(lang), decimal_quantization=True)
    assert fmt.format_number(value, lang, decimals=decimals) == expected
