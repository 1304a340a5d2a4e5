"""The formats of the codes an electronic invoice (ЭСФ) carries, one function each, so the catalog
import, the organisation's requisites, the settings check and the ЭСФ builder apply the same rule.

Every function takes what a person or a file gave, removes spaces, and returns the code as text;
an empty value is returned as ``""`` unless ``required`` (the callers decide whether a missing code
is an error now or an item of :func:`services.billing.esf.missing_items` later). A wrong format is
``InvalidInput`` with an ``error.requisites.*`` key (texts in ``i18n/<locale>/esf.json``).

- tax id: 9 digits (a company's INN / СТИР) or 14 (a person's ПИНФЛ);
- ИКПУ / MXIK code of a product or service (tasnif.soliq.uz): 17 digits;
- package (unit) code of an ИКПУ code: 1 to 20 digits (the classifier's codes have 7 today);
- VAT registration code (регистрационный код плательщика НДС): 12 digits;
- bank МФО: 5 digits; settlement account (расчётный счёт): 20 digits; ОКЭД: 5 digits.
"""

from __future__ import annotations

import re
from typing import Any

from noventiq_panel.services.core.errors import InvalidInput

# ASCII digits only: ``\d`` would take fullwidth, Arabic-Indic, Devanagari... digits, and a tax id
# written in them looks like another organisation's on a document while comparing as a different
# string (so it would slip past the one-customer-per-tax-id rule). Matched whole (``fullmatch``).
TAX_ID_RE = re.compile(r"[0-9]{9}|[0-9]{14}", re.ASCII)
MXIK_RE = re.compile(r"[0-9]{17}", re.ASCII)
PACKAGE_CODE_RE = re.compile(r"[0-9]{1,20}", re.ASCII)
VAT_REG_CODE_RE = re.compile(r"[0-9]{12}", re.ASCII)
MFO_RE = re.compile(r"[0-9]{5}", re.ASCII)
ACCOUNT_RE = re.compile(r"[0-9]{20}", re.ASCII)
OKED_RE = re.compile(r"[0-9]{5}", re.ASCII)


def _code(value: Any, *, field: str, required: bool, key: str, message: str, pattern: re.Pattern) -> str:
    if value is None:
        value = ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a YAML file may hold a code as a number; leading zeros are then lost (and refused)
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: {message}", field=field, key=key)
    text = "".join(value.split())
    if not text:
        if required:
            raise InvalidInput(f"{field} is required", field=field, key="error.requisites.required", field_name=field)
        return ""
    if not pattern.fullmatch(text):
        raise InvalidInput(f"{field}: {message}", field=field, key=key)
    return text


def validate_tax_id(value: Any, *, required: bool = False, field: str = "tax_id") -> str:
    """9 digits (INN of a company) or 14 (ПИНФЛ of a person); key ``organisations.tax_id_invalid``."""
    return _code(value, field=field, required=required, key="organisations.tax_id_invalid", pattern=TAX_ID_RE,
                 message="the tax id has 9 digits (INN) or 14 (ПИНФЛ)")


def validate_mxik_code(value: Any, *, required: bool = False, field: str = "mxik_code") -> str:
    return _code(value, field=field, required=required, key="error.requisites.mxik_code", pattern=MXIK_RE,
                 message="the ИКПУ (MXIK) code has 17 digits")


def validate_package_code(value: Any, *, required: bool = False, field: str = "package_code") -> str:
    return _code(value, field=field, required=required, key="error.requisites.package_code",
                 pattern=PACKAGE_CODE_RE, message="the package code is 1 to 20 digits")


def validate_vat_reg_code(value: Any, *, required: bool = False, field: str = "vat_reg_code") -> str:
    return _code(value, field=field, required=required, key="error.requisites.vat_reg_code",
                 pattern=VAT_REG_CODE_RE, message="the VAT registration code has 12 digits")


def validate_mfo(value: Any, *, required: bool = False, field: str = "bank_mfo") -> str:
    return _code(value, field=field, required=required, key="error.requisites.mfo", pattern=MFO_RE,
                 message="the bank МФО has 5 digits")


def validate_bank_account(value: Any, *, required: bool = False, field: str = "bank_account") -> str:
    return _code(value, field=field, required=required, key="error.requisites.bank_account", pattern=ACCOUNT_RE,
                 message="the settlement account has 20 digits")


def validate_oked(value: Any, *, required: bool = False, field: str = "oked") -> str:
    return _code(value, field=field, required=required, key="error.requisites.oked", pattern=OKED_RE,
                 message="the ОКЭД code has 5 digits")


__all__ = [
    "validate_bank_account",
    "validate_mfo",
    "validate_mxik_code",
    "validate_oked",
    "validate_package_code",
    "validate_tax_id",
    "validate_vat_reg_code",
]
