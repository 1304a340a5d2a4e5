"""The daily usage roll-up ``UsageDaily``: its upkeep.

A roll-up row is the usage records of one subscription, organisation-local day, service, resource
group, resource, usage currency and charge category, summed; with the plan's markup; and converted to the billing
currency at the rate of the usage day (``rates.usage_rate``: the one fixed when the day was first
charged, the day's rate while it is not; no rate yet: ``cost_org`` is None). Amounts are exact
integer arithmetic on the stored micro-units, rounded half-up once per row.

``refresh_daily_rollup``/``refresh_rollup_pairs`` rebuild given (subscription, day) pairs and only
flush: the usage importer and the rating call them in their own transaction, so the roll-up
changes with the records or the rates that changed it. ``rebuild_rollup`` repairs whole
organisations (CLI).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any, Iterable

from sqlalchemy import BigInteger, delete, func, or_, select, text, type_coerce
from sqlmodel import Session

from noventiq_panel.db import BulkInsert
from noventiq_panel.models import Organisation, Plan, Subscription, UsageDaily, UsageRecord
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.core.errors import RateMissing
from noventiq_panel.services.core.localdays import day_parts


CREDIT_CATEGORIES = ("Credit", "Refund")  # FOCUS ChargeCategory Credit, Azure ChargeType Refund


def is_credit(table: Any = UsageDaily) -> Any:
    """The SQL condition of a roll-up row (or usage record) that is a credit: the export calls it
    one (FOCUS ``Credit``, Azure ``Refund``), or it gives money back (a negative adjustment or
    purchase). The analytics show such rows as credits, apart from the services they offset, and
    cost anomalies look at consumption only."""
    return or_(table.charge_category.in_(CREDIT_CATEGORIES), type_coerce(table.cost, BigInteger) < 0)


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
                   "cost", "currency", "charge_category", "cost_org", "org_currency", "records", "refreshed_at")


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
        for a, b, day_expr in day_parts(session, UR.period_start, tz, run_start, run_end):
            d = day_expr.label("d")
            rows = conn.execute(
                select(UR.subscription_id, d, UR.service, UR.resource_group, UR.resource_id,
                       func.max(UR.resource_name), UR.currency, UR.charge_category,
                       func.sum(type_coerce(UR.cost, BigInteger)), func.count())
                .where(UR.subscription_id.in_(sub_ids), UR.period_start >= a, UR.period_start < b)
                .group_by(UR.subscription_id, d, UR.service, UR.resource_group, UR.resource_id, UR.currency,
                          UR.charge_category)
            ).all()
            for sid, raw_day, svc, rg, rid, rname, currency, category, cost, count in rows:
                day = day_of.get(raw_day)
                if day is None:
                    continue
                priced = int(cost or 0) * (_PCT + markups[sid])  # micro-units x _PCT
                rate = _day_rate(session, rate_cache, currency, org_cur, day)
                num, den = rate if rate is not None else (None, None)
                cost_micro = _half_up(priced, _PCT)
                cost_org = _half_up(priced * num, _PCT * den) if num is not None else None
                key = (sid, day, svc, rg, rid, currency, category)
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
        (org_id, sid, day, svc, rg, rid, rname, cost, currency, category, cost_org, org_cur, count, now)
        for (sid, day, svc, rg, rid, currency, category), (rname, cost, cost_org, count) in acc.items()
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
