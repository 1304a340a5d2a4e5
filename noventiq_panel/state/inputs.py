"""What the browser sends to a handler, checked before it reaches a service.

Every public handler is callable by any client with any arguments (see REFLEX-NOTES.md): ids,
texts and form fields are parsed here into the types the services take; the services validate
the values again and check role and organisation.
"""

from __future__ import annotations

from typing import Any

from ..i18n import format as fmt
from ..services.core.authz import MAX_ID
from ..services.core.errors import InvalidInput

MAX_TEXT = 100


def _plain(value: Any) -> str | None:
    """A str or int from the browser as text; None for anything else (bool, dict, None...)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Browser text input: a string, trimmed, at most ``limit`` characters ("" for anything else)."""
    text = _plain(value)
    return "" if text is None else text.strip()[:limit]


def parse_id(value: Any, field: str = "id") -> int:
    """A row id from browser input; anything else is InvalidInput (the service checks ownership)."""
    text = (_plain(value) or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))) or not 0 < int(text) <= MAX_ID:
        raise InvalidInput(f"{field}: not an id", field=field, key="error.invalid")
    return int(text)


def form_text(form: Any, name: str, limit: int, strip: bool = True) -> str:
    """A text field of a submitted form, at most one character over ``limit`` (so the service
    reports "too long" itself); InvalidInput when the field is not text."""
    value = form.get(name, "") if isinstance(form, dict) else ""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: text expected", field=name, key="error.invalid")
    return (value.strip() if strip else value)[: limit + 1]


def form_date(form: Any, name: str, locale: str) -> str:
    """A day typed into a form's date field (``components.forms.date_input``) as an ISO date, ""
    when empty; InvalidInput ``error.date_invalid`` saying the expected form otherwise."""
    value = form.get(name, "") if isinstance(form, dict) else ""
    day = fmt.parse_input_date(value if isinstance(value, str) else None, locale, field=name)
    return day.isoformat() if day else ""


def shown_date(iso: str, locale: str) -> str:
    """An ISO date of a state as its date field shows it in ``locale`` ("" stays "")."""
    from datetime import date

    try:
        return fmt.format_input_date(date.fromisoformat(iso), locale) if iso else ""
    except ValueError:
        return ""
