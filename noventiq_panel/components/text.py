"""Translated text in components: ``T("menu.home")`` is a Var that shows the message in the
browser's current UI language (``BaseState.locale``), switching without a server round trip.

Both languages are compiled into the page; the catalogs are read at compile time. A missing key
shows the key itself (visible) and is logged. ``T("table.page", page=State.page)`` fills
``{page}`` with a Var or a plain value.

Server-side text (toasts, formatted sums in view dicts) uses ``BaseState._t`` instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import reflex as rx
from reflex.vars.sequence import StringVar

from ..i18n import DEFAULT_LOCALE, LOCALES, catalog
from ..state.base import BaseState

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _text(key: str, locale: str) -> str:
    text = catalog(locale).get(key)
    if text is None:
        log.warning("i18n: missing key %r in locale %r (compile time)", key, locale)
        return key
    return text


def _fill(text: str, params: dict[str, Any]) -> Any:
    """A plain string, or a concatenation Var when a placeholder is a Var."""
    if not params:
        return text
    parts: list[Any] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos:m.start()])
        name = m.group(1)
        parts.append(params[name] if name in params else m.group(0))
        pos = m.end()
    parts.append(text[pos:])
    if not any(isinstance(p, rx.Var) for p in parts):
        return "".join(str(p) for p in parts)
    result: Any = None
    for p in parts:
        if isinstance(p, str) and p == "":
            continue
        if isinstance(p, rx.Var):
            # A string Var as it is; anything else as text (to_string() would JSON-quote strings).
            piece = p if isinstance(p, StringVar) else p.to(str)
        else:
            piece = rx.Var.create(str(p))
        result = piece if result is None else result + piece
    return result if result is not None else ""


def T(key: str, **params: Any) -> rx.Var:
    """The message ``key`` in the current UI language, as a Var."""
    texts = {loc: _fill(_text(key, loc), params) for loc in LOCALES}
    if all(isinstance(v, str) for v in texts.values()):
        if len(set(texts.values())) == 1:
            return rx.Var.create(texts[DEFAULT_LOCALE])
        return rx.Var.create(texts)[BaseState.locale].to(str)
    # A Var inside: choose with conditions (works for any number of locales).
    result: Any = texts[DEFAULT_LOCALE]
    for loc in LOCALES:
        if loc != DEFAULT_LOCALE:
            result = rx.cond(BaseState.locale == loc, texts[loc], result)
    return result
