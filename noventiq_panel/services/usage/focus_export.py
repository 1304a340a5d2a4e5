"""The organisation's usage as a FinOps FOCUS CSV, at the customer's prices.

Costs are the customer's: the usage cost with the plan's markup, converted to the billing currency
at the rate the rating used for the usage day (``rates.usage_rate``; the day's rate while the
usage is not rated yet, empty when there is none); ``x_PricingCost``/``x_PricingCurrency`` give it
in the usage currency. Figures are written to 6 decimals, without trailing zeros.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlmodel import Session

from noventiq_panel.config import get_settings
from noventiq_panel.models import Organisation, UsageRecord
from noventiq_panel.services.core import clock, rates, spreadsheet
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput, RateMissing
from noventiq_panel.services.catalog import subscription_info
from noventiq_panel.services.usage.usage_formats import MICRO


FOCUS_EXPORT_COLUMNS = (
    "BillingAccountId", "BillingAccountName", "BillingCurrency", "BilledCost", "EffectiveCost",
    "ChargeCategory", "ChargeDescription", "ChargePeriodStart", "ChargePeriodEnd", "ConsumedQuantity",
    "ConsumedUnit", "ProviderName", "PublisherName", "InvoiceIssuerName", "ResourceId", "ResourceName",
    "ServiceName", "SubAccountId", "SubAccountName", "x_ResourceGroupName", "x_PricingCurrency",
    "x_PricingCost", "x_ExchangeRate",
)


def _iso(dt: datetime) -> str:
    return clock.aware(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def export_focus(session: Session, actor: Actor, start: date, end: date, *, chunk_rows: int = 5000
                 ) -> Iterator[bytes]:
    """The organisation's usage of ``[start, end)`` (local dates) as FOCUS CSV, in chunks of bytes.

    Costs are the customer's: the price with the plan's markup, in the billing currency at the rate
    the rating used (the day's rate while not rated yet); ``x_PricingCost``/``x_PricingCurrency``
    give it in the usage currency. Access is checked at once; rows stream as the result is read.
    """
    access = can_read(session, actor)
    if end <= start:
        raise InvalidInput("period: the end must be after the start", field="period", key="error.analytics_period")
    org = session.get(Organisation, access.org_id)
    subs = subscription_info.subscriptions_of(session, org.id)
    return _export_rows(session, org, subs, start, end, chunk_rows)


def _export_rows(session: Session, org: Organisation, subs: dict, start: date, end: date, chunk_rows: int
                 ) -> Iterator[bytes]:
    a, b = clock.local_midnight(start, org.timezone), clock.local_midnight(end, org.timezone)
    buf = io.StringIO()
    writer = spreadsheet.writer(buf, lineterminator="\n")
    writer.writerow(FOCUS_EXPORT_COLUMNS)
    rate_cache: dict = {}
    query = (
        select(UsageRecord.period_start, UsageRecord.period_end, UsageRecord.subscription_id, UsageRecord.service,
               UsageRecord.meter, UsageRecord.resource_group, UsageRecord.resource_id, UsageRecord.resource_name,
               UsageRecord.quantity, UsageRecord.unit, UsageRecord.cost, UsageRecord.currency)
        .where(UsageRecord.org_id == org.id, UsageRecord.period_start >= a, UsageRecord.period_start < b)
        .order_by(UsageRecord.period_start, UsageRecord.id)
        .execution_options(yield_per=chunk_rows)
    )
    n = 0
    for ps, pe, sid, svc, meter, rg, rid, rname, qty, unit, cost, currency in session.execute(query):
        info = subs.get(sid)
        markup = info.markup_pct if info else Decimal(0)
        price = cost * (1 + markup / 100)
        key = (currency, clock.local_date(ps, org.timezone))
        if key not in rate_cache:
            try:
                rate_cache[key] = rates.usage_rate(session, currency, org.billing_currency, key[1])
            except RateMissing:
                rate_cache[key] = None
        fx = rate_cache[key]
        billed = _plain((price * fx).quantize(MICRO, rounding=ROUND_HALF_UP)) if fx is not None else ""
        writer.writerow((
            str(org.id), org.name, org.billing_currency, billed, billed, "Usage", meter, _iso(ps), _iso(pe),
            _plain(qty), unit, info.vendor_name if info else "", info.vendor_name if info else "",
            get_settings().seller_name, rid, rname, svc, info.vendor_ref if info else "",
            info.name if info else str(sid), rg, currency, _plain(price.quantize(MICRO, rounding=ROUND_HALF_UP)),
            _plain(fx) if fx is not None else "",
        ))
        n += 1
        if n % chunk_rows == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def export_focus_bytes(session: Session, actor: Actor, start: date, end: date) -> bytes:
    return b"".join(export_focus(session, actor, start, end))
