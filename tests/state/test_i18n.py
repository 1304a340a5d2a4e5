"""The message catalogs: every language complete, no key defined twice, placeholders that match,
a missing key visible, domain errors translated."""

from __future__ import annotations

import re
import string
from decimal import Decimal
from pathlib import Path

import pytest

from noventiq_panel import i18n
from noventiq_panel.services.core import errors, money

PKG = Path(i18n.__file__).resolve().parent.parent


OTHERS = [loc for loc in i18n.LOCALES if loc != "ru"]


def test_the_languages_are_russian_english_and_uzbek():
    assert i18n.LOCALES == ("ru", "en", "uz")


@pytest.mark.parametrize("loc", OTHERS)
def test_every_key_of_the_russian_catalogs_exists_in_every_language(loc):
    ru, other = set(i18n.catalog("ru")), set(i18n.catalog(loc))
    assert sorted(ru - other) == [], f"keys missing in {loc}"
    assert sorted(other - ru) == [], f"keys of {loc} that Russian lacks"


@pytest.mark.parametrize("loc", OTHERS)
def test_every_area_file_exists_in_every_language(loc):
    names = {code: sorted(p.name for p in (i18n.CATALOG_DIR / code).glob("*.json")) for code in ("ru", loc)}
    assert names["ru"] == names[loc]


def test_no_key_is_defined_by_two_area_files():
    i18n.reload()
    assert i18n.duplicates() == []


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


@pytest.mark.parametrize("loc", OTHERS)
def test_placeholders_are_the_same_in_every_language(loc):
    ru, other = i18n.catalog("ru"), i18n.catalog(loc)
    different = {k: (_fields(ru[k]), _fields(other[k])) for k in ru if k in other and _fields(ru[k]) != _fields(other[k])}
    assert different == {}


def test_uzbek_is_written_in_the_latin_script_with_its_own_apostrophes():
    """oʻ and gʻ take U+02BB, the tutuq belgisi U+02BC; no Cyrillic and no ASCII quote inside a word."""
    wrong = {k: v for k, v in i18n.catalog("uz").items()
             if re.search(r"[А-Яа-яЁё]", v) or re.search(r"[A-Za-z]['`‘’][A-Za-z]", v)}
    assert wrong == {}


def test_no_empty_messages():
    for loc in i18n.LOCALES:
        assert [k for k, v in i18n.catalog(loc).items() if not v.strip()] == []


def test_missing_key_is_shown_as_the_key_not_blank():
    assert i18n.t("no.such.key", "en") == "no.such.key"
    assert i18n.t("menu.home", "en") == "Home"
    assert i18n.t("menu.home", "ru") == "Главная"
    assert i18n.t("menu.home", "de-DE") == "Главная"  # unknown locale → Russian


def test_parameters_are_filled_and_unknown_placeholders_stay_visible():
    assert i18n.t("table.page_of", "en", page=2, pages=5) == "Page 2 of 5"
    assert i18n.t("table.page_of", "en", page=2) == "Page 2 of {pages}"


def test_russian_plural_forms():
    # The plural helper picks CLDR forms; with only ".other" present it falls back to it.
    assert i18n.plural_form(1, "ru") == "one"
    assert i18n.plural_form(3, "ru") == "few"
    assert i18n.plural_form(5, "ru") == "many"
    assert i18n.plural_form(1, "en") == "one"


def test_every_generic_error_key_of_the_services_is_translated():
    keys = {cls.key for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.DomainError)}
    core = PKG / "services" / "core"
    source = "".join((core / name).read_text() for name in ("money.py", "errors.py", "authz.py", "ledger.py"))
    keys |= set(re.findall(r'key="(error\.[a-z_]+)"', source))
    for loc in i18n.LOCALES:
        assert sorted(k for k in keys if k not in i18n.catalog(loc)) == [], loc


def test_domain_error_is_translated_with_money_formatted():
    exc = errors.InsufficientFunds(required=Decimal("1500000.00"), available=Decimal("1000000.00"), currency="UZS")
    ru = i18n.error_text(exc, "ru").replace("\u00a0", " ")
    assert ru == "Недостаточно средств: нужно 1 500 000,00 сум, доступно 1 000 000,00 сум, не хватает 500 000,00 сум."
    en = i18n.error_text(exc, "en").replace("\u00a0", " ")
    assert "UZS 500,000.00" in en


def test_domain_error_with_an_unknown_key_falls_back_to_its_class_message():
    exc = errors.Forbidden("nope", key="error.some_new_thing_nobody_translated")
    assert i18n.error_text(exc, "en") == i18n.t("error.forbidden", "en")


def test_an_unexpected_exception_never_shows_its_text():
    assert i18n.error_text(RuntimeError("secret stack detail"), "en") == i18n.t("error.unexpected", "en")


@pytest.mark.parametrize("value", ["1,5", "abc", "1.234"])
def test_money_input_errors_have_messages(value):
    try:
        money.parse_amount(value, "UZS", maximum=Decimal("1"))
    except errors.DomainError as exc:
        text = i18n.error_text(exc, "ru")
        assert text and not text.startswith("error.")
