"""Money: Decimal only, half-up rounding to the currency's minor unit, conversion at a stored rate."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from noventiq_panel.services.core.errors import InvalidInput

MINOR_UNITS = {"UZS": 2, "USD": 2, "EUR": 2, "RUB": 2, "KZT": 2, "GBP": 2, "JPY": 0}
BASE_CURRENCY = "UZS"  # the Central Bank of Uzbekistan quotes every rate in UZS
MAX_AMOUNT = Decimal("1000000000000")  # 10**12 in any currency: a larger figure is an input error


def minor_unit(currency: str) -> int:
    return MINOR_UNITS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def to_decimal(value, *, field: str = "amount") -> Decimal:
    """Exact conversion of str/int/Decimal. A float is refused: it already lost precision."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{field}: money must not be a float", field=field, key="error.float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise InvalidInput(f"{field}: not a number: {value!r}", field=field, key="error.not_a_number") from None
    else:
        raise InvalidInput(f"{field}: not a number: {value!r}", field=field, key="error.not_a_number")
    if not result.is_finite():
        raise InvalidInput(f"{field}: not a finite number", field=field, key="error.not_a_number")
    return result


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit. Called once, at the ledger."""
    if isinstance(amount, float):
        raise InvalidInput("money must not be a float", key="error.float")
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def parse_amount(value, currency: str, *, field: str = "amount", allow_zero: bool = False,
                 minimum: Decimal | None = None, maximum: Decimal | None = None) -> Decimal:
    """Validate a user-entered amount: a number, positive, at most the currency's decimals, in range."""
    amount = to_decimal(value, field=field)
    if amount.as_tuple().exponent < -minor_unit(currency) and amount != amount.quantize(quantum(currency)):
        raise InvalidInput(f"{field}: at most {minor_unit(currency)} decimal places", field=field,
                           key="error.too_many_decimals", places=minor_unit(currency))
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(f"{field}: must be positive", field=field, key="error.not_positive")
    if minimum is not None and amount < minimum:
        raise InvalidInput(f"{field}: at least {minimum}", field=field, key="error.too_small", minimum=minimum)
    limit = MAX_AMOUNT if maximum is None else min(maximum, MAX_AMOUNT)
    if amount > limit:
        raise InvalidInput(f"{field}: at most {limit}", field=field, key="error.too_large", maximum=limit)
    return amount.quantize(quantum(currency))


def parse_quantity(value, *, minimum: int = 1, maximum: int = 1_000_000, field: str = "quantity") -> int:
    """A whole number of seats within [minimum, maximum]."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{field}: a whole number is required", field=field, key="error.not_integer")
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("-").isdigit():
            raise InvalidInput(f"{field}: a whole number is required", field=field, key="error.not_integer")
        value = int(value)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise InvalidInput(f"{field}: a whole number is required", field=field, key="error.not_integer")
        value = int(value)
    if not isinstance(value, int):
        raise InvalidInput(f"{field}: a whole number is required", field=field, key="error.not_integer")
    if value < minimum:
        raise InvalidInput(f"{field}: at least {minimum}", field=field, key="error.quantity_min", minimum=minimum)
    if value > maximum:
        raise InvalidInput(f"{field}: at most {maximum}", field=field, key="error.quantity_max", maximum=maximum)
    return value


def convert(amount: Decimal, rate_from: Decimal, rate_to: Decimal) -> Decimal:
    """Convert through the base currency: ``rate_*`` are base units per one unit. Not rounded."""
    return Decimal(amount) * Decimal(rate_from) / Decimal(rate_to)
