"""Spending analytics: structure and dynamics from the ledger, IaaS daily detail from the usage roll-up.

Spend is what the ledger says the organisation paid for: entries of kinds ``charge``, ``usage`` and
``refund`` (negated, so that a charge counts as positive spend and a refund lowers it). A period is
``[start, end)`` of organisation-local dates; an entry belongs to the period when its
``occurred_at`` falls between the local midnights of ``start`` and ``end``. The figures are sums of
the ledger's own minor units, so they equal the ledger to the tiyin.

The IaaS detail (pay-as-you-go subscriptions) reads the daily roll-up ``UsageDaily``: the usage
records summed per subscription, local day, service, resource group and resource, converted to the
billing currency at the rate of the usage day (``rates.usage_rate``: the one fixed when the day was
first charged, the day's rate while it is not) with the plan's markup. ``refresh_daily_rollup`` keeps it current; the importer and the rating job call it.

Day buckets are computed in SQL: PostgreSQL converts with ``AT TIME ZONE``; SQLite, which knows no
time zones, adds the zone's UTC offset, split into stretches of constant offset (a DST change day
gets its own stretch), so the buckets are right in any zone.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, String, delete, func, literal_column, select, text, type_coerce
from sqlmodel import Session

from noventiq_panel.models import (
    Budget,
    EntryKind,
    LedgerEntry,
    Organisation,
    Plan,
    Product,
    Subscription,
    UsageDaily,
    UsageRecord,
    Vendor,
)
from noventiq_panel.db import BulkInsert
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.core.authz import Access, Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput, NotFound, RateMissing

SPEND_KINDS: tuple[str, ...] = (EntryKind.CHARGE.value, EntryKind.USAGE.value, EntryKind.REFUND.value)
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
ZERO = Decimal("0")
MAX_PERIOD_DAYS = 366 * 5 + 1
DAILY_MAX_DAYS = 62  # "auto" granularity: per day up to this length, per month above
_TZ_NAME = re.compile(r"[A-Za-z0-9_/+\-]{1,64}")
OTHER = "other"  # key of spend not tied to a subscription / of the long tail of resources

PAYMENT_MODELS = ("month", "year_upfront", "year_monthly", "payg_hour", "payg_day")
PAYMENT_MODEL_GROUPS = {"payg": ("payg_hour", "payg_day"), "license": ("month", "year_upfront", "year_monthly")}
PRESETS = ("this_month", "last_month", "quarter", "year", "last_12_months", "custom")


# --------------------------------------------------------------------------------------------
# Periods and filters


def period_presets(today: date | None = None, tz: str = "Asia/Tashkent", *, now: datetime | None = None
                   ) -> dict[str, tuple[date, date]]:
    """The named periods as ``[start, end)`` local dates around ``today`` (today in ``tz`` if None).

    ``custom`` defaults to the last 30 days including today.
    """
    if today is None:
        today = clock.local_date(now or clock.utcnow(), tz)
    first = today.replace(day=1)
    q_first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return {
        "this_month": (first, clock.next_month(first)),
        "last_month": (clock.prev_month(first), first),
        "quarter": (q_first, clock.add_months(q_first, 3)),
        "year": (date(today.year, 1, 1), date(today.year + 1, 1, 1)),
        "last_12_months": (clock.add_months(first, -11), clock.next_month(first)),
        "custom": (today - timedelta(days=29), today + timedelta(days=1)),
    }


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of the same length just before: whole months when ``[start, end)`` is whole
    months (February compares with January), else the same number of days."""
    if start.day == 1 and end.day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month
        return clock.add_months(start, -months), start
    length = end - start
    return start - length, start


@dataclass(frozen=True)
class Filters:
    """What the analytics page shows. ``service``/``resource_group`` narrow the IaaS detail only
    (the ledger knows subscriptions, not meters)."""

    start: date
    end: date
    preset: str = "custom"
    product_id: int | None = None
    vendor_id: int | None = None
    subscription_id: int | None = None
    payment_model: str | None = None
    service: str | None = None
    resource_group: str | None = None

    def validated(self) -> "Filters":
        if not isinstance(self.start, date) or not isinstance(self.end, date):
            raise InvalidInput("period: dates required", field="period", key="error.analytics_period")
        if self.end <= self.start:
            raise InvalidInput("period: the end must be after the start", field="period",
                               key="error.analytics_period")
        if (self.end - self.start).days > MAX_PERIOD_DAYS:
            raise InvalidInput("period: at most five years", field="period", key="error.analytics_period_long")
        if self.payment_model and self.payment_model not in PAYMENT_MODELS and \
                self.payment_model not in PAYMENT_MODEL_GROUPS:
            raise InvalidInput("unknown payment model", field="payment_model", key="error.analytics_filter")
        return self

    def to_query(self) -> dict[str, str]:
        """URL query parameters (only what is set): the view can be bookmarked."""
        q: dict[str, str] = {"period": self.preset}
        if self.preset == "custom":
            q["from"] = self.start.isoformat()
            q["to"] = (self.end - timedelta(days=1)).isoformat()  # inclusive in the URL
        for name in ("product_id", "vendor_id", "subscription_id"):
            value = getattr(self, name)
            if value is not None:
                q[name.removesuffix("_id")] = str(value)
        for name, key in (("payment_model", "model"), ("service", "service"), ("resource_group", "rg")):
            value = getattr(self, name)
            if value:
                q[key] = value
        return q


def _int_param(params: Mapping[str, Any], key: str) -> int | None:
    raw = params.get(key)
    if raw in (None, "", "all"):
        return None
    raw = str(raw).strip()
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidInput(f"{key}: not an id", field=key, key="error.analytics_filter")
    return int(raw)


def _date_param(params: Mapping[str, Any], key: str) -> date | None:
    raw = params.get(key)
    if not raw:
        return None
    try:
        return date.fromisoformat(str(raw).strip()[:10])
    except ValueError:
        raise InvalidInput(f"{key}: not a date", field=key, key="error.analytics_period") from None


def parse_filters(params: Mapping[str, Any], *, today: date | None = None, tz: str = "Asia/Tashkent",
                  now: datetime | None = None) -> Filters:
    """Filters from URL query parameters (``period``, ``from``, ``to`` inclusive, ``product``,
    ``vendor``, ``subscription``, ``model``, ``service``, ``rg``), validated. Unknown or empty
    values fall back to this month; a malformed one raises ``InvalidInput``."""
    presets = period_presets(today, tz, now=now)
    preset = str(params.get("period") or "this_month")
    if preset not in presets:
        preset = "this_month"
    start, end = presets[preset]
    if preset == "custom":
        start = _date_param(params, "from") or start
        to = _date_param(params, "to")
        end = to + timedelta(days=1) if to else end
    model = params.get("model") or None
    service = str(params.get("service") or "").strip()[:128] or None
    rg = str(params.get("rg") or "").strip()[:255] or None
    return Filters(start=start, end=end, preset=preset, product_id=_int_param(params, "product"),
                   vendor_id=_int_param(params, "vendor"), subscription_id=_int_param(params, "subscription"),
                   payment_model=str(model) if model else None, service=service, resource_group=rg).validated()


# --------------------------------------------------------------------------------------------
# Subscriptions and their catalogue data


def payment_model(plan: Plan) -> str:
    if plan.billing_type == "payg":
        return "payg_hour" if plan.granularity == "hour" else "payg_day"
    if plan.term == "year":
        return "year_monthly" if plan.billing_frequency == "monthly" else "year_upfront"
    return "month"


@dataclass(frozen=True)
class SubInfo:
    id: int
    name: str
    status: str
    vendor_ref: str
    plan_id: int
    plan_name: str
    product_id: int
    product_name: str
    vendor_id: int
    vendor_name: str
    payment_model: str
    currency: str  # the plan's currency (usage currency of pay-as-you-go plans)
    markup_pct: Decimal

    @property
    def is_payg(self) -> bool:
        return self.payment_model.startswith("payg")


def subscriptions_of(session: Session, org_id: int) -> dict[int, SubInfo]:
    """The organisation's subscriptions with plan, product and vendor, by id (one query)."""
    rows = session.execute(
        select(Subscription.id, Subscription.name, Subscription.status, Subscription.vendor_ref, Plan, Product.id,
               Product.name, Vendor.id, Vendor.name)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .join(Vendor, Vendor.id == Product.vendor_id)
        .where(Subscription.org_id == org_id)
    ).all()
    out: dict[int, SubInfo] = {}
    for sid, name, status, ref, plan, pid, pname, vid, vname in rows:
        out[sid] = SubInfo(sid, name or plan.name, status, ref or "", plan.id, plan.name, pid, pname, vid, vname,
                           payment_model(plan), plan.currency, plan.usage_markup_pct or ZERO)
    return out


def _matches(info: SubInfo, f: Filters) -> bool:
    if f.subscription_id is not None and info.id != f.subscription_id:
        return False
    if f.product_id is not None and info.product_id != f.product_id:
        return False
    if f.vendor_id is not None and info.vendor_id != f.vendor_id:
        return False
    if f.payment_model:
        allowed = PAYMENT_MODEL_GROUPS.get(f.payment_model, (f.payment_model,))
        if info.payment_model not in allowed:
            return False
    return True


def _narrowed(f: Filters) -> bool:
    return any(v is not None and v != "" for v in (f.subscription_id, f.product_id, f.vendor_id, f.payment_model))


@dataclass(frozen=True)
class FilterOptions:
    """What the filter selects offer: only values the organisation has."""

    products: list[tuple[int, str]]
    vendors: list[tuple[int, str]]
    subscriptions: list[tuple[int, str]]
    payment_models: list[str]
    payg_subscriptions: list[tuple[int, str]]
    services: list[str]
    resource_groups: list[str]


def filter_options(session: Session, actor: Actor) -> FilterOptions:
    access = can_read(session, actor)
    subs = subscriptions_of(session, access.org_id)
    services = session.execute(
        select(UsageDaily.service).where(UsageDaily.org_id == access.org_id).distinct()).scalars().all()
    groups = session.execute(
        select(UsageDaily.resource_group).where(UsageDaily.org_id == access.org_id).distinct()).scalars().all()
    return FilterOptions(
        products=sorted({(s.product_id, s.product_name) for s in subs.values()}, key=lambda x: x[1]),
        vendors=sorted({(s.vendor_id, s.vendor_name) for s in subs.values()}, key=lambda x: x[1]),
        subscriptions=sorted(((s.id, s.name) for s in subs.values()), key=lambda x: (x[1], x[0])),
        payment_models=[m for m in PAYMENT_MODELS if any(s.payment_model == m for s in subs.values())],
        payg_subscriptions=sorted(((s.id, s.name) for s in subs.values() if s.is_payg), key=lambda x: (x[1], x[0])),
        services=sorted(s for s in services if s),
        resource_groups=sorted(g for g in groups if g),
    )


# --------------------------------------------------------------------------------------------
# Local days in SQL


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {tz!r}", field="timezone") from None


def _offset_seconds(instant: datetime, tz: str) -> int:
    return int(instant.astimezone(_zone(tz)).utcoffset().total_seconds())


@lru_cache(maxsize=512)
def _segments(tz: str, start: date, end: date) -> tuple[tuple[datetime, datetime, int | None, date | None], ...]:
    """Stretches of ``[start, end)`` (local days) over which the UTC offset is constant.

    Each is ``(utc_from, utc_to, offset_seconds, None)``; a day on which the offset changes is its
    own stretch ``(utc_from, utc_to, None, that_day)``.
    """
    if start >= end:
        return ()
    # Fast path: the same offset at every month start and at the end (zones without DST).
    probes = [start]
    d = clock.next_month(start)
    while d < end:
        probes.append(d)
        d = clock.next_month(d)
    probes.append(end)
    offsets = {_offset_seconds(clock.local_midnight(p, tz), tz) for p in probes}
    if len(offsets) == 1:
        return ((clock.local_midnight(start, tz), clock.local_midnight(end, tz), offsets.pop(), None),)
    out: list[tuple[datetime, datetime, int | None, date | None]] = []
    run_start = start
    day = start
    mid = clock.local_midnight(day, tz)
    off = _offset_seconds(mid, tz)
    while day < end:
        nxt = day + timedelta(days=1)
        nmid = clock.local_midnight(nxt, tz)
        noff = _offset_seconds(nmid, tz)
        if noff != off:
            if run_start < day:
                out.append((clock.local_midnight(run_start, tz), mid, off, None))
            out.append((mid, nmid, None, day))
            run_start = nxt
        day, mid, off = nxt, nmid, noff
    if run_start < end:
        out.append((clock.local_midnight(run_start, tz), clock.local_midnight(end, tz), off, None))
    return tuple(out)


def _day_parts(session: Session, column, tz: str, start: date, end: date):
    """[(utc_from, utc_to, SQL expression of the local date of ``column``)] covering [start, end)."""
    # Inline literals (validated), not bind parameters: PostgreSQL must see the GROUP BY expression
    # as the very same expression as the selected one.
    _zone(tz)
    if not _TZ_NAME.fullmatch(tz):
        raise InvalidInput(f"unsupported time zone name {tz!r}", field="timezone")
    if session.get_bind().dialect.name == "postgresql":
        return [(clock.local_midnight(start, tz), clock.local_midnight(end, tz),
                 func.date(func.timezone(literal_column(f"'{tz}'"), column)))]
    parts = []
    for a, b, off, day in _segments(tz, start, end):
        if day is not None:
            expr = literal_column(f"'{day.isoformat()}'")
        else:
            expr = func.date(column, literal_column(f"'{int(off):+d} seconds'"))
        parts.append((a, b, expr))
    return parts


def _as_date(value) -> date:
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def _org(session: Session, access: Access) -> Organisation:
    org = session.get(Organisation, access.org_id)
    if org is None:  # pragma: no cover - can_read checked it
        raise NotFound("organisation not found")
    return org


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
    for a, b, day_expr in _day_parts(session, LedgerEntry.occurred_at, tz, start, end):
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


def _scope(session: Session, access: Access, f: Filters) -> tuple[dict[int, SubInfo], set[int] | None]:
    subs = subscriptions_of(session, access.org_id)
    if f.subscription_id is not None and f.subscription_id not in subs:
        raise NotFound("subscription not found")
    if not _narrowed(f):
        return subs, None
    return subs, {sid for sid, info in subs.items() if _matches(info, f)}


def _dims(info: SubInfo | None) -> tuple[str, str, str, str]:
    """Keys of (product, vendor, subscription, payment model) of a subscription (or of none)."""
    if info is None:
        return OTHER, OTHER, OTHER, OTHER
    return str(info.product_id), str(info.vendor_id), str(info.id), info.payment_model


def structure(session: Session, actor: Actor, filters: Filters) -> Structure:
    """Spend of the period by product, vendor, subscription and payment model: sums and shares."""
    access = can_read(session, actor)
    f = filters.validated()
    org = _org(session, access)
    subs, scope = _scope(session, access, f)
    rows = _ledger_spend(session, org.id, org.timezone, f.start, f.end, scope, by_day=False)
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


def _change_pct(current: Decimal, previous: Decimal) -> Decimal | None:
    if previous == 0:
        return None
    return ((current - previous) * 100 / abs(previous)).quantize(CENT, rounding=ROUND_HALF_UP)


def dynamics(session: Session, actor: Actor, filters: Filters, granularity: str = "auto") -> Dynamics:
    """Spend per day (periods up to 62 days) or per month, stacked by product, with the
    previous period of the same length for comparison."""
    access = can_read(session, actor)
    f = filters.validated()
    if granularity == "auto":
        granularity = "day" if (f.end - f.start).days <= DAILY_MAX_DAYS else "month"
    if granularity not in ("day", "month"):
        raise InvalidInput("granularity: day or month", field="granularity", key="error.analytics_filter")
    org = _org(session, access)
    subs, scope = _scope(session, access, f)
    p_start, p_end = previous_period(f.start, f.end)
    rows = _ledger_spend(session, org.id, org.timezone, p_start, f.end, scope, by_day=True)

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
        else:
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
        change=total - p_total, change_pct=_change_pct(total, p_total),
    )


# --------------------------------------------------------------------------------------------
# IaaS detail (reads the roll-up)


@dataclass
class Mover:
    dimension: str  # service | resource
    key: str
    label: str
    current: Decimal
    previous: Decimal
    change: Decimal
    change_pct: Decimal | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CumulativePoint:
    day: date
    amount: Decimal
    cumulative: Decimal  # since the start of the period
    month_to_date: Decimal  # since the start of the day's month (what a monthly budget measures)
    budget: Decimal | None  # the month's budget (all budgets in scope), None without a budget


@dataclass
class IaasDetail:
    start: date
    end: date
    currency: str
    subscription_id: int | None
    subscriptions: list[tuple[int, str]]  # the pay-as-you-go subscriptions in scope
    days: list[date]
    total: Decimal
    previous_start: date
    previous_end: date
    previous_total: Decimal
    daily: list[Decimal]
    by_service: list[Series]
    by_resource_group: list[Series]
    by_resource: list[Series]  # the largest ``top_resources``, the rest as one "other" series
    movers: list[Mover]
    cumulative: list[CumulativePoint]
    budget: Decimal | None
    unconverted: dict[str, Decimal]  # usage without a known rate yet, by usage currency


def _round(v: Decimal) -> Decimal:
    return v.quantize(CENT, rounding=ROUND_HALF_UP)


def _cents(micro: int) -> Decimal:
    """Integer micro-units -> Decimal rounded half-up (away from zero) to 2 decimals."""
    micro = int(micro)
    return Decimal((micro + 5000) // 10000 if micro >= 0 else -((5000 - micro) // 10000)).scaleb(-2)


def _cents_list(values: list[int]) -> list[Decimal]:
    D = Decimal
    return [D((v + 5000) // 10000 if v >= 0 else -((5000 - v) // 10000)).scaleb(-2) for v in values]


def _series_from(per_key: dict[str, list[int]], labels: dict[str, str],
                 extras: dict[str, dict[str, Any]] | None = None, top: int | None = None) -> list[Series]:
    """Series from integer micro-unit values, largest total first; past ``top`` one "other" series."""
    items = [(k, v, sum(v)) for k, v in per_key.items()]
    items = [it for it in items if it[2] != 0 or any(it[1])]
    items.sort(key=lambda it: (-it[2], labels.get(it[0], it[0]), it[0]))
    out: list[Series] = []
    rest: list[int] | None = None
    for n, (k, values, total) in enumerate(items):
        if top is not None and n >= top:
            rest = values[:] if rest is None else [a + b for a, b in zip(rest, values)]
            continue
        out.append(Series(k, labels.get(k, k), _cents_list(values), _cents(total),
                          (extras or {}).get(k, {})))
    if rest is not None:
        out.append(Series(OTHER, "", _cents_list(rest), _cents(sum(rest)), {"count": len(items) - top}))
    return out


def _movers(dimension: str, cur: dict[str, int], prev: dict[str, int], labels: dict[str, str],
            extras: dict[str, dict[str, Any]], top: int) -> list[Mover]:
    out = []
    for key in set(cur) | set(prev):
        c, p = cur.get(key, 0), prev.get(key, 0)
        if c == p:
            continue
        cd, pd = _cents(c), _cents(p)
        out.append(Mover(dimension, key, labels.get(key, key), cd, pd, _cents(c - p),
                         _change_pct(Decimal(c), Decimal(p)), extras.get(key, {})))
    out.sort(key=lambda m: (-abs(m.change), m.label, m.key))
    return out[:top]


def budget_for(session: Session, org_id: int, subscription_ids: Iterable[int], currency: str) -> Decimal | None:
    """The monthly budget of the subscriptions (sum of their budgets in ``currency``), None if none."""
    ids = list(subscription_ids)
    if not ids:
        return None
    amounts = session.execute(
        select(Budget.amount).where(Budget.org_id == org_id, Budget.subscription_id.in_(ids),
                                    Budget.currency == currency)
    ).scalars().all()
    return sum(amounts, ZERO) if amounts else None


def _payg_subscriptions(session: Session, org_id: int, currency: str) -> dict[int, tuple[str, Decimal | None]]:
    """The organisation's pay-as-you-go subscriptions: id -> (name, monthly budget in ``currency``
    or None), in one query."""
    rows = session.execute(
        select(Subscription.id, Subscription.name, Plan.name, Budget.amount, Budget.currency)
        .join(Plan, Plan.id == Subscription.plan_id)
        .outerjoin(Budget, Budget.subscription_id == Subscription.id)
        .where(Subscription.org_id == org_id, Plan.billing_type == "payg")
    ).all()
    return {sid: (name or plan_name, amount if amount is not None and cur == currency else None)
            for sid, name, plan_name, amount, cur in rows}


def iaas_detail(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None = None, *,
                service: str | None = None, resource_group: str | None = None, top: int = 10,
                top_resources: int = 15) -> IaasDetail:
    """Daily cost of the pay-as-you-go subscriptions (one, or all of the organisation) for
    ``[start, end)``: by service, resource group and resource; top movers against the previous
    period; the daily cumulative with the budget line when a budget exists."""
    access = can_read(session, actor)
    f = Filters(start=start, end=end).validated()
    org = _org(session, access)
    subs = _payg_subscriptions(session, org.id, org.billing_currency)
    if subscription_id is not None:
        if subscription_id not in subs:
            raise NotFound("subscription not found")
        scope = [subscription_id]
    else:
        scope = sorted(subs)
    p_start, p_end = previous_period(f.start, f.end)
    n = (f.end - f.start).days
    days = [f.start + timedelta(days=i) for i in range(n)]
    # Money is read as the stored integers (micro-units) and summed exactly as ints: no Decimal
    # per row. Days are read raw too (text on SQLite, date on PostgreSQL) and mapped to an index.
    index: dict[Any, int] = {}
    for i, d in enumerate(days):
        index[d] = index[d.isoformat()] = i
    UD = UsageDaily
    co = type_coerce(UD.cost_org, BigInteger)
    where = [UD.org_id == org.id]
    if subscription_id is not None:
        where.append(UD.subscription_id == subscription_id)
    if service:
        where.append(UD.service == service)
    if resource_group:
        where.append(UD.resource_group == resource_group)
    conn = session.connection()
    rows = conn.execute(
        select(type_coerce(UD.day, String), UD.subscription_id, UD.service, UD.resource_group, UD.resource_id,
               UD.resource_name, co, type_coerce(UD.cost, BigInteger), UD.currency)
        .where(*where, UD.day >= f.start, UD.day < f.end)
    ).all() if scope else []
    prev_rows = conn.execute(
        select(UD.service, UD.resource_group, UD.resource_id, func.max(UD.resource_name), func.sum(co))
        .where(*where, UD.day >= p_start, UD.day < p_end, UD.cost_org.is_not(None))
        .group_by(UD.service, UD.resource_group, UD.resource_id)
    ).all() if scope else []

    daily = [0] * n
    by_service: dict[str, list[int]] = {}
    by_group: dict[str, list[int]] = {}
    by_res: dict[str, list[int]] = {}
    res_extra: dict[str, dict[str, Any]] = {}
    unconverted: dict[str, int] = defaultdict(int)
    for day, sid, svc, rg, rid, rname, cost_org, cost, currency in rows:
        if cost_org is None:
            unconverted[currency] += int(cost)
            continue
        i = index[day]
        rkey = rid or f"{rg}/{svc}"
        daily[i] += cost_org
        values = by_service.get(svc)
        if values is None:
            values = by_service[svc] = [0] * n
        values[i] += cost_org
        values = by_group.get(rg)
        if values is None:
            values = by_group[rg] = [0] * n
        values[i] += cost_org
        values = by_res.get(rkey)
        if values is None:
            values = by_res[rkey] = [0] * n
            res_extra[rkey] = {"resource_group": rg, "service": svc, "subscription_id": sid,
                               "name": rname or (rid.rsplit("/", 1)[-1] if rid else "")}
        values[i] += cost_org
    prev_service: dict[str, int] = defaultdict(int)
    prev_res: dict[str, int] = defaultdict(int)
    p_total = 0
    prev_labels: dict[str, str] = {}
    for svc, rg, rid, rname, amount in prev_rows:
        amount = int(amount or 0)
        rkey = rid or f"{rg}/{svc}"
        prev_service[svc] += amount
        prev_res[rkey] += amount
        p_total += amount
        prev_labels[rkey] = rname or (rid.rsplit("/", 1)[-1] if rid else rkey)
    cur_service = {k: sum(v) for k, v in by_service.items()}
    cur_res = {k: sum(v) for k, v in by_res.items()}
    res_labels = {**prev_labels, **{k: (e["name"] or k) for k, e in res_extra.items()}}
    movers = _movers("service", cur_service, prev_service, {}, {}, top) + \
        _movers("resource", cur_res, prev_res, res_labels, res_extra, top)
    movers.sort(key=lambda m: (-abs(m.change), m.dimension, m.label))

    budgets = [subs[sid][1] for sid in scope if subs[sid][1] is not None]
    budget = sum(budgets, ZERO) if budgets else None
    cumulative: list[CumulativePoint] = []
    running = mtd = 0
    month = None
    for d, amount in zip(days, daily):
        if d.month != month:
            month, mtd = d.month, 0
        running += amount
        mtd += amount
        cumulative.append(CumulativePoint(d, _cents(amount), _cents(running), _cents(mtd), budget))
    total = sum(daily)
    return IaasDetail(
        start=f.start, end=f.end, currency=org.billing_currency, subscription_id=subscription_id,
        subscriptions=[(sid, subs[sid][0]) for sid in scope], days=days, total=_cents(total),
        previous_start=p_start, previous_end=p_end, previous_total=_cents(p_total),
        daily=_cents_list(daily),
        by_service=_series_from(by_service, {}),
        by_resource_group=_series_from(by_group, {}),
        by_resource=_series_from(by_res, res_labels, res_extra, top=top_resources),
        movers=movers, cumulative=cumulative, budget=budget,
        unconverted={k: Decimal(v).scaleb(-6).quantize(MICRO) for k, v in unconverted.items() if v},
    )


@dataclass
class DailyRow:
    day: date
    subscription_id: int
    subscription: str
    service: str
    resource_group: str
    resource_id: str
    resource_name: str
    cost: Decimal  # usage currency, with markup
    currency: str
    cost_org: Decimal | None


def iaas_rows(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None = None
              ) -> tuple[str, list[DailyRow]]:
    """(billing currency, the roll-up rows of the period) for reports, ordered by day."""
    access = can_read(session, actor)
    f = Filters(start=start, end=end).validated()
    org = _org(session, access)
    subs = {sid: s for sid, s in subscriptions_of(session, access.org_id).items() if s.is_payg}
    if subscription_id is not None and subscription_id not in subs:
        raise NotFound("subscription not found")
    q = select(UsageDaily).where(UsageDaily.org_id == org.id, UsageDaily.day >= f.start, UsageDaily.day < f.end)
    if subscription_id is not None:
        q = q.where(UsageDaily.subscription_id == subscription_id)
    q = q.order_by(UsageDaily.day, UsageDaily.subscription_id, UsageDaily.service, UsageDaily.resource_group,
                   UsageDaily.resource_id)
    out = []
    for (r,) in session.execute(q).all():
        info = subs.get(r.subscription_id)
        out.append(DailyRow(_as_date(r.day), r.subscription_id, info.name if info else str(r.subscription_id),
                            r.service, r.resource_group, r.resource_id, r.resource_name, r.cost, r.currency,
                            r.cost_org))
    return org.billing_currency, out


# --------------------------------------------------------------------------------------------
# The roll-up


def _lock_rollup(session: Session) -> None:
    """Serialise roll-up refreshes on PostgreSQL (SQLite transactions already hold the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(770077)"))


def refresh_daily_rollup(session: Session, subscription_ids: Iterable[int], days: Iterable[date]) -> int:
    """Rebuild the ``UsageDaily`` rows of every subscription in ``subscription_ids`` for every
    organisation-local day in ``days`` from the usage records. Flushes only (the caller commits,
    so the roll-up changes with the records or the rating that changed them).

    Call it after importing usage and after rating (the rate used becomes known). Returns the
    number of roll-up rows written.
    """
    return refresh_rollup_pairs(session, {(sid, d) for sid in set(subscription_ids) for d in set(days)})


def refresh_rollup_pairs(session: Session, pairs: Iterable[tuple[int, date]]) -> int:
    """Like ``refresh_daily_rollup`` for an arbitrary set of (subscription_id, local day) pairs."""
    by_sub: dict[int, set[date]] = defaultdict(set)
    for sid, d in pairs:
        by_sub[int(sid)].add(d)
    if not by_sub:
        return 0
    _lock_rollup(session)
    info = session.execute(
        select(Subscription.id, Subscription.org_id, Organisation.timezone, Organisation.billing_currency,
               type_coerce(Plan.usage_markup_pct, BigInteger))
        .join(Organisation, Organisation.id == Subscription.org_id)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.id.in_(sorted(by_sub)))
    ).all()
    written = 0
    # Group subscriptions sharing an organisation and a set of days: one query for all of them.
    groups: dict[tuple[int, str, str, frozenset], list[tuple[int, int]]] = defaultdict(list)
    for sid, org_id, tz, cur, markup in info:
        groups[(org_id, tz, cur, frozenset(by_sub[sid]))].append((sid, int(markup or 0)))
    rate_cache: dict[tuple[str, str, date], tuple[int, int] | None] = {}
    writer = BulkInsert(session, UsageDaily.__table__, _ROLLUP_COLUMNS, stored=("cost", "cost_org"))
    for (org_id, tz, org_cur, dayset), members in groups.items():
        written += _refresh_group(session, writer, org_id, tz, org_cur, sorted(dayset), dict(members), rate_cache)
    session.flush()
    return written


def _day_runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as runs of consecutive days [(first, end_exclusive)]."""
    runs: list[tuple[date, date]] = []
    for d in days:
        if runs and runs[-1][1] == d:
            runs[-1] = (runs[-1][0], d + timedelta(days=1))
        else:
            runs.append((d, d + timedelta(days=1)))
    return runs


def _day_rate(session: Session, cache: dict, currency: str, org_cur: str, day: date) -> tuple[int, int] | None:
    """The rate usage of the day is charged at (``rates.usage_rate``) as (numerator, denominator);
    None without a rate."""
    key = (currency, org_cur, day)
    if key not in cache:
        try:
            cache[key] = (int(rates.usage_rate(session, currency, org_cur, day) * 10**6), 10**6)
        except RateMissing:
            cache[key] = None
    return cache[key]


def _half_up(n: int, d: int) -> int:
    """n / d rounded half away from zero (d > 0), in integers: Decimal's ROUND_HALF_UP."""
    q, r = divmod(abs(n), d)
    if 2 * r >= d:
        q += 1
    return q if n >= 0 else -q


_PCT = 100 * 10**6  # usage_markup_pct is stored in micro-percent: factor = (_PCT + markup) / _PCT
_ROLLUP_COLUMNS = ("org_id", "subscription_id", "day", "service", "resource_group", "resource_id", "resource_name",
                   "cost", "currency", "cost_org", "org_currency", "records", "refreshed_at")


def _refresh_group(session: Session, writer: BulkInsert, org_id: int, tz: str, org_cur: str, days: list[date],
                   markups: dict[int, int], rate_cache: dict) -> int:
    """Rebuild the rows of ``markups``' subscriptions (one organisation) for ``days``.

    Amounts are computed exactly in integers: the stored micro-units of the records' cost times
    the markup factor and the rate of the usage day (``rates.usage_rate``), rounded half-up once
    per row to the 6 decimals the roll-up keeps.
    """
    sub_ids = sorted(markups)
    day_of: dict[Any, date] = {}
    for d in days:
        day_of[d] = day_of[d.isoformat()] = d
    for chunk_start in range(0, len(days), 500):
        chunk = days[chunk_start:chunk_start + 500]
        session.execute(delete(UsageDaily).where(UsageDaily.subscription_id.in_(sub_ids),
                                                 UsageDaily.day.in_(chunk)))
    acc: dict[tuple, list] = {}
    UR = UsageRecord
    conn = session.connection()
    for run_start, run_end in _day_runs(days):
        for a, b, day_expr in _day_parts(session, UR.period_start, tz, run_start, run_end):
            d = day_expr.label("d")
            rows = conn.execute(
                select(UR.subscription_id, d, UR.service, UR.resource_group, UR.resource_id,
                       func.max(UR.resource_name), UR.currency,
                       func.sum(type_coerce(UR.cost, BigInteger)), func.count())
                .where(UR.subscription_id.in_(sub_ids), UR.period_start >= a, UR.period_start < b)
                .group_by(UR.subscription_id, d, UR.service, UR.resource_group, UR.resource_id, UR.currency)
            ).all()
            for sid, raw_day, svc, rg, rid, rname, currency, cost, count in rows:
                day = day_of.get(raw_day)
                if day is None:
                    continue
                priced = int(cost or 0) * (_PCT + markups[sid])  # micro-units x _PCT
                rate = _day_rate(session, rate_cache, currency, org_cur, day)
                num, den = rate if rate is not None else (None, None)
                cost_micro = _half_up(priced, _PCT)
                cost_org = _half_up(priced * num, _PCT * den) if num is not None else None
                key = (sid, day, svc, rg, rid, currency)
                slot = acc.get(key)
                if slot is None:
                    acc[key] = [rname or "", cost_micro, cost_org, count]
                else:
                    slot[1] += cost_micro
                    slot[2] = None if slot[2] is None or cost_org is None else slot[2] + cost_org
                    slot[3] += count
                    if rname and not slot[0]:
                        slot[0] = rname
    if not acc:
        return 0
    now = utcnow()
    writer.insert([
        (org_id, sid, day, svc, rg, rid, rname, cost, currency, cost_org, org_cur, count, now)
        for (sid, day, svc, rg, rid, currency), (rname, cost, cost_org, count) in acc.items()
    ])
    return len(acc)


def rebuild_rollup(session: Session, org_id: int | None = None, *, start: date | None = None,
                   end: date | None = None) -> int:
    """Rebuild the roll-up of one organisation (or all) over the days its usage covers (or
    ``[start, end)``), one organisation per transaction. Commits. For the CLI and repairs."""
    org_ids = [org_id] if org_id is not None else [
        r[0] for r in session.execute(select(UsageRecord.org_id).distinct()).all()]
    written = 0
    for oid in sorted(org_ids):
        org = session.get(Organisation, oid)
        if org is None:
            continue
        sub_ids = [r[0] for r in session.execute(
            select(Subscription.id).where(Subscription.org_id == oid)).all()]
        if not sub_ids:
            continue
        lo, hi = session.execute(
            select(func.min(UsageRecord.period_start), func.max(UsageRecord.period_start))
            .where(UsageRecord.org_id == oid)).one()
        first = start or (clock.local_date(lo, org.timezone) if lo else None)
        last = end or (clock.local_date(hi, org.timezone) + timedelta(days=1) if hi else None)
        if first is None or last is None or first >= last:
            continue
        if start is None and end is None:
            session.execute(delete(UsageDaily).where(UsageDaily.org_id == oid))
        days = [first + timedelta(days=i) for i in range((last - first).days)]
        written += refresh_daily_rollup(session, sub_ids, days)
        session.commit()
    return written


__all__ = [
    "Filters", "FilterOptions", "Structure", "Slice", "Dynamics", "Series", "IaasDetail", "Mover",
    "CumulativePoint", "DailyRow", "SPEND_KINDS", "PAYMENT_MODELS", "PRESETS", "period_presets",
    "previous_period", "parse_filters", "payment_model", "subscriptions_of", "filter_options", "structure",
    "dynamics", "iaas_detail", "iaas_rows", "budget_for", "refresh_daily_rollup", "refresh_rollup_pairs",
    "rebuild_rollup",
]
