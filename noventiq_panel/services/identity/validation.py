"""Checks of what people type about themselves and their organisation: e-mail addresses, passwords,
names, the language, and an organisation's name, tax id and phone. Shared by sign-up, invitations,
the reseller's ``create-customer`` and the guest order, so each rule is written once."""

from __future__ import annotations

import re
from typing import Any

import email_validator

from noventiq_panel.i18n.format import SUPPORTED_LOCALES
from noventiq_panel.services.core import requisites
from noventiq_panel.services.core.errors import InvalidInput

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256  # argon2 takes any length; a megabyte "password" would only burn CPU
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Uzbek tax ids: a company's INN (СТИР) has nine digits, an individual entrepreneur's ПИНФЛ fourteen
TAX_ID_RE = requisites.TAX_ID_RE
PHONE_RE = re.compile(r"\+?[0-9 ()\-]{5,32}", re.ASCII)  # ASCII digits (``\d`` takes any script's)


def normalize_email(email: Any) -> str:
    """Trimmed, lower-case; InvalidInput (field ``email``) when it is not ONE plain e-mail address.

    ``email-validator`` checks the syntax (no deliverability lookup): a display name, a second
    address after a comma, a quoted local part or a domain literal are refused, so an address
    cannot smuggle a second recipient or look like another one."""
    if not isinstance(email, str):
        raise InvalidInput("e-mail is required", field="email", key="auth.email_invalid")
    value = email.strip().lower()
    if not value:
        raise InvalidInput("e-mail is required", field="email", key="auth.email_required")
    if len(value) > 254 or not _EMAIL.match(value) or any(c in value for c in ',;<>"()[]\\'):
        raise InvalidInput("not an e-mail address", field="email", key="auth.email_invalid")
    try:
        checked = email_validator.validate_email(value, check_deliverability=False, allow_quoted_local=False,
                                                 allow_domain_literal=False, allow_display_name=False)
    except email_validator.EmailNotValidError:
        raise InvalidInput("not an e-mail address", field="email", key="auth.email_invalid") from None
    return checked.normalized.lower()


def validate_password(password: Any, *, field: str = "password") -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidInput(f"the password needs at least {PASSWORD_MIN_LENGTH} characters", field=field,
                           key="auth.password_too_short", min=PASSWORD_MIN_LENGTH)
    if len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidInput(f"the password may have at most {PASSWORD_MAX_LENGTH} characters", field=field,
                           key="auth.password_too_long", max=PASSWORD_MAX_LENGTH)
    if not password.strip():
        raise InvalidInput("the password cannot be blank", field=field, key="auth.password_too_short",
                           min=PASSWORD_MIN_LENGTH)
    return password


# Control characters (C0, DEL, C1) and the invisible direction and width controls that make a text
# display differently from what it is ("Trojan Source" bidirectional overrides, zero-width joiners).
_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                     "\u2066-\u2069\ufeff]")


def refuse_hidden(value: str, *, field: str) -> str:
    """Free text that people will read: InvalidInput ``error.hidden_characters`` when it carries
    control or direction-override characters (newlines and tabs are whitespace, handled by callers)."""
    if _HIDDEN.search(value):
        raise InvalidInput(f"{field}: control or direction characters", field=field, key="error.hidden_characters")
    return value


def validate_name(name: Any, *, field: str = "name", key: str = "auth.name_required") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a name is required", field=field, key=key)
    value = " ".join(refuse_hidden(name, field=field).split())
    if len(value) > 255:
        raise InvalidInput("the name is too long", field=field, key="auth.name_too_long", max=255)
    return value


def validate_locale(locale: Any) -> str:
    if not isinstance(locale, str) or locale.strip().lower() not in SUPPORTED_LOCALES:
        raise InvalidInput("unsupported language", field="locale", key="auth.locale_invalid")
    return locale.strip().lower()


def _text(value: Any, *, field: str, max_len: int, required: bool = False, key: str | None = None) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: text expected", field=field, key="organisations.invalid")
    value = refuse_hidden(value, field=field).strip()
    if required and not value:
        raise InvalidInput(f"{field} is required", field=field, key=key or "organisations.required")
    if len(value) > max_len:
        raise InvalidInput(f"{field}: at most {max_len} characters", field=field, key="organisations.too_long", max=max_len)
    return value


def validate_org_name(value: Any) -> str:
    return " ".join(_text(value, field="org_name", max_len=255, required=True, key="organisations.name_required").split())


def validate_tax_id(value: Any) -> str:
    """Nine digits (a company's INN) or fourteen (an entrepreneur's ПИНФЛ), spaces ignored; or empty."""
    return requisites.validate_tax_id(_text(value, field="tax_id", max_len=32))


def validate_phone(value: Any) -> str:
    text = " ".join(_text(value, field="phone", max_len=64).split())
    if text and (not PHONE_RE.fullmatch(text) or sum(c in "0123456789" for c in text) < 5):
        raise InvalidInput("not a phone number", field="phone", key="organisations.phone_invalid")
    return text
