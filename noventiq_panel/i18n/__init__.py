"""Message catalogs: ``noventiq_panel/i18n/<locale>/<area>.json``, flat keys, Russian by default.

Every area (a developer's module) keeps its own file per locale, e.g. ``ru/common.json`` and
``en/common.json``; this loader merges all files of a locale into one dictionary. A key defined in
two files of the same locale is an error (two modules would overwrite each other): the first one
is kept, it is logged, and ``duplicates()`` (checked by the catalog test) lists it.

- ``t(key, locale, **params)``: the text with ``{name}`` placeholders filled in. A missing key is
  shown as the key itself (visible, never an empty string or a crash) and logged once.
- ``tn(key, count, locale, **params)``: plural forms by CLDR rules, keys ``<key>.one``,
  ``<key>.few``, ``<key>.many``, ``<key>.other`` (Russian needs all four, English one/other).
- ``error_text(exc, locale)``: the translated message of a ``DomainError`` (its ``key`` and
  ``params``), falling back to the error class's generic key when the specific one is missing.

No Reflex import here: services (e-mails, PDFs) may use the catalogs too.
"""

from __future__ import annotations

import json
import logging
import string
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

CATALOG_DIR = Path(__file__).resolve().parent
DEFAULT_LOCALE = "ru"
LOCALES: tuple[str, ...] = ("ru", "en", "uz")
LOCALE_NAMES = {"ru": "Русский", "en": "English", "uz": "Oʻzbekcha"}


class CatalogError(Exception):
    """A catalog file is malformed or two files define the same key."""


def normalize_locale(locale: str | None) -> str:
    """A supported locale code for any input ("en-US", "EN", None → "en"/"ru")."""
    if not locale:
        return DEFAULT_LOCALE
    code = str(locale).strip().lower().replace("_", "-").split("-", 1)[0]
    return code if code in LOCALES else DEFAULT_LOCALE


_duplicates: set[str] = set()


def duplicates() -> list[str]:
    """Keys defined twice in one locale (two area files collide): must be empty."""
    for locale in LOCALES:
        _load_locale(locale)
    return sorted(_duplicates)


def _load_locale(locale: str) -> tuple[dict[str, str], dict[str, str]]:
    """(messages, key → file it came from) of one locale."""
    messages: dict[str, str] = {}
    origin: dict[str, str] = {}
    folder = CATALOG_DIR / locale
    if not folder.is_dir():
        return messages, origin
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CatalogError(f"{path}: the top level must be an object of flat keys")
        for key, value in data.items():
            if not isinstance(value, str):
                raise CatalogError(f"{path}: {key!r} must be a string (flat keys only)")
            if key in messages:
                # Kept the first; the catalog test fails on this (the app keeps running).
                _duplicates.add(f"{locale}/{path.name}: {key!r} is already defined in {origin[key]}")
                log.error("i18n: %s/%s redefines %r (first defined in %s)", locale, path.name, key, origin[key])
                continue
            messages[key] = value
            origin[key] = path.name
    return messages, origin


@lru_cache(maxsize=None)
def catalog(locale: str) -> Mapping[str, str]:
    """All messages of ``locale`` (cached; ``reload()`` clears the cache)."""
    return _load_locale(normalize_locale(locale))[0]


def key_origins(locale: str) -> dict[str, str]:
    """Which file each key of ``locale`` comes from (for tests and tooling)."""
    return _load_locale(locale)[1]


def reload() -> None:
    catalog.cache_clear()
    _warned.clear()


def all_keys() -> set[str]:
    keys: set[str] = set()
    for locale in LOCALES:
        keys.update(catalog(locale))
    return keys


def has(key: str, locale: str = DEFAULT_LOCALE) -> bool:
    return key in catalog(normalize_locale(locale))


_warned: set[tuple[str, str]] = set()


class _Params(dict):
    """Leaves an unknown placeholder visible (``{name}``) instead of raising."""

    def __missing__(self, name: str) -> str:
        return "{" + name + "}"


def _plain(value: Any, locale: str) -> Any:
    """Dates, datetimes and Decimals formatted for the locale; other values as they are."""
    try:
        from . import format as fmt  # Babel helpers (written by the identity module)
    except ImportError:  # pragma: no cover - during bootstrapping
        fmt = None
    if isinstance(value, datetime):
        if fmt is not None and hasattr(fmt, "format_datetime"):
            return fmt.format_datetime(value, locale)
        return value.strftime("%d.%m.%Y %H:%M")
    if isinstance(value, date):
        if fmt is not None and hasattr(fmt, "format_date"):
            return fmt.format_date(value, locale)
        return value.strftime("%d.%m.%Y")
    if isinstance(value, Decimal):
        if fmt is not None and hasattr(fmt, "format_number"):
            return fmt.format_number(value, locale)
        return str(value)
    return value


def _fill(text: str, params: Mapping[str, Any], locale: str) -> str:
    if not params:
        return text
    values = _Params({k: _plain(v, locale) for k, v in params.items()})
    try:
        return string.Formatter().vformat(text, (), values)
    except (ValueError, IndexError, KeyError, AttributeError):
        log.warning("i18n: cannot fill %r with %r", text, sorted(params))
        return text


def raw(key: str, locale: str = DEFAULT_LOCALE) -> str | None:
    """The unformatted message, or None when the key is missing."""
    return catalog(normalize_locale(locale)).get(key)


def t(key: str, locale: str | None = DEFAULT_LOCALE, /, **params: Any) -> str:
    """The message ``key`` in ``locale`` with ``{placeholders}`` filled in.

    A missing key returns the key itself so the gap is visible on the page (and is logged once).
    """
    locale = normalize_locale(locale)
    text = catalog(locale).get(key)
    if text is None:
        if (locale, key) not in _warned:
            _warned.add((locale, key))
            log.warning("i18n: missing key %r in locale %r", key, locale)
        return key
    return _fill(text, params, locale)


def plural_form(count: int | Decimal, locale: str | None) -> str:
    """CLDR plural category of ``count`` ("one", "few", "many", "other")."""
    from babel import Locale

    try:
        return Locale.parse(normalize_locale(locale)).plural_form(abs(count))
    except Exception:  # pragma: no cover - babel always knows ru and en
        return "other"


def tn(key: str, count: int | Decimal, locale: str | None = DEFAULT_LOCALE, /, **params: Any) -> str:
    """Plural-aware message: ``<key>.<form>`` with ``{count}`` available to the text."""
    locale = normalize_locale(locale)
    form = plural_form(count, locale)
    messages = catalog(locale)
    for candidate in (f"{key}.{form}", f"{key}.other", f"{key}.many"):
        if candidate in messages:
            return _fill(messages[candidate], {"count": count, **params}, locale)
    return t(f"{key}.{form}", locale, count=count, **params)


def error_text(exc: BaseException, locale: str | None = DEFAULT_LOCALE) -> str:
    """The translated message of a domain error.

    Uses ``exc.key`` with ``exc.params``; when that key has no message, the generic key of the
    error's class (``error.invalid``, ``error.forbidden``, ...), then ``error.domain``. Money
    params (``required``, ``available``, ``shortfall`` with a ``currency``) are formatted as money.
    Any other exception gives ``error.unexpected`` (its text is never shown to the user).
    """
    from ..services.core.errors import DomainError

    locale = normalize_locale(locale)
    if not isinstance(exc, DomainError):
        return t("error.unexpected", locale)
    params = dict(getattr(exc, "params", {}) or {})
    currency = params.get("currency")
    if currency:
        try:
            from . import format as fmt

            money = getattr(fmt, "format_money", None)
        except ImportError:  # pragma: no cover
            money = None
        for name, value in list(params.items()):
            if isinstance(value, (Decimal, int)) and not isinstance(value, bool) and name != "places":
                if money is not None and name in {"required", "available", "shortfall", "amount", "minimum",
                                                  "maximum", "limit", "balance"}:
                    params[name] = money(value, currency, locale)
    messages = catalog(locale)
    candidates = [getattr(exc, "key", None)]
    for cls in type(exc).__mro__:
        cls_key = cls.__dict__.get("key")
        if isinstance(cls_key, str):
            candidates.append(cls_key)
    candidates.append("error.domain")
    for key in candidates:
        if key and key in messages:
            return _fill(messages[key], params, locale)
    return t(candidates[0] or "error.domain", locale, **params)


__all__ = [
    "CatalogError",
    "DEFAULT_LOCALE",
    "LOCALES",
    "LOCALE_NAMES",
    "all_keys",
    "catalog",
    "duplicates",
    "error_text",
    "has",
    "key_origins",
    "normalize_locale",
    "plural_form",
    "raw",
    "reload",
    "t",
    "tn",
]
