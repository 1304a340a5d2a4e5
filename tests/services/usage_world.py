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


def _local_day(instant: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The organisation's local day holding ``instant``: its start and end, aware UTC."""
    day = instant.astimezone(zone).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _not_billed(sub: Subscription, at: datetime) -> str | None:
    """Why usage starting at ``at`` is not billed (rating's documented rule, restated): suspended
    (not for credit) from ``suspended_at`` on (always when it is unknown), else a trial before
    ``trial_ends_at``."""
    if sub.status == "suspended" and sub.suspend_reason != "credit" and (
            sub.suspended_at is None or at >= sub.suspended_at):
        return "suspended"
    if sub.is_trial and sub.trial_ends_at is not None and at < sub.trial_ends_at:
        return "trial"
    return None


_NEVER, _EVER = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def segment(r: UsageRecord, sub: Subscription, zone: ZoneInfo) -> tuple[datetime, datetime | None, datetime | None, str | None]:
    """The billing period of record ``r`` under rating's rule (issue 17): its subscription's local
    day, cut where billing starts or stops within it (a suspension, a trial's end). Returns (day
    start, part from, part until, why not billed); the part is (None, None) for the whole day.

    Recomputed from the time each reason holds, not by rating's cutting: suspended over
    [suspended_at, ∞), a trial over (-∞, trial end) less the suspension, billed in between; the
    segment is that span within the day."""
    day_start, day_end = _local_day(r.period_start, zone)
    reason = _not_billed(sub, r.period_start)
    suspended = sub.status == "suspended" and sub.suspend_reason != "credit"
    stop = (sub.suspended_at or _NEVER) if suspended else _EVER  # where "suspended" begins
    trial_end = sub.trial_ends_at if sub.is_trial and sub.trial_ends_at is not None else _NEVER
    lo, hi = {"suspended": (stop, _EVER), "trial": (_NEVER, min(trial_end, stop)),
              None: (trial_end, stop)}[reason]
    lo, hi = max(lo, day_start), min(hi, day_end)
    assert lo <= r.period_start < hi, (r.id, lo, hi)
    if (lo, hi) == (day_start, day_end):
        return day_start, None, None, reason
    return day_start, lo, hi, reason


def charge_of(cost: Decimal, markup_pct: Decimal, rate: Decimal) -> Decimal:
    """What rating charges for ``cost`` (negative): the marked-up cost to 6 decimals, times the rate,
    to the cent, both half-up — recomputed here with Decimal."""
    source = (cost * (1 + markup_pct / 100)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    return -(source * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_charges(session: Session, sub: Subscription) -> dict[datetime, Decimal]:
    """Local day start → amount (negative) that rating must post for the day when all the records
    of each of its segments are charged in one run: one charge per (segment, usage currency),
    recomputed with Decimal from the records (0 for a segment not billed)."""
    org = session.get(Organisation, sub.org_id)
    plan = session.get(Plan, sub.plan_id)
    zone = ZoneInfo(org.timezone)
    groups: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in session.exec(select(UsageRecord).where(UsageRecord.subscription_id == sub.id)).all():
        groups[(segment(r, sub, zone), r.currency)] += r.cost
    out: dict[datetime, Decimal] = defaultdict(Decimal)
    for ((start, _, _, reason), currency), cost in groups.items():
        rate = rates.usage_rate(session, currency, org.billing_currency, start.astimezone(zone).date())
        out[start] += Decimal(0) if reason else charge_of(cost, plan.usage_markup_pct, rate)
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


def _instant(raw: str | None) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(raw).astimezone(UTC)


def assert_entries_match_records(session: Session, subs: list[int] | None = None) -> None:
    """Every record at or below its watermark is counted in exactly one usage entry of its own
    subscription, local day segment (``segment``: the day, or the part of it on one side of a
    suspension or a trial's end, named by ``records_from``/``records_until``) and currency — the
    entries' record counts and costs add up to the records' per segment — and every entry is its
    day's (period, key), charges what its own figures say at the rate fixed for its day, and is 0
    when its segment is not billed."""
    session.expire_all()
    plans = {p.id: p for p in session.exec(select(Plan)).all()}
    all_subs = {s.id: s for s in session.exec(select(Subscription)).all()}
    orgs = {o.id: o for o in session.exec(select(Organisation)).all()}
    marks = {w.subscription_id: w.last_record_id for w in session.exec(select(RatingWatermark)).all()}
    # (sub, day start, part from, part until, currency, not billed) -> [count, cost micro]
    records: dict[tuple, list] = defaultdict(lambda: [0, 0])
    for r in session.exec(select(UsageRecord)).all():
        if (subs is not None and r.subscription_id not in subs) or r.id > marks.get(r.subscription_id, 0):
            continue
        sub = all_subs[r.subscription_id]
        day_start, part_from, part_until, reason = segment(r, sub, ZoneInfo(orgs[sub.org_id].timezone))
        key = (sub.id, day_start, part_from, part_until, r.currency, reason)
        records[key][0] += 1
        records[key][1] += int(r.cost * 10**6)
    entries: dict[tuple, list] = defaultdict(lambda: [0, 0])
    for e in session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all():
        if subs is not None and e.subscription_id not in subs:
            continue
        sub = all_subs[e.subscription_id]
        org = orgs[sub.org_id]
        zone = ZoneInfo(org.timezone)
        assert (e.period_start, e.period_end) == _local_day(e.period_start, zone), e.idempotency_key
        assert e.idempotency_key == f"usage:{sub.id}:{e.period_start:%Y%m%dT%H%M}:{e.meta['max_record_id']}"
        assert e.meta["max_record_id"] <= marks.get(sub.id, 0), e.idempotency_key
        assert ("records_from" in e.meta) == ("records_until" in e.meta), e.idempotency_key
        key = (sub.id, e.period_start, _instant(e.meta.get("records_from")), _instant(e.meta.get("records_until")),
               e.source_currency, e.meta.get("not_billed"))
        entries[key][0] += e.meta["records"]
        entries[key][1] += e.meta["cost_micro"]
        if e.meta.get("not_billed"):
            assert e.amount == 0, e.idempotency_key
            continue
        day = e.period_start.astimezone(zone).date()
        assert e.fx_date == day and e.fx_rate == rates.usage_rate(session, e.source_currency, org.billing_currency, day)
        cost = Decimal(e.meta["cost_micro"]).scaleb(-6)
        # a credit capped at what the subscription was charged (rating) keeps back ``uncredited``
        kept = Decimal(e.meta["uncredited"]) if e.meta.get("capped") is True else Decimal(0)
        assert e.amount == charge_of(cost, plans[sub.plan_id].usage_markup_pct, e.fx_rate) - kept, e.idempotency_key
    assert dict(entries) == dict(records)
    session.commit()
