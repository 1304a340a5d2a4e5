"""Builders for the jobs' tests: organisations with pay-as-you-go subscriptions, rates, usage
records, and an independent Decimal computation of what rating must charge."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, Organisation, Plan, RatingWatermark, Subscription, UsageRecord
from noventiq_panel.services.core import rates

from tests import factories as f

UTC = timezone.utc
_seq = itertools.count(1)


def tashkent(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    """A wall-clock time in Tashkent (UTC+5, no DST) as an aware UTC datetime."""
    return datetime(y, m, d, hh, mm, tzinfo=UTC) - timedelta(hours=5)


def payg_world(session: Session, *, markup: str = "10", currency: str = "UZS", tz: str = "Asia/Tashkent"):
    """An organisation, the test catalogue (markup on both Azure plans), an owner. Returns (org, plans, owner)."""
    org = f.org(session, billing_currency=currency, timezone=tz)
    existing = session.exec(select(Plan)).all()
    plans = {p.code: p for p in existing} if existing else f.catalog(session)
    for code in ("azure-h", "azure-d"):
        plans[code].usage_markup_pct = Decimal(markup)
        session.add(plans[code])
    session.commit()
    owner = f.user(session, org, email=f"owner{next(_seq)}@example.com")
    return org, plans, owner


def payg_sub(session: Session, org: Organisation, plan: Plan, *, status: str = "active", name: str = "",
             **kw) -> Subscription:
    sub = Subscription(org_id=org.id, plan_id=plan.id, name=name or f"Azure {next(_seq)}", status=status,
                       quantity=1, **kw)
    session.add(sub)
    session.commit()
    return sub


def set_rates(session: Session, start: date, days: int, base: str = "12000.00", step: str = "1.37",
              currency: str = "USD") -> None:
    for i in range(days):
        rates.store_rate(session, currency, start + timedelta(days=i), Decimal(base) + Decimal(step) * i,
                         source="manual")
    session.commit()


def add_usage(session: Session, sub: Subscription, start: datetime, hours: int, *, services: int = 3,
              cost: str = "0.123457", currency: str = "USD", step: timedelta = timedelta(hours=1)) -> list[int]:
    """``hours`` periods of ``step`` from ``start``, ``services`` records each, varied costs."""
    rows = []
    for h in range(hours):
        ps = start + step * h
        for k in range(services):
            n = next(_seq)
            rows.append(UsageRecord(
                org_id=sub.org_id, subscription_id=sub.id, period_start=ps, period_end=ps + step,
                service=f"svc{k}", meter=f"m{k}", resource_id=f"/r/{sub.id}/{k}",
                quantity=Decimal("1"), cost=(Decimal(cost) * (k + 1) + Decimal(n % 97) / 1000000).quantize(
                    Decimal("0.000001")), currency=currency, source_key=f"t{n}-{sub.id}-{h}-{k}"))
    session.add_all(rows)
    session.commit()
    return [r.id for r in rows]


def _bucket(r: UsageRecord, plan: Plan, zone: ZoneInfo) -> datetime:
    local = r.period_start.astimezone(zone)
    if plan.granularity == "day":
        return datetime.combine(local.date(), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def charge_of(cost: Decimal, markup_pct: Decimal, rate: Decimal) -> Decimal:
    """What rating charges for ``cost`` (negative): the marked-up cost to 6 decimals, times the rate,
    to the cent, both half-up — recomputed here with Decimal."""
    source = (cost * (1 + markup_pct / 100)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    return -(source * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_charges(session: Session, sub: Subscription) -> dict[datetime, Decimal]:
    """Period start → amount (negative) that rating must post when all the records of each period
    are charged in one run, recomputed with Decimal from the records."""
    org = session.get(Organisation, sub.org_id)
    plan = session.get(Plan, sub.plan_id)
    zone = ZoneInfo(org.timezone)
    groups: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in session.exec(select(UsageRecord).where(UsageRecord.subscription_id == sub.id)).all():
        start = _bucket(r, plan, zone)
        groups[(start, start.astimezone(zone).date(), r.currency)] += r.cost
    out: dict[datetime, Decimal] = defaultdict(Decimal)
    for (start, day, currency), cost in groups.items():
        rate = rates.usage_rate(session, currency, org.billing_currency, day)
        out[start] += charge_of(cost, plan.usage_markup_pct, rate)
    return dict(out)


def ledger_usage(session: Session, sub_id: int) -> dict[datetime, Decimal]:
    rows = session.exec(select(LedgerEntry.period_start, func.sum(LedgerEntry.amount))
                        .where(LedgerEntry.subscription_id == sub_id, LedgerEntry.kind == "usage")
                        .group_by(LedgerEntry.period_start)).all()
    return {ps: amount for ps, amount in rows}


def unrated(session: Session, sub_id: int | None = None) -> int:
    """Records above their subscription's watermark: not charged yet."""
    q = (select(func.count()).select_from(UsageRecord)
         .outerjoin(RatingWatermark, RatingWatermark.subscription_id == UsageRecord.subscription_id)
         .where(UsageRecord.id > func.coalesce(RatingWatermark.last_record_id, 0)))
    if sub_id is not None:
        q = q.where(UsageRecord.subscription_id == sub_id)
    return session.exec(q).one()


def assert_ledger_matches_usage(session: Session, *subs: Subscription) -> None:
    """Every record rated, each period charged exactly what its records cost, nothing else."""
    session.expire_all()
    for sub in subs:
        assert unrated(session, sub.id) == 0
        assert ledger_usage(session, sub.id) == expected_charges(session, sub)
    assert_entries_match_records(session, subs=[s.id for s in subs])


def assert_entries_match_records(session: Session, subs: list[int] | None = None) -> None:
    """Every record at or below its watermark is counted in exactly one usage entry of its own
    subscription, period and currency (the entries' record counts and costs add up to the records'
    per period), and every entry charges what its own figures say, at the rate fixed for its day."""
    session.expire_all()
    plans = {p.id: p for p in session.exec(select(Plan)).all()}
    all_subs = {s.id: s for s in session.exec(select(Subscription)).all()}
    orgs = {o.id: o for o in session.exec(select(Organisation)).all()}
    marks = {w.subscription_id: w.last_record_id for w in session.exec(select(RatingWatermark)).all()}
    records: dict[tuple, list] = defaultdict(lambda: [0, 0])  # (sub, bucket, currency) -> [count, cost micro]
    for r in session.exec(select(UsageRecord)).all():
        if (subs is not None and r.subscription_id not in subs) or r.id > marks.get(r.subscription_id, 0):
            continue
        sub = all_subs[r.subscription_id]
        key = (sub.id, _bucket(r, plans[sub.plan_id], ZoneInfo(orgs[sub.org_id].timezone)), r.currency)
        records[key][0] += 1
        records[key][1] += int(r.cost * 10**6)
    entries: dict[tuple, list] = defaultdict(lambda: [0, 0])
    for e in session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all():
        if subs is not None and e.subscription_id not in subs:
            continue
        sub = all_subs[e.subscription_id]
        org = orgs[sub.org_id]
        key = (sub.id, e.period_start, e.source_currency)
        entries[key][0] += e.meta["records"]
        entries[key][1] += e.meta["cost_micro"]
        if e.meta.get("not_billed"):
            assert e.amount == 0, e.idempotency_key
            continue
        day = e.period_start.astimezone(ZoneInfo(org.timezone)).date()
        assert e.fx_date == day and e.fx_rate == rates.usage_rate(session, e.source_currency, org.billing_currency, day)
        cost = Decimal(e.meta["cost_micro"]).scaleb(-6)
        # a credit capped at what the subscription was charged (rating) keeps back ``uncredited``
        kept = Decimal(e.meta["uncredited"]) if e.meta.get("capped") is True else Decimal(0)
        assert e.amount == charge_of(cost, plans[sub.plan_id].usage_markup_pct, e.fx_rate) - kept, e.idempotency_key
    assert dict(entries) == dict(records)
    session.commit()
