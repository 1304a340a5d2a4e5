"""The IaaS detail: the daily cost of the pay-as-you-go subscriptions, read from the roll-up.

The roll-up ``UsageDaily`` (kept by ``reporting.rollup``) holds the usage records summed per
subscription, local day, service, resource group and resource, converted to the billing currency
at the rate of the usage day with the plan's markup. The detail shows it by service, resource group
and resource, the top movers against the previous period and the month-to-date cumulative against
the budget. Credits (``rollup.is_credit``: the vendor's credits, refunds, negative adjustments) are
one series of their own (key ``CREDITS``) in every breakdown, apart from the services they offset,
and ``credits`` totals what the ledger credited of them (a credit above what its subscription was
charged is not given back: ``rating.uncredited``); the daily figures, the total and the cumulative
are net, as charged; ``iaas_rows`` gives the rows themselves to the reports. A subscription asked for must be
one of the caller's pay-as-you-go subscriptions (NotFound otherwise).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import BigInteger, String, func, select, type_coerce
from sqlmodel import Session

from noventiq_panel.models import Budget, Organisation, UsageDaily
from noventiq_panel.services.core import authz, clock
from noventiq_panel.services.core.authz import Access, Actor, can_read
from noventiq_panel.services.catalog.subscription_info import SubInfo, subscriptions_of
from noventiq_panel.services.reporting.filters import OTHER, Filters, comparison_period
from noventiq_panel.services.core.localdays import as_date
from noventiq_panel.services.reporting.spend import Series, percent_change
from noventiq_panel.services.usage import rating, rollup

CREDITS = "~credits"  # key of the credits' series and mover
MICRO = Decimal("0.000001")
ZERO = Decimal("0")


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
    total: Decimal  # net: consumption less credits
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
    previous_partial: bool = False  # the period is running: compared with as many days before it
    credits: Decimal = ZERO  # the credits in ``total`` (negative, or 0)


def _cents(micro: int) -> Decimal:
    """Integer micro-units -> Decimal rounded half-up (away from zero) to 2 decimals."""
    micro = int(micro)
    return Decimal((micro + 5000) // 10000 if micro >= 0 else -((5000 - micro) // 10000)).scaleb(-2)


def _cents_list(values: list[int]) -> list[Decimal]:
    D = Decimal
    return [D((v + 5000) // 10000 if v >= 0 else -((5000 - v) // 10000)).scaleb(-2) for v in values]


def _series_from(per_key: dict[str, list[int]], labels: dict[str, str],
                 extras: dict[str, dict[str, Any]] | None = None, top: int | None = None) -> list[Series]:
    """Series from integer micro-unit values, largest total first; past ``top`` one "other" series;
    the credits' series last, never folded into "other"."""
    credits = per_key.get(CREDITS)
    items = [(k, v, sum(v)) for k, v in per_key.items() if k != CREDITS]
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
    if credits is not None and (sum(credits) != 0 or any(credits)):
        out.append(Series(CREDITS, labels.get(CREDITS, ""), _cents_list(credits), _cents(sum(credits)), {}))
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
                         percent_change(Decimal(c), Decimal(p)), extras.get(key, {})))
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


def payg_scope(session: Session, access: Access, subscription_id: int | None
               ) -> tuple[dict[int, SubInfo], list[int]]:
    """(the organisation's pay-as-you-go subscriptions by id, the ids the detail covers): the one
    asked for, which must be one of them (NotFound otherwise), or all of them."""
    subs = {sid: s for sid, s in subscriptions_of(session, access.org_id).items() if s.is_payg}
    if subscription_id is None:
        return subs, sorted(subs)
    return subs, [authz.own(subs.get(subscription_id), access, "subscription").id]


def iaas_detail(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None = None, *,
                service: str | None = None, resource_group: str | None = None, top: int = 10,
                top_resources: int = 15, now: datetime | None = None) -> IaasDetail:
    """Daily cost of the pay-as-you-go subscriptions (one, or all of the organisation) for
    ``[start, end)``: by service, resource group and resource; top movers against the previous
    period; the daily cumulative with the budget line when a budget exists."""
    access = can_read(session, actor)
    f = Filters(start=start, end=end).validated()
    org = session.get(Organisation, access.org_id)
    subs, scope = payg_scope(session, access, subscription_id)
    p_start, p_end, partial = comparison_period(f.start, f.end,
                                                clock.local_date(now or clock.utcnow(), org.timezone))
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
    credit = rollup.is_credit(UD)
    rows = conn.execute(
        select(type_coerce(UD.day, String), UD.subscription_id, UD.service, UD.resource_group, UD.resource_id,
               UD.resource_name, co, type_coerce(UD.cost, BigInteger), UD.currency, credit)
        .where(*where, UD.day >= f.start, UD.day < f.end)
    ).all() if scope else []
    prev_rows = conn.execute(
        select(UD.service, UD.resource_group, UD.resource_id, func.max(UD.resource_name), func.sum(co), credit)
        .where(*where, UD.day >= p_start, UD.day < p_end, UD.cost_org.is_not(None))
        .group_by(UD.service, UD.resource_group, UD.resource_id, credit)
    ).all() if scope else []

    daily = [0] * n
    by_service: dict[str, list[int]] = {}
    by_group: dict[str, list[int]] = {}
    by_res: dict[str, list[int]] = {}
    res_extra: dict[str, dict[str, Any]] = {}
    unconverted: dict[str, int] = defaultdict(int)
    credits = 0
    for day, sid, svc, rg, rid, rname, cost_org, cost, currency, is_credit in rows:
        if cost_org is None:
            unconverted[currency] += int(cost)
            continue
        i = index[day]
        daily[i] += cost_org
        if is_credit:
            credits += cost_org
            svc = rg = CREDITS
            rkey = CREDITS
        else:
            rkey = rid or f"{rg}/{svc}"
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
            res_extra[rkey] = {} if is_credit else {
                "resource_group": rg, "service": svc, "subscription_id": sid,
                "name": rname or (rid.rsplit("/", 1)[-1] if rid else "")}
        values[i] += cost_org
    prev_service: dict[str, int] = defaultdict(int)
    prev_res: dict[str, int] = defaultdict(int)
    p_total = 0
    if scope and not service and not resource_group:
        # a credit above what its subscription was charged is not given back (rating's cap): show
        # what the ledger credited
        tz = org.timezone
        for sid, ps, _pe, _at, amount in rating.uncredited(
                session, org.id, clock.local_midnight(f.start, tz), clock.local_midnight(f.end, tz), scope):
            i, micro = index[clock.local_date(ps, tz)], int(amount.scaleb(6))
            daily[i] += micro
            credits += micro
            for per_key in (by_service, by_group, by_res):
                per_key.setdefault(CREDITS, [0] * n)[i] += micro
        for sid, ps, _pe, _at, amount in rating.uncredited(
                session, org.id, clock.local_midnight(p_start, tz), clock.local_midnight(p_end, tz), scope):
            p_total += int(amount.scaleb(6))
            prev_service[CREDITS] += int(amount.scaleb(6))
    prev_labels: dict[str, str] = {}
    for svc, rg, rid, rname, amount, is_credit in prev_rows:
        amount = int(amount or 0)
        if is_credit:
            svc = rkey = CREDITS
        else:
            rkey = rid or f"{rg}/{svc}"
        prev_service[svc] += amount
        prev_res[rkey] += amount
        p_total += amount
        prev_labels[rkey] = rname or (rid.rsplit("/", 1)[-1] if rid else rkey)
    cur_service = {k: sum(v) for k, v in by_service.items()}
    cur_res = {k: sum(v) for k, v in by_res.items() if k != CREDITS}  # credits move once, as a service
    prev_res.pop(CREDITS, None)
    res_labels = {**prev_labels, **{k: (e.get("name") or k) for k, e in res_extra.items()}}
    res_labels[CREDITS] = ""  # the web layer names it
    movers = _movers("service", cur_service, prev_service, {}, {}, top) + \
        _movers("resource", cur_res, prev_res, res_labels, res_extra, top)
    movers.sort(key=lambda m: (-abs(m.change), m.dimension, m.label))

    budget = budget_for(session, org.id, scope, org.billing_currency)
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
        subscriptions=[(sid, subs[sid].name) for sid in scope], days=days, total=_cents(total),
        previous_start=p_start, previous_end=p_end, previous_total=_cents(p_total), previous_partial=partial,
        daily=_cents_list(daily),
        by_service=_series_from(by_service, {}),
        by_resource_group=_series_from(by_group, {}),
        by_resource=_series_from(by_res, res_labels, res_extra, top=top_resources),
        movers=movers, cumulative=cumulative, budget=budget,
        unconverted={k: Decimal(v).scaleb(-6).quantize(MICRO) for k, v in unconverted.items() if v},
        credits=_cents(credits),
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
    charge_category: str = "Usage"
    is_credit: bool = False  # rollup.is_credit


def iaas_rows(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None = None
              ) -> tuple[str, list[DailyRow]]:
    """(billing currency, the roll-up rows of the period) for reports, ordered by day."""
    access = can_read(session, actor)
    f = Filters(start=start, end=end).validated()
    org = session.get(Organisation, access.org_id)
    subs, _scope = payg_scope(session, access, subscription_id)
    q = select(UsageDaily, rollup.is_credit(UsageDaily)).where(
        UsageDaily.org_id == org.id, UsageDaily.day >= f.start, UsageDaily.day < f.end)
    if subscription_id is not None:
        q = q.where(UsageDaily.subscription_id == subscription_id)
    q = q.order_by(UsageDaily.day, UsageDaily.subscription_id, UsageDaily.service, UsageDaily.resource_group,
                   UsageDaily.resource_id, UsageDaily.charge_category)
    out = []
    for r, credit in session.execute(q).all():
        info = subs.get(r.subscription_id)
        out.append(DailyRow(as_date(r.day), r.subscription_id, info.name if info else str(r.subscription_id),
                            r.service, r.resource_group, r.resource_id, r.resource_name, r.cost, r.currency,
                            r.cost_org, r.charge_category, bool(credit)))
    return org.billing_currency, out
