"""Domain errors. Each carries a message key for the i18n catalogs and its parameters, so the UI
shows a clear, translated message; ``str(error)`` is an English fallback for logs and the CLI."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class DomainError(Exception):
    """A business rule refused the operation; nothing was changed."""

    key = "error.domain"

    def __init__(self, message: str, *, key: str | None = None, **params: Any):
        super().__init__(message)
        self.message = message
        if key:
            self.key = key
        self.params = params


class NotFound(DomainError):
    """Missing, or belonging to another organisation: both look the same to the caller."""

    key = "error.not_found"


class Forbidden(DomainError):
    key = "error.forbidden"


class NotAuthenticated(DomainError):
    key = "error.not_authenticated"


class InvalidInput(DomainError):
    key = "error.invalid"

    def __init__(self, message: str, *, field: str | None = None, key: str | None = None, **params: Any):
        super().__init__(message, key=key, field=field, **params)
        self.field = field


class Conflict(DomainError):
    key = "error.conflict"


class InsufficientFunds(DomainError):
    """The balance (plus credit limit for postpaid) does not cover ``required``."""

    key = "error.insufficient_funds"

    def __init__(self, required: Decimal, available: Decimal, currency: str):
        shortfall = required - available
        super().__init__(
            f"Insufficient funds: {required} {currency} needed, {available} available, {shortfall} missing",
            required=required,
            available=available,
            shortfall=shortfall,
            currency=currency,
        )
        self.required = required
        self.available = available
        self.shortfall = shortfall
        self.currency = currency


class RateMissing(DomainError):
    key = "error.rate_missing"


class Throttled(DomainError):
    key = "error.throttled"


class VendorUnavailable(DomainError):
    """The vendor did not answer, or kept failing, after the retries; nothing is known to have changed
    there (an order whose outcome is unknown says so in its message). Try again later."""

    key = "error.vendor_unavailable"


class VendorRefused(DomainError):
    """The vendor answered with an error of its own: ``code`` and ``description`` are the vendor's."""

    key = "error.vendor_refused"

    def __init__(self, code: str, description: str, *, key: str | None = None, **params: Any):
        super().__init__(f"Vendor refused ({code}): {description}", key=key, code=code, description=description, **params)
        self.code = code
        self.description = description
