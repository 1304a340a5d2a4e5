"""Spend from the ledger: its structure (by product, vendor, subscription and payment model) and
its dynamics (per day or month, against the previous period).

Spend is what the ledger says the organisation paid for: entries of kinds ``charge``, ``usage`` and
``refund`` (negated, so that a charge counts as positive spend and a refund lowers it). An entry
belongs to the period when its ``occurred_at`` falls between the local midnights of ``start`` and
``end``. The figures are sums of the ledger's own minor units, so they equal the ledger to the
tiyin.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, func, select, type_coerce
from sqlmodel import Session

from noventiq_panel.models import EntryKind, LedgerEntry, Organisation
from noventiq_panel.services.catalog.payment_models import PAYMENT_MODELS
from noventiq_panel.services.core import clock
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.catalog.subscription_info import SubInfo
from noventiq_panel.services.reporting.filters import OTHER, Filters, comparison_period, scope
from noventiq_panel.services.core.localdays import day_parts

SPEND_KINDS: tuple[str, ...] = (EntryKind.CHARGE.value, EntryKind.USAGE.value, EntryKind.REFUND.value)
CENT = Decimal("0.01")
ZERO = Decimal("0")
DAILY_MAX_DAYS = 62  # "auto" granularity: per day up to this length, per month above


# --------------------------------------------------------------------------------------------
# Ledger spend


def _ledger_spend(session: Session, org_id: int, tz: str, start: date, end: date, sub_ids: set[int] | None,
                  by_day: bool) -> list[tuple[int | None, Any, int]]:
    """(subscription_id, local day or None, spend in minor units) of the period; spend = -sum(amount).

    The sums are the stored integers (``Money`` keeps hundredths), summed by the database and
    read without a Decimal per row; the day is raw (ISO text on SQLite, a date on PostgreSQL).
    """
    base_where = [LedgerEntry.org_id == org_id, LedgerEntry.kind.in_(SPEND_KINDS)]
    if sub_ids is not None:
        if not sub_ids:
            return []
        base_where.append(LedgerEntry.subscription_id.in_(sorted(sub_ids)))
    amount = func.sum(type_coerce(LedgerEntry.amount, BigInteger))
    conn = session.connection()
    if not by_day:
        a, b = clock.local_midnight(start, tz), clock.local_midnight(end, tz)
        rows = conn.execute(
            select(LedgerEntry.subscription_id, amount)
            .where(*base_where, LedgerEntry.occurred_at >= a, LedgerEntry.occurred_at < b)
            .group_by(LedgerEntry.subscription_id)
        ).all()
        return [(sid, None, -int(total or 0)) for sid, total in rows]
    out: list[tuple[int | None, Any, int]] = []
    for a, b, day_expr in day_parts(session, LedgerEntry.occurred_at, tz, start, end):
        d = day_expr.label("d")
        rows = conn.execute(
            select(LedgerEntry.subscription_id, d, amount)
            .where(*base_where, LedgerEntry.occurred_at >= a, LedgerEntry.occurred_at < b)
            .group_by(LedgerEntry.subscription_id, d)
        ).all()
        out.extend((sid, day, -int(total or 0)) for sid, day, total in rows)
    return out


def _money2(minor: int) -> Decimal:
    """Hundredths (the ledger's stored integer) -> Decimal with two places."""
    return Decimal(int(minor)).scaleb(-2)


@lru_cache(maxsize=256)
def _bucket_map(start: date, end: date, granularity: str) -> dict[Any, int]:
    """Every day of [start, end) (as a date and as ISO text) -> its bucket's index."""
    out: dict[Any, int] = {}
    d = start
    base = start.year * 12 + start.month
    while d < end:
        i = (d - start).days if granularity == "day" else d.year * 12 + d.month - base
        out[d] = out[d.isoformat()] = i
        d += timedelta(days=1)
    return out


@dataclass
class Slice:
    key: str
    label: str
    amount: Decimal
    share: Decimal  # percent of the total, 2 decimals (0 when the total is 0)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Structure:
    start: date
    end: date
    currency: str
    total: Decimal
    by_product: list[Slice]
    by_vendor: list[Slice]
    by_subscription: list[Slice]
    by_payment_model: list[Slice]


def _share(amount: Decimal, total: Decimal) -> Decimal:
    if total == 0:
        return ZERO.quantize(CENT)
    return (amount * 100 / total).quantize(CENT, rounding=ROUND_HALF_UP)


def _slices(sums: dict[str, Decimal], labels: dict[str, str], total: Decimal,
            extras: dict[str, dict[str, Any]] | None = None) -> list[Slice]:
    items = [Slice(k, labels.get(k, ""), v, _share(v, total), (extras or {}).get(k, {}))
             for k, v in sums.items() if v != 0]
    items.sort(key=lambda s: (-s.amount, s.label, s.key))
    return items


def _dims(info: SubInfo | None) -> tuple[str, str, str, str]:
    """Keys of (product, vendor, subscription, payment model) of a subscription (or of none)."""
    if info is None:
        return OTHER, OTHER, OTHER, OTHER
    return str(info.product_id), str(info.vendor_id), str(info.id), info.payment_model


def structure(session: Session, actor: Actor, filters: Filters) -> Structure:
    """Spend of the period by product, vendor, subscription and payment model: sums and shares."""
    access = can_read(session, actor)
    f = filters.validated()
    org = session.get(Organisation, access.org_id)
    subs, kept = scope(session, access, f)
    rows = _ledger_spend(session, org.id, org.timezone, f.start, f.end, kept, by_day=False)
    minor = [defaultdict(int) for _ in range(4)]
    for sid, _day, spend in rows:
        keys = _dims(subs.get(sid) if sid is not None else None)
        for i, key in enumerate(keys):
            minor[i][key] += spend
    total = _money2(sum(spend for _, _, spend in rows))
    sums = [{k: _money2(v) for k, v in m.items()} for m in minor]
    labels_p = {str(s.product_id): s.product_name for s in subs.values()}
    labels_v = {str(s.vendor_id): s.vendor_name for s in subs.values()}
    labels_s = {str(s.id): s.name for s in subs.values()}
    extras_s = {str(s.id): {"product": s.product_name, "vendor": s.vendor_name, "payment_model": s.payment_model}
                for s in subs.values()}
    labels_m = {m: m for m in PAYMENT_MODELS}
    return Structure(
        start=f.start, end=f.end, currency=org.billing_currency, total=total,
        by_product=_slices(sums[0], labels_p, total),
        by_vendor=_slices(sums[1], labels_v, total),
        by_subscription=_slices(sums[2], labels_s, total, extras_s),
        by_payment_model=_slices(sums[3], labels_m, total),
    )


# --------------------------------------------------------------------------------------------
# Dynamics


@dataclass
class Series:
    key: str
    label: str
    values: list[Decimal]
    total: Decimal
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dynamics:
    start: date
    end: date
    granularity: str  # day | month
    currency: str
    buckets: list[date]  # first day of each bucket (clipped to the period)
    series: list[Series]  # per product, largest first
    totals: list[Decimal]
    total: Decimal
    previous_start: date
    previous_end: date
    previous_buckets: list[date]
    previous_totals: list[Decimal]
    previous_total: Decimal
    change: Decimal
    change_pct: Decimal | None  # None when the previous period had no spend
    partial: bool = False  # the period is running: compared with as many days of the previous one


def _buckets(start: date, end: date, granularity: str) -> list[date]:
    out = []
    if granularity == "day":
        d = start
        while d < end:
            out.append(d)
            d += timedelta(days=1)
        return out
    d = start
    while d < end:
        out.append(d)
        d = clock.next_month(d)
    return out


def percent_change(current: Decimal, previous: Decimal) -> Decimal | None:
    """The change from ``previous`` to ``current`` in percent of ``previous`` (2 decimals); None
    when ``previous`` is 0."""
    if previous == 0:
        return None
    return ((current - previous) * 100 / abs(previous)).quantize(CENT, rounding=ROUND_HALF_UP)


def dynamics(session: Session, actor: Actor, filters: Filters, granularity: str = "auto", *,
             now: datetime | None = None) -> Dynamics:
    """Spend per day (periods up to 62 days) or per month, stacked by product, compared with the
    previous period of the same length (a running period: with as many of its days, see
    ``filters.comparison_period``)."""
    access = can_read(session, actor)
    f = filters.validated()
    if granularity == "auto":
        granularity = "day" if (f.end - f.start).days <= DAILY_MAX_DAYS else "month"
    if granularity not in ("day", "month"):
        raise InvalidInput("granularity: day or month", field="granularity", key="error.analytics_filter")
    org = session.get(Organisation, access.org_id)
    subs, kept = scope(session, access, f)
    p_start, p_end, partial = comparison_period(f.start, f.end, clock.local_date(now or clock.utcnow(), org.timezone))
    rows = _ledger_spend(session, org.id, org.timezone, p_start, f.end, kept, by_day=True)

    buckets = _buckets(f.start, f.end, granularity)
    p_buckets = _buckets(p_start, p_end, granularity)
    cur_map, prev_map = _bucket_map(f.start, f.end, granularity), _bucket_map(p_start, p_end, granularity)
    per_product: dict[str, list[int]] = {}
    totals_m = [0] * len(buckets)
    p_totals_m = [0] * len(p_buckets)
    product_of = {sid: str(info.product_id) for sid, info in subs.items()}
    for sid, day, spend in rows:
        i = cur_map.get(day)
        if i is not None:
            key = product_of.get(sid, OTHER) if sid is not None else OTHER
            values = per_product.get(key)
            if values is None:
                values = per_product[key] = [0] * len(buckets)
            values[i] += spend
            totals_m[i] += spend
        elif day in prev_map:  # (not the previous period's days after the compared part)
            p_totals_m[prev_map[day]] += spend
    totals = [_money2(v) for v in totals_m]
    p_totals = [_money2(v) for v in p_totals_m]
    labels = {str(s.product_id): s.product_name for s in subs.values()}
    series = [Series(k, labels.get(k, ""), [_money2(x) for x in v], _money2(sum(v)))
              for k, v in per_product.items() if any(v)]
    series.sort(key=lambda s: (-s.total, s.label, s.key))
    total, p_total = _money2(sum(totals_m)), _money2(sum(p_totals_m))
    return Dynamics(
        start=f.start, end=f.end, granularity=granularity, currency=org.billing_currency, buckets=buckets,
        series=series, totals=totals, total=total, previous_start=p_start, previous_end=p_end,
        previous_buckets=p_buckets, previous_totals=p_totals, previous_total=p_total,
        change=total - p_total, change_pct=percent_change(total, p_total), partial=partial,
    )
