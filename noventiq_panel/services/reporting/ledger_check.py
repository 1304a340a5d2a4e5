"""The operator's reconciliation (``noventiq-panel ledger check``): does the ledger agree with itself,
with the seats the customers held, and with the usage it charged? Read only; it lists differences.

Per organisation (:func:`check`), four checks:

1. **Entries** (``entries``). The balance recomputed from the entries by kind (top-ups, charges,
   refunds, usage, adjustments) equals ``ledger.balance`` — an entry of any other kind makes them
   differ (``balance``). Every entry is in the organisation's billing currency (``currency``).
   Charges and usage are ≤ 0 (usage above 0 only where the vendor's credits outweighed the usage
   of its period), refunds and top-ups ≥ 0 (``sign``). An entry that shows a
   ``source_amount`` and an ``fx_rate`` can be recomputed from them:
   ``|amount| == round_money(source_amount × fx_rate)`` (half-up to the currency's minor unit),
   unless its meta says ``"capped": true`` (a refund, or a usage credit, capped to what was
   charged) (``fx``); both sides are compared without sign (a usage entry that nets credits has a
   negative ``source_amount`` and an amount above 0).
2. **Refunds** (``refund``). Per subscription and billing period (``period_end``), the refunds do
   not exceed the charges: ``−Σ charges ≥ Σ refunds`` in the organisation's currency.
3. **Seat-days** (``seat_days``). For each licence subscription, the seat-days it held active
   (from its ``SeatSpan`` rows; trial, suspended, pending and ended spans aside) are worth at most
   what it paid net: ``Σ value ≤ Σ −charges − Σ refunds``, both in the plan's currency (an entry's
   ``source_amount`` in its ``source_currency``; per currency when plans of several currencies
   were held), with a tolerance of one minor unit per entry — and, so that a term paid ahead does
   not hide a deficit of an earlier one, the same per billing period the services know (the
   current term's, and those stored on the subscription's entries: ``period_end``), against the
   entries of that period. See :func:`seat_value` for how a day is valued. Spans exist from migration 0005 on (it opened one per running subscription): days
   before it are not checked, while the charges before it count — the comparison is one-sided,
   so that only makes it more lenient for those subscriptions.
4. **Usage** (``usage``). Every usage record rating has settled (id at or below the
   subscription's ``RatingWatermark``) belongs to a usage entry — one of its subscription and
   currency whose period contains the record's start (for an entry of part of its day — rating
   cuts a day where a suspension begins or a trial ends — the part its meta names,
   ``records_from``/``records_until``) and whose ``meta.max_record_id`` is the first
   at or above the record's id (``models/usage.py``); a record without one is reported. Per
   (subscription, usage day — the local day of the entry's period start, the day rating fixes the
   rate for), the entries' amounts equal what rating's own pricing
   (``rating.source_micro``/``rating.amount_minor``) makes of the records each entry settles, at
   the day's fixed usage rate (``UsageFxRate``; the entry's own where none is stored) with the
   markup of the subscription's plan (or of a plan its spans held), less what a credit entry
   capped at what was charged kept back (its meta ``uncredited``, ``rating``); an
   entry rating marked ``not_billed`` (suspended, trial) must be 0, and an entry's rate must be
   the day's fixed rate.

A :class:`Report` lists the :class:`Difference` rows; it is clean when there are none.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    EntryKind,
    LedgerEntry,
    Organisation,
    Plan,
    RatingWatermark,
    SeatSpan,
    Subscription,
    SubscriptionStatus,
    UsageFxRate,
    UsageRecord,
)
from noventiq_panel.services.core import clock, ledger, proration
from noventiq_panel.services.core.errors import NotFound
from noventiq_panel.services.core.money import minor_unit, quantum, round_money
from noventiq_panel.services.subscriptions.context import anchor_day
from noventiq_panel.services.usage import rating

KINDS = tuple(k.value for k in EntryKind)
_NEGATIVE = (EntryKind.CHARGE.value, EntryKind.USAGE.value)
_POSITIVE = (EntryKind.REFUND.value, EntryKind.TOPUP.value)
_MICRO = Decimal(rating.MICRO)


@dataclass(frozen=True)
class Difference:
    """One thing that does not add up. ``check``: entries | balance | currency | sign | fx | refund |
    seat_days | usage; ``expected``/``actual`` in ``currency`` where a figure applies."""

    check: str
    org_id: int
    message: str
    subscription_id: int | None = None
    entry_id: int | None = None
    expected: Decimal | None = None
    actual: Decimal | None = None
    currency: str | None = None

    def __str__(self) -> str:
        where = f"org {self.org_id}"
        if self.subscription_id is not None:
            where += f" subscription {self.subscription_id}"
        if self.entry_id is not None:
            where += f" entry {self.entry_id}"
        figures = ""
        if self.expected is not None or self.actual is not None:
            figures = f" (expected {self.expected}, found {self.actual}{' ' + self.currency if self.currency else ''})"
        return f"[{self.check}] {where}: {self.message}{figures}"


@dataclass
class Report:
    now: datetime
    organisations: int = 0
    entries: int = 0
    subscriptions: int = 0  # licence subscriptions whose seat-days were valued
    usage_records: int = 0  # settled usage records matched to entries
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        state = "clean" if self.ok else f"{len(self.differences)} difference(s)"
        return (f"ledger check at {self.now:%Y-%m-%d %H:%M} UTC: {state} — {self.organisations} organisation(s), "
                f"{self.entries} entries, {self.subscriptions} licence subscription(s) with seat spans, "
                f"{self.usage_records} settled usage record(s)")


def check(session: Session, org_id: int | None = None, now: datetime | None = None) -> Report:
    """Reconcile every organisation (or only ``org_id``: NotFound if there is none) as of ``now``.
    Writes nothing; a transaction it began is ended (rolled back) when it is done."""
    now = clock.aware(now) if now else clock.utcnow()
    began = not session.in_transaction()
    try:
        query = select(Organisation).order_by(Organisation.id)
        if org_id is not None:
            query = query.where(Organisation.id == org_id)
        orgs = list(session.exec(query).all())
        if org_id is not None and not orgs:
            raise NotFound(f"organisation {org_id} not found")
        plans = {p.id: p for p in session.exec(select(Plan)).all()}
        report = Report(now=now)
        for org in orgs:
            report.organisations += 1
            _check_entries(session, org, report)
            _check_refunds(session, org, report)
            _check_seat_days(session, org, plans, now, report)
            _check_usage(session, org, plans, report)
        return report
    finally:
        if began:
            session.rollback()


# --- 1. entries ------------------------------------------------------------------------------

def _check_entries(session: Session, org: Organisation, report: Report) -> None:
    cur = org.billing_currency
    by_kind: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    for kind, currency, n, total in session.exec(
            select(LedgerEntry.kind, LedgerEntry.currency, func.count(), func.sum(LedgerEntry.amount))
            .where(LedgerEntry.org_id == org.id).group_by(LedgerEntry.kind, LedgerEntry.currency)).all():
        count += n
        if kind in KINDS:
            by_kind[kind] += total or Decimal(0)
        else:
            report.differences.append(Difference("entries", org.id, f"{n} entries of unknown kind {kind!r}",
                                                 actual=total, currency=currency))
    report.entries += count
    recomputed = sum(by_kind.values(), Decimal("0.00"))
    balance = ledger.balance(session, org.id)
    if recomputed != balance:
        parts = ", ".join(f"{k} {by_kind.get(k, Decimal(0))}" for k in KINDS)
        report.differences.append(Difference("balance", org.id, f"balance differs from its entries by kind ({parts})",
                                             expected=recomputed, actual=balance, currency=cur))
    for entry_id, kind, amount, currency, meta in session.exec(
            select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.currency, LedgerEntry.meta)
            .where(LedgerEntry.org_id == org.id, or_(
                LedgerEntry.currency != cur,
                and_(col(LedgerEntry.kind).in_(_NEGATIVE), LedgerEntry.amount > 0),
                and_(col(LedgerEntry.kind).in_(_POSITIVE), LedgerEntry.amount < 0)))
            .order_by(LedgerEntry.id)).all():
        if currency != cur:
            report.differences.append(Difference("currency", org.id, f"{kind} in {currency}, not in {cur}",
                                                 entry_id=entry_id, actual=amount, currency=currency))
        if kind == EntryKind.USAGE.value and amount > 0 and int((meta or {}).get("cost_micro", 0)) < 0:
            continue  # the vendor's credits outweighed the usage of that period (checked under 4.)
        if (kind in _NEGATIVE and amount > 0) or (kind in _POSITIVE and amount < 0):
            sign = "≤ 0" if kind in _NEGATIVE else "≥ 0"
            report.differences.append(Difference("sign", org.id, f"a {kind} must be {sign}", entry_id=entry_id,
                                                 actual=amount, currency=currency))
    for entry_id, kind, amount, currency, source, rate, meta, sub_id in session.exec(
            select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.currency,
                   LedgerEntry.source_amount, LedgerEntry.fx_rate, LedgerEntry.meta, LedgerEntry.subscription_id)
            .where(LedgerEntry.org_id == org.id, col(LedgerEntry.source_amount).is_not(None),
                   col(LedgerEntry.fx_rate).is_not(None))
            .order_by(LedgerEntry.id).execution_options(yield_per=5000)):
        if (meta or {}).get("capped") is True:
            continue
        # abs on both sides: a usage entry that nets credits has a negative source amount
        expected = abs(round_money(source * rate, currency))
        if abs(amount) != expected:
            report.differences.append(Difference(
                "fx", org.id, f"{kind} amount is not source amount {source} × rate {rate}", subscription_id=sub_id,
                entry_id=entry_id, expected=expected, actual=abs(amount), currency=currency))


# --- 2. refunds ------------------------------------------------------------------------------

def _check_refunds(session: Session, org: Organisation, report: Report) -> None:
    sums: dict[tuple[int, datetime | None], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for sub_id, period_end, kind, total in session.exec(
            select(LedgerEntry.subscription_id, LedgerEntry.period_end, LedgerEntry.kind, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.org_id == org.id, col(LedgerEntry.subscription_id).is_not(None),
                   col(LedgerEntry.kind).in_((EntryKind.CHARGE.value, EntryKind.REFUND.value)))
            .group_by(LedgerEntry.subscription_id, LedgerEntry.period_end, LedgerEntry.kind)).all():
        sums[(sub_id, period_end)][kind] += total or Decimal(0)
    for (sub_id, period_end), kinds in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1] is None,
                                                                          kv[0][1] and kv[0][1].timestamp())):
        charged, refunded = -kinds.get(EntryKind.CHARGE.value, Decimal(0)), kinds.get(EntryKind.REFUND.value, Decimal(0))
        if refunded > charged:
            end = f"{clock.local_date(period_end, org.timezone):%Y-%m-%d}" if period_end else "no period"
            report.differences.append(Difference(
                "refund", org.id, f"refunds exceed the charges of the period ending {end}", subscription_id=sub_id,
                expected=charged, actual=refunded, currency=org.billing_currency))


# --- 3. seat-days ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Span:
    plan_id: int
    quantity: int
    status: str
    start: datetime
    end: datetime | None


def _days(start: date, stop: date) -> int:
    return (stop - start).days


@dataclass
class SeatValue:
    """What the seat-days held active are worth (plan currencies, unrounded): in all, and per known
    billing period (currency, local day the period ends) — those of rules 1 and 2 below."""

    total: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    periods: dict[tuple[str, date], Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def seat_value(sub: Subscription, spans: list[_Span], plans: dict[int, Plan], charged_periods: list[tuple[datetime, datetime]],
               tz: str, now: datetime) -> SeatValue:
    """The value of the seat-days ``sub`` held active (:class:`SeatValue`).

    **Which span a day belongs to.** A local day (organisation's time zone) belongs to the span in
    force at its end — at the next local midnight, or at ``now`` for today: a change during a day
    takes the whole day, as pro rata counts it (an increase pays for its day, a refund refunds its
    day, a cancelled day is not held). A closed span holds the days from the local day of its start
    to the day before the local day of its end; the open span holds them up to today.

    **What is counted.** Days of spans with status ``active`` on a licence plan, up to today. Days
    whose payment is still to come are not counted while the subscription is active or suspended:
    from the local day its payment fell due — ``term_end`` when the term is over (the renewal is
    pending, in its grace period, or the subscription was suspended after its term and a comeback
    starts its next term moved back by the grace days it used), else, for a yearly plan billed
    monthly, a due ``next_billing_at`` (the instalment is pending). Once it has ended (expired,
    cancelled) they count: grace days that were never paid are a difference.

    **The billing period of a day** (its length is the denominator):

    1. a day inside the subscription's current term ``[term_start, term_end)`` (local days): the
       period ``proration.billing_period(term_start, term_end, plan.term, plan.billing_frequency,
       <the day's local midnight>, tz, anchor_day(sub))`` of the span's plan;
    2. else the billing period of a charge or refund of the subscription whose
       ``[period_start, period_end)`` contains the day (the latest such period), as the services
       store it on every entry they post: an earlier term;
    3. else (a day of no known term: nothing was ever charged for it) the first billing period of a
       term of the span's plan starting that day.

    A day is worth ``seats × proration.period_price(plan) ÷ total``, ``total`` being the period's
    days (``proration.days_remaining(...)[1]``): held over a whole period the days sum to exactly
    what the period costs, and a part of it to the pro rata price of the services.
    """
    today = clock.local_date(now, tz)
    anchor = anchor_day(sub, tz)
    term = None
    if sub.term_start is not None and sub.term_end is not None:
        term = (clock.local_date(sub.term_start, tz), clock.local_date(sub.term_end, tz))
    periods = sorted((clock.local_date(ps, tz), clock.local_date(pe, tz), ps, pe) for ps, pe in charged_periods)
    starts = [p[0] for p in periods]

    def period_of(day: date, plan: Plan) -> tuple[date, int, bool]:
        """(first day after, total days, known) of the billing period holding ``day``."""
        midnight = clock.local_midnight(day, tz)
        known = True
        if term is not None and term[0] <= day < term[1]:
            p = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, midnight,
                                         tz, anchor)
        else:
            p = None
            for first, stop, ps, pe in reversed(periods[:bisect_right(starts, day)]):
                if first <= day < stop:
                    p = proration.Period(ps, pe, 0)
                    break
            if p is None:
                known = False
                end = proration.term_end(midnight, plan.term, tz)
                p = proration.billing_period(midnight, end, plan.term, plan.billing_frequency, midnight, tz)
        total = proration.days_remaining(p.start, p.end, p.start, tz)[1]
        first, stop = clock.local_date(p.start, tz), clock.local_date(p.end, tz)
        if not first <= day < stop:  # a period that does not hold the day (bad data): one day of it
            return day + timedelta(days=1), total, False
        return stop, total, known

    value = SeatValue()
    pending = None  # the local day from which the payment is still to come
    current = [s for s in spans if s.start <= now]
    if current and current[-1].status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.SUSPENDED):
        plan = plans.get(current[-1].plan_id)
        if sub.term_end is not None and sub.term_end <= now:
            pending = clock.local_date(sub.term_end, tz)
        elif (plan is not None and proration.is_billed_monthly(plan.term, plan.billing_frequency)
              and sub.next_billing_at is not None and sub.next_billing_at <= now):
            pending = clock.local_date(sub.next_billing_at, tz)
    for span in current:
        plan = plans.get(span.plan_id)
        if span.status != SubscriptionStatus.ACTIVE or plan is None or plan.billing_type != "license":
            continue
        first = clock.local_date(span.start, tz)
        if span.end is not None and span.end <= now:
            stop = clock.local_date(span.end, tz)  # exclusive
        else:
            stop = today + timedelta(days=1)
        if pending is not None:
            stop = min(stop, pending)
        price = proration.period_price(plan.price, plan.term, plan.billing_frequency) * span.quantity
        day = first
        while day < stop:
            p_stop, total, known = period_of(day, plan)
            n = _days(day, min(stop, p_stop))
            worth = price * n / total
            value.total[plan.currency] += worth
            if known:
                value.periods[(plan.currency, p_stop)] += worth
            day += timedelta(days=n)
    return value


def _check_seat_days(session: Session, org: Organisation, plans: dict[int, Plan], now: datetime,
                     report: Report) -> None:
    tz = org.timezone
    spans: dict[int, list[_Span]] = defaultdict(list)
    for sub_id, plan_id, quantity, status, start, end in session.exec(
            select(SeatSpan.subscription_id, SeatSpan.plan_id, SeatSpan.quantity, SeatSpan.status, SeatSpan.start,
                   SeatSpan.end).join(Subscription, Subscription.id == SeatSpan.subscription_id)
            .where(Subscription.org_id == org.id).order_by(SeatSpan.subscription_id, SeatSpan.start, SeatSpan.id)).all():
        spans[sub_id].append(_Span(plan_id, quantity, status, start, end))
    licence = {sub_id for sub_id, rows in spans.items()
               if any(plans.get(s.plan_id) is not None and plans[s.plan_id].billing_type == "license" for s in rows)}
    if not licence:
        return
    subs = {s.id: s for s in session.exec(select(Subscription).where(col(Subscription.id).in_(sorted(licence)))).all()}
    net: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    net_period: dict[int, dict[tuple[str, date], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    entries: dict[int, int] = defaultdict(int)
    entries_period: dict[int, dict[tuple[str, date], int]] = defaultdict(lambda: defaultdict(int))
    unperioded: set[int] = set()
    periods: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for sub_id, kind, amount, currency, source, source_currency, ps, pe in session.exec(
            select(LedgerEntry.subscription_id, LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.currency,
                   LedgerEntry.source_amount, LedgerEntry.source_currency, LedgerEntry.period_start,
                   LedgerEntry.period_end)
            .where(LedgerEntry.org_id == org.id, col(LedgerEntry.subscription_id).in_(sorted(licence)),
                   col(LedgerEntry.kind).in_((EntryKind.CHARGE.value, EntryKind.REFUND.value)))).all():
        plan_currency = source_currency or currency
        plan_amount = abs(source) if source is not None else abs(amount)
        signed = plan_amount if kind == EntryKind.CHARGE.value else -plan_amount
        net[sub_id][plan_currency] += signed
        entries[sub_id] += 1
        if ps is not None and pe is not None:
            periods[sub_id].append((ps, pe))
            key = (plan_currency, clock.local_date(pe, tz))
            net_period[sub_id][key] += signed
            entries_period[sub_id][key] += 1
        else:
            unperioded.add(sub_id)
    for sub_id in sorted(licence):
        report.subscriptions += 1
        value = seat_value(subs[sub_id], spans[sub_id], plans, periods[sub_id], tz, now)
        for currency, worth in sorted(value.total.items()):
            paid = net[sub_id].get(currency, Decimal(0))
            if worth > paid + quantum(currency) * max(entries[sub_id], 1):
                report.differences.append(Difference(
                    "seat_days", org.id, "the seat-days held active are worth more than was paid for them",
                    subscription_id=sub_id, expected=round_money(worth, currency), actual=paid, currency=currency))
        if sub_id in unperioded:
            continue  # entries without their period (made before periods were stored): only the total
        for (currency, end), worth in sorted(value.periods.items()):
            paid = net_period[sub_id].get((currency, end), Decimal(0))
            if worth > paid + quantum(currency) * max(entries_period[sub_id].get((currency, end), 0), 1):
                report.differences.append(Difference(
                    "seat_days", org.id, f"the seat-days held in the billing period ending {end} are worth more "
                    "than was paid for that period", subscription_id=sub_id, expected=round_money(worth, currency),
                    actual=paid, currency=currency))


# --- 4. usage --------------------------------------------------------------------------------

@dataclass
class _UsageEntry:
    id: int
    amount: Decimal
    source_currency: str | None
    source: Decimal | None
    rate: Decimal | None
    fx_date: date | None
    start: datetime
    end: datetime
    max_id: int | None
    not_billed: bool
    cost_micro: int = 0  # of the records attributed to it
    records: int = 0
    uncredited: Decimal = Decimal(0)  # a credit entry capped at what was charged: the part not credited


def _check_usage(session: Session, org: Organisation, plans: dict[int, Plan], report: Report) -> None:
    marks = dict(session.exec(
        select(RatingWatermark.subscription_id, RatingWatermark.last_record_id)
        .join(Subscription, Subscription.id == RatingWatermark.subscription_id)
        .where(Subscription.org_id == org.id)).all())
    entries_of: dict[int, list[_UsageEntry]] = defaultdict(list)
    for row in session.exec(
            select(LedgerEntry.subscription_id, LedgerEntry.id, LedgerEntry.amount, LedgerEntry.source_currency,
                   LedgerEntry.source_amount, LedgerEntry.fx_rate, LedgerEntry.fx_date, LedgerEntry.period_start,
                   LedgerEntry.period_end, LedgerEntry.meta)
            .where(LedgerEntry.org_id == org.id, LedgerEntry.kind == EntryKind.USAGE.value,
                   col(LedgerEntry.subscription_id).is_not(None)).order_by(LedgerEntry.id)).all():
        sub_id, entry_id, amount, source_currency, source, rate, fx_date, ps, pe, meta = row
        meta = meta or {}
        max_id = meta.get("max_record_id")
        if meta.get("records_from") and meta.get("records_until"):  # a part of its day (rating)
            ps, pe = datetime.fromisoformat(meta["records_from"]), datetime.fromisoformat(meta["records_until"])
        entries_of[sub_id].append(_UsageEntry(entry_id, amount, source_currency, source, rate, fx_date, ps, pe,
                                              int(max_id) if max_id is not None else None,
                                              bool(meta.get("not_billed")),
                                              uncredited=Decimal(str(meta.get("uncredited", 0)))
                                              if meta.get("capped") is True else Decimal(0)))
    sub_ids = sorted(set(marks) | set(entries_of))
    if not sub_ids:
        return
    subs = {s.id: s for s in session.exec(select(Subscription).where(col(Subscription.id).in_(sub_ids))).all()}
    held_plans: dict[int, set[int]] = defaultdict(set)
    for sub_id, plan_id in session.exec(select(SeatSpan.subscription_id, SeatSpan.plan_id)
                                        .where(col(SeatSpan.subscription_id).in_(sub_ids)).distinct()).all():
        held_plans[sub_id].add(plan_id)
    tz = org.timezone
    fixed_rates = _fixed_rates(session, org.billing_currency)
    for sub_id in sub_ids:
        entries = entries_of.get(sub_id, [])
        mark = marks.get(sub_id, 0)
        _attribute(session, org, sub_id, mark, entries, report)
        markups = {int(Decimal(plans[p].usage_markup_pct or 0) * _MICRO)
                   for p in {subs[sub_id].plan_id, *held_plans[sub_id]} if p in plans}
        step = 10 ** (2 - minor_unit(org.billing_currency))
        days: dict[date, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])  # expected, found
        for e in entries:
            day = e.fx_date or clock.local_date(e.start, tz)
            expected = Decimal(0)
            if not e.not_billed and e.records:
                fixed = _fixed_rate(fixed_rates, e.source_currency, org.billing_currency, day)
                rate_micro = int((fixed if fixed is not None else e.rate or Decimal(0)) * _MICRO)
                source = rating.source_micro(e.cost_micro, max(markups, default=0))
                for markup in markups:  # the markup of a plan the subscription had
                    candidate = rating.source_micro(e.cost_micro, markup)
                    if e.source is not None and candidate == int(e.source * _MICRO):
                        source = candidate
                        break
                expected = -Decimal(rating.amount_minor(source, rate_micro, step)).scaleb(-2) - e.uncredited
                if e.source is not None and int(e.source * _MICRO) != source:
                    report.differences.append(Difference(
                        "usage", org.id, f"usage of {day}: source amount is not the records' cost with the plan's markup",
                        subscription_id=sub_id, entry_id=e.id, expected=Decimal(source).scaleb(-6), actual=e.source,
                        currency=e.source_currency))
                if fixed is not None and e.rate != fixed:
                    report.differences.append(Difference(
                        "usage", org.id, f"usage of {day} charged at another rate than the day's fixed usage rate",
                        subscription_id=sub_id, entry_id=e.id, expected=fixed, actual=e.rate))
            days[day][0] += expected
            days[day][1] += e.amount
        for day, (expected, found) in sorted(days.items()):
            if expected != found:
                report.differences.append(Difference(
                    "usage", org.id, f"usage of {day}: the entries differ from the records rated", subscription_id=sub_id,
                    expected=expected, actual=found, currency=org.billing_currency))


def _fixed_rates(session: Session, billing_currency: str) -> dict[tuple[str, date], Decimal]:
    """(usage currency, day) → the rate usage of that day was fixed at, into ``billing_currency``."""
    return {(currency, day): rate for currency, day, rate in session.exec(
        select(UsageFxRate.currency, UsageFxRate.day, UsageFxRate.rate)
        .where(UsageFxRate.billing_currency == billing_currency.upper())).all()}


def _fixed_rate(rates: dict[tuple[str, date], Decimal], currency: str | None, billing_currency: str,
                day: date) -> Decimal | None:
    if currency is None:
        return None
    if currency.upper() == billing_currency.upper():
        return Decimal(1)
    return rates.get((currency.upper(), day))


def _attribute(session: Session, org: Organisation, sub_id: int, mark: int, entries: list[_UsageEntry],
               report: Report) -> None:
    """Give each settled record (id ≤ ``mark``) to the entry that settled it (see the module rules);
    report the records no entry settles. Reads the records grouped by (start, currency); a group
    that spans two entries is read record by record."""
    if mark <= 0:
        return
    by_bucket: dict[str, list[_UsageEntry]] = defaultdict(list)
    for e in entries:
        by_bucket[e.source_currency or ""].append(e)
    for bucket in by_bucket.values():
        bucket.sort(key=lambda e: (e.start, e.max_id if e.max_id is not None else -1, e.id))

    def owner(start: datetime, currency: str, record_id: int) -> _UsageEntry | None:
        for e in by_bucket.get(currency, []):
            if e.start <= start < e.end and e.max_id is not None and e.max_id >= record_id:
                return e
        return None

    uncovered = 0
    groups = session.exec(
        select(UsageRecord.period_start, UsageRecord.currency, func.sum(UsageRecord.cost), func.count(),
               func.min(UsageRecord.id), func.max(UsageRecord.id))
        .where(UsageRecord.subscription_id == sub_id, UsageRecord.id <= mark)
        .group_by(UsageRecord.period_start, UsageRecord.currency)).all()
    for start, currency, cost, n, low, high in groups:
        first, last = owner(start, currency, low), owner(start, currency, high)
        if first is not None and first is last:
            first.cost_micro += int((cost or Decimal(0)) * _MICRO)
            first.records += n
            report.usage_records += n
            continue
        for record_id, record_cost in session.exec(
                select(UsageRecord.id, UsageRecord.cost).where(
                    UsageRecord.subscription_id == sub_id, UsageRecord.id <= mark, UsageRecord.period_start == start,
                    UsageRecord.currency == currency)).all():
            e = owner(start, currency, record_id)
            if e is None:
                uncovered += 1
                continue
            e.cost_micro += int((record_cost or Decimal(0)) * _MICRO)
            e.records += 1
            report.usage_records += 1
    if uncovered:
        report.differences.append(Difference(
            "usage", org.id, f"{uncovered} usage record(s) below the rating watermark {mark} are in no usage entry",
            subscription_id=sub_id))
