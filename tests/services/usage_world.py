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

from noventiq_panel.models import LedgerEntry, Organisation, Plan, Subscription, UsageRecord
from noventiq_panel.services import rates

from .. import factories as f

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


def expected_charges(session: Session, sub: Subscription) -> dict[datetime, Decimal]:
    """Period start → amount (negative) that rating must post, recomputed with Decimal from the records."""
    org = session.get(Organisation, sub.org_id)
    plan = session.get(Plan, sub.plan_id)
    zone = ZoneInfo(org.timezone)
    groups: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in session.exec(select(UsageRecord).where(UsageRecord.subscription_id == sub.id)).all():
        local = r.period_start.astimezone(zone)
        if plan.granularity == "day":
            start = datetime.combine(local.date(), datetime.min.time(), tzinfo=zone).astimezone(UTC)
        else:
            start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        groups[(start, local.date(), r.currency)] += r.cost
    out: dict[datetime, Decimal] = defaultdict(Decimal)
    for (start, day, currency), cost in groups.items():
        rate = rates.conversion_rate(session, currency, org.billing_currency, day)
        amount = (cost * (1 + plan.usage_markup_pct / 100) * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out[start] -= amount
    return dict(out)


def ledger_usage(session: Session, sub_id: int) -> dict[datetime, Decimal]:
    rows = session.exec(select(LedgerEntry.period_start, func.sum(LedgerEntry.amount))
                        .where(LedgerEntry.subscription_id == sub_id, LedgerEntry.kind == "usage")
                        .group_by(LedgerEntry.period_start)).all()
    return {ps: amount for ps, amount in rows}


def unrated(session: Session, sub_id: int | None = None) -> int:
    q = select(func.count()).select_from(UsageRecord).where(UsageRecord.ledger_entry_id.is_(None))
    if sub_id is not None:
        q = q.where(UsageRecord.subscription_id == sub_id)
    return session.exec(q).one()


def assert_ledger_matches_usage(session: Session, *subs: Subscription) -> None:
    """Every record rated, each period charged exactly what its records cost, nothing else."""
    session.expire_all()
    for sub in subs:
        assert unrated(session, sub.id) == 0
        assert ledger_usage(session, sub.id) == expected_charges(session, sub)
        # every record points at an entry of its own subscription whose period contains it
        bad = session.exec(
            select(func.count()).select_from(UsageRecord).join(LedgerEntry, LedgerEntry.id == UsageRecord.ledger_entry_id)
            .where(UsageRecord.subscription_id == sub.id,
                   (LedgerEntry.subscription_id != sub.id) | (UsageRecord.period_start < LedgerEntry.period_start)
                   | (UsageRecord.period_start >= LedgerEntry.period_end))).one()
        assert bad == 0


def assert_entries_match_records(session: Session) -> None:
    """Every record rated; every usage entry charges exactly its own records (rounded once)."""
    session.expire_all()
    assert unrated(session) == 0
    plans = {p.id: p for p in session.exec(select(Plan)).all()}
    subs = {s.id: s for s in session.exec(select(Subscription)).all()}
    orgs = {o.id: o for o in session.exec(select(Organisation)).all()}
    by_entry: dict[int, list[UsageRecord]] = defaultdict(list)
    for r in session.exec(select(UsageRecord)).all():
        by_entry[r.ledger_entry_id].append(r)
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all()
    assert {e.id for e in entries} == set(by_entry)
    for e in entries:
        records = by_entry[e.id]
        sub = subs[e.subscription_id]
        org = orgs[sub.org_id]
        assert {r.subscription_id for r in records} == {sub.id}
        assert all(e.period_start <= r.period_start < e.period_end for r in records)
        cost = sum(r.cost for r in records)
        day = records[0].period_start.astimezone(ZoneInfo(org.timezone)).date()
        rate = rates.conversion_rate(session, records[0].currency, org.billing_currency, day)
        markup = 1 + plans[sub.plan_id].usage_markup_pct / 100
        assert e.amount == -(cost * markup * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), e.idempotency_key
    session.commit()
