"""Exchange rates of the Central Bank of Uzbekistan: stored per currency and day, in UZS for one unit.

A day without a stored rate uses the latest earlier one (the feed has no rates on holidays, and a
failed fetch keeps yesterday's rate).
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlmodel import Session, col, select

from noventiq_panel.db import session_memo
from noventiq_panel.models import ExchangeRate, UsageFxRate
from noventiq_panel.services.core.errors import RateMissing
from noventiq_panel.services.core.money import BASE_CURRENCY, convert


def rate_on(session: Session, currency: str, day: date) -> ExchangeRate | None:
    """The rate in force on ``day``: that day's, else the latest earlier one. None for UZS.

    Remembered by the unit of work until it writes (a page converts many amounts at one rate)."""
    if currency.upper() == BASE_CURRENCY:
        return None
    memo = session_memo(session, "rates.rate_on")
    key = (currency.upper(), day)
    if key not in memo:
        memo[key] = session.exec(
            select(ExchangeRate)
            .where(ExchangeRate.currency == currency.upper(), ExchangeRate.rate_date <= day)
            .order_by(col(ExchangeRate.rate_date).desc())
            .limit(1)
        ).first()
    return memo[key]


def unit_rate(session: Session, currency: str, day: date) -> Decimal:
    if currency.upper() == BASE_CURRENCY:
        return Decimal(1)
    row = rate_on(session, currency, day)
    if row is None:
        raise RateMissing(f"no {currency} rate on or before {day}", currency=currency, day=str(day))
    return row.rate


def conversion_rate(session: Session, from_currency: str, to_currency: str, day: date) -> Decimal:
    """How many ``to_currency`` units one ``from_currency`` unit costs on ``day``."""
    if from_currency.upper() == to_currency.upper():
        return Decimal(1)
    return unit_rate(session, from_currency, day) / unit_rate(session, to_currency, day)


def convert_amount(session: Session, amount: Decimal, from_currency: str, to_currency: str, day: date) -> tuple[Decimal, Decimal]:
    """(converted amount, rate used), not rounded: the ledger rounds once."""
    if from_currency.upper() == to_currency.upper():
        return Decimal(amount), Decimal(1)
    rate = conversion_rate(session, from_currency, to_currency, day)
    return convert(amount, unit_rate(session, from_currency, day), unit_rate(session, to_currency, day)), rate


def usage_rate(session: Session, currency: str, billing_currency: str, day: date, *, fix: bool = False) -> Decimal:
    """The rate at which usage of ``day`` is charged: the one fixed when usage of that day was first
    charged, else the day's conversion rate to 6 decimals (``fix``: and fix it now; rating does).
    RateMissing when neither exists."""
    if currency.upper() == billing_currency.upper():
        return Decimal(1)
    fixed = session.exec(select(UsageFxRate.rate).where(
        UsageFxRate.currency == currency.upper(), UsageFxRate.billing_currency == billing_currency.upper(),
        UsageFxRate.day == day)).first()
    if fixed is not None:
        return fixed
    rate = conversion_rate(session, currency, billing_currency, day).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    if fix:
        session.add(UsageFxRate(currency=currency.upper(), billing_currency=billing_currency.upper(), day=day,
                                rate=rate))
        session.flush()
    return rate


def store_rate(session: Session, currency: str, day: date, rate: Decimal, source: str = "cbu") -> ExchangeRate:
    """Insert or replace the rate of one currency and day (the caller commits)."""
    row = session.exec(
        select(ExchangeRate).where(ExchangeRate.currency == currency.upper(), ExchangeRate.rate_date == day)
    ).first()
    if row is None:
        row = ExchangeRate(currency=currency.upper(), rate_date=day, rate=rate, source=source)
    else:
        row.rate, row.source = rate, source
    session.add(row)
    return row


def latest_rates(session: Session, day: date, currencies=("USD", "EUR", "RUB")) -> list[ExchangeRate]:
    return [r for c in currencies if (r := rate_on(session, c, day)) is not None]


def stored_since(session: Session, since: date, currency: str | None = None) -> list[ExchangeRate]:
    """The stored rates of days after ``since`` (one currency or all), newest first (operators)."""
    query = select(ExchangeRate).where(ExchangeRate.rate_date > since)
    if currency:
        query = query.where(ExchangeRate.currency == currency.upper())
    return list(session.exec(query.order_by(col(ExchangeRate.rate_date).desc(), ExchangeRate.currency)).all())
