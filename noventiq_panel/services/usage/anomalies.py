"""Cost anomaly alerts of pay-as-you-go subscriptions (as Azure Cost Management has them, explained).

**The method** (:func:`assess`, a pure function over a daily series in the billing currency):

- *history*: the 60 organisation-local days before the day checked, from the subscription's first
  day with usage on (a day without usage inside it costs 0). Fewer than 28 days of history
  (four of each weekday): no verdict, so the first month of a subscription never alerts;
- *baseline*: the median of the same weekday over the last 8 weeks (weekly seasonality: a Monday
  is compared with Mondays, so quiet weekends never alert);
- *trend*: the median of the last 14 days divided by the median of the last whole weeks (up to 8)
  — both windows are whole weeks, so the weekday pattern cancels out; kept within [0.5, 2], and 1
  when the long median is 0. **expected = baseline × trend**: a subscription that grew for two
  weeks is expected to stay grown;
- *spread*: 1.4826 × the median absolute deviation of each day of those whole weeks from its
  weekday's median (a robust standard deviation: one earlier spike does not widen it), times the
  trend;
- *band* = expected ± max(4 × spread, 30 % of expected, an absolute floor by currency: 100 000
  UZS, 10 USD/EUR, 1 000 RUB), never below 0. The floors keep small costs and very regular
  series from alerting on ordinary changes. A day above the band is a *spike*, below it a *drop*.

Medians rather than means, and a MAD rather than a standard deviation, because one past anomaly
must not move what is expected; the band is stated in money, so the mail can say "expected about
X, usually between L and H, it was Y".

**The job** (:func:`detect`, daily after rating): for each active pay-as-you-go subscription whose
``anomaly_alerts`` setting is on, the last complete local days (organisation time zone; the last
``LOOKBACK_DAYS`` so that usage delivered late, or a missed run, is still checked) are assessed
from the daily roll-up (``UsageDaily.cost_org`` of consumption: credits, ``rollup.is_credit``, are
left out; a day with usage not yet converted is skipped until rating knows its rate). A drop is only reported once the usage feed has moved past the day (the
subscription has usage of a later day) or the day ended ``SETTLE`` ago — a day whose usage has not
arrived yet is not a drop. Each anomaly is a ``CostAnomaly`` row, unique per subscription and day
(inside a savepoint: of two concurrent runs one inserts); at most ``MAX_PER_MONTH`` per subscription
and calendar month. With the row, in the same transaction, one ``cost_anomaly`` mail per recipient:
the organisation's Owners and Administrators and, when the subscription has a budget, its recipients
(users in their language, extra addresses in Russian), each address once. Top contributors: the
(at most three) services and resource groups whose cost changed most against their own expected
cost (same method: weekday median × trend), in the direction of the anomaly, each at least a tenth
of the whole change.

The UI reads :func:`anomalies_for` (plain values, with the explanation's i18n key and parameters)
and changes the setting with :func:`set_anomaly_alerts` (Owner/Administrator; audited).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Mapping

from sqlalchemy import BigInteger, func, not_, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    Budget,
    CostAnomaly,
    Membership,
    Organisation,
    Plan,
    Product,
    Subscription,
    SubscriptionStatus,
    UsageDaily,
    User,
)
from noventiq_panel.services.core import audit, authz, clock
from noventiq_panel.services.core.authz import Access, Actor
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.core.money import round_money
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.usage import rollup

log = logging.getLogger(__name__)

# -- the method's parameters ------------------------------------------------------------------
WINDOW_DAYS = 60  # history looked at
WEEKS = 8  # same-weekday values for the baseline (8 × 7 = 56 <= 60)
RECENT_DAYS = 14  # the trend's recent window (two whole weeks)
MIN_HISTORY_DAYS = 28  # no verdict before four weeks of history
K = Fraction(4)  # band half-width in robust standard deviations
MAD_SCALE = Fraction(14826, 10000)  # MAD -> standard deviation of a normal distribution
REL_FLOOR = Fraction(3, 10)  # the band is at least ±30 % of expected ...
ABS_FLOOR = {"UZS": Decimal("100000"), "USD": Decimal("10"), "EUR": Decimal("10"), "RUB": Decimal("1000")}
DEFAULT_ABS_FLOOR = Decimal("10")  # ... and at least this much money (billing currency)
TREND_MIN, TREND_MAX = Fraction(1, 2), Fraction(2)

# -- the job's parameters ---------------------------------------------------------------------
LOOKBACK_DAYS = 3  # the last complete local days checked on each run
SETTLE = timedelta(hours=48)  # a drop needs later usage, or this long since the day ended
MAX_PER_MONTH = 5  # anomalies per subscription and calendar month
TOP_CONTRIBUTORS = 3  # services and resource groups each
SHARE = 10  # a contributor moved at least 1/SHARE of what all keys moved in the anomaly's direction
ALERT_ROLES = ("owner", "admin")
MICRO = Decimal("0.000001")


def abs_floor(currency: str) -> Decimal:
    """The smallest change in money that may alert, in ``currency``."""
    return ABS_FLOOR.get((currency or "").upper(), DEFAULT_ABS_FLOOR)


# -- the pure method --------------------------------------------------------------------------

@dataclass(frozen=True)
class Assessment:
    """What :func:`assess` found for one day. Amounts to 6 decimals; ``direction`` None: normal."""

    day: date
    actual: Decimal
    expected: Decimal
    low: Decimal
    high: Decimal
    baseline: Decimal  # the same weekday's median
    trend: Decimal  # recent median / long median
    spread: Decimal  # robust standard deviation (after the trend)
    history_days: int
    direction: str | None  # "spike" | "drop" | None

    @property
    def is_anomaly(self) -> bool:
        return self.direction is not None


def _median(values: list[Fraction]) -> Fraction:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _frac(value) -> Fraction:
    if isinstance(value, float):
        raise TypeError("money must not be a float")
    if isinstance(value, Fraction):
        return value
    return Fraction(Decimal(value))


def _dec(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(MICRO)


@dataclass(frozen=True)
class _History:
    days: list[date]  # newest first: day-1, day-2, ...
    value: Any  # date -> Fraction
    weeks: int  # whole weeks available (<= WEEKS)


def _history(series: Mapping[date, Any], day: date, since: date | None) -> _History | None:
    first = since if since is not None else (min(series) if series else None)
    if first is None:
        return None
    days = [day - timedelta(days=i) for i in range(1, WINDOW_DAYS + 1) if day - timedelta(days=i) >= first]
    if len(days) < MIN_HISTORY_DAYS:
        return None
    cache = {d: _frac(series.get(d, 0) or 0) for d in days}
    return _History(days=days, value=cache.__getitem__, weeks=min(WEEKS, len(days) // 7))


def _same_weekday(h: _History, day: date, value) -> list[Fraction]:
    out = []
    for j in range(1, WEEKS + 1):
        d = day - timedelta(days=7 * j)
        if j <= h.weeks:
            out.append(value(d))
    return out


def _trend(h: _History) -> Fraction:
    recent = [h.value(d) for d in h.days[:RECENT_DAYS]]
    long = [h.value(d) for d in h.days[:7 * h.weeks]]
    base = _median(long)
    if base <= 0:
        return Fraction(1)
    return min(TREND_MAX, max(TREND_MIN, _median(recent) / base))


def assess(series: Mapping[date, Any], day: date, *, since: date | None = None,
           floor: Decimal = Decimal("0")) -> Assessment | None:
    """Assess the cost of ``day`` (``series[day]``, 0 when absent) against its history.

    ``series``: local day → cost (Decimal or int; a day absent costs 0); ``since``: the first day
    with usage (default: the series' first day) — days before it are not history. ``floor``: the
    absolute floor of the band's half-width (:func:`abs_floor`). None without enough history
    (``MIN_HISTORY_DAYS``). Exact arithmetic (fractions), rounded to 6 decimals at the end.
    """
    h = _history(series, day, since)
    if h is None:
        return None
    actual = _frac(series.get(day, 0) or 0)
    baseline = _median(_same_weekday(h, day, h.value))
    trend = _trend(h)
    expected = baseline * trend
    # the spread: deviation of each day of the whole weeks from its weekday's median
    long_days = h.days[:7 * h.weeks]
    by_weekday: dict[int, list[Fraction]] = defaultdict(list)
    for d in long_days:
        by_weekday[d.weekday()].append(h.value(d))
    medians = {w: _median(v) for w, v in by_weekday.items()}
    mad = _median([abs(h.value(d) - medians[d.weekday()]) for d in long_days])
    spread = MAD_SCALE * mad * trend
    half = max(K * spread, REL_FLOOR * expected, _frac(floor))
    low, high = max(Fraction(0), expected - half), expected + half
    direction = "spike" if actual > high else "drop" if actual < low else None
    return Assessment(day=day, actual=_dec(actual), expected=_dec(expected), low=_dec(low), high=_dec(high),
                      baseline=_dec(baseline), trend=_dec(trend), spread=_dec(spread), history_days=len(h.days),
                      direction=direction)


@dataclass(frozen=True)
class Contributor:
    name: str
    actual: Decimal
    expected: Decimal
    change: Decimal
    new: bool  # no cost at all in the history

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "actual": str(self.actual), "expected": str(self.expected),
                "change": str(self.change), "new": self.new}


def contributors(by_key: Mapping[str, Mapping[date, Any]], day: date, direction: str, *, since: date | None = None,
                 limit: int = TOP_CONTRIBUTORS) -> list[Contributor]:
    """The keys (services or resource groups) whose cost on ``day`` moved most in ``direction``
    against their own expected cost (their same-weekday median × the trend of their total), largest
    change first: only changes in the anomaly's direction, each at least a tenth of all of them."""
    total: dict[date, Fraction] = defaultdict(Fraction)
    for series in by_key.values():
        for d, v in series.items():
            total[d] += _frac(v or 0)
    h = _history(total, day, since)
    if h is None:
        return []
    trend = _trend(h)
    out = []
    for key, series in by_key.items():
        def value(d, s=series):
            return _frac(s.get(d, 0) or 0)
        actual = value(day)
        expected = _median(_same_weekday(h, day, value)) * trend
        change = actual - expected
        if (direction == "spike" and change <= 0) or (direction == "drop" and change >= 0):
            continue
        new = actual > 0 and all(value(d) == 0 for d in h.days)
        out.append(Contributor(name=key, actual=_dec(actual), expected=_dec(expected), change=_dec(change), new=new))
    moved = sum(abs(c.change) for c in out)
    out = [c for c in out if abs(c.change) * SHARE >= moved]  # noise beside the real cause is left out
    out.sort(key=lambda c: (-abs(c.change), c.name))
    return out[:limit]


# -- the job ----------------------------------------------------------------------------------

@dataclass
class AnomalySummary:
    subscriptions: int = 0
    anomalies: int = 0
    mails: int = 0
    capped: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"{self.subscriptions} subscriptions checked, {self.anomalies} anomalies, {self.mails} mails"
                + (f", {self.capped} over the monthly limit" if self.capped else ""))
        if self.errors:
            text += f"; {len(self.errors)} errors: {self.errors[0]}"
        return text


@dataclass
class _Usage:
    total: dict[date, Decimal]
    services: dict[str, dict[date, Decimal]]
    groups: dict[str, dict[date, Decimal]]
    unconverted: set[date]
    since: date | None
    last_day: date | None


def _usage(session: Session, sub_id: int, start: date, end: date) -> _Usage:
    UD = UsageDaily
    rows = session.execute(
        select(UD.day, UD.service, UD.resource_group, func.sum(type_coerce(UD.cost_org, BigInteger)),
               func.count(), func.count(UD.cost_org))
        .where(UD.subscription_id == sub_id, UD.day >= start, UD.day < end, not_(rollup.is_credit(UD)))
        .group_by(UD.day, UD.service, UD.resource_group)).all()
    total: dict[date, Decimal] = defaultdict(Decimal)
    services: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    groups: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    unconverted: set[date] = set()
    for day, svc, rg, micro, n, converted in rows:
        if converted < n:
            unconverted.add(day)
        amount = Decimal(int(micro or 0)).scaleb(-6)
        total[day] += amount
        services[svc or ""][day] += amount
        groups[rg or ""][day] += amount
    since, last = session.execute(select(func.min(UD.day), func.max(UD.day))
                                  .where(UD.subscription_id == sub_id, not_(rollup.is_credit(UD)))).one()
    return _Usage(total=dict(total), services=services, groups=groups, unconverted=unconverted, since=since,
                  last_day=last)


def _recipients(session: Session, sub: Subscription, org_id: int) -> tuple[list[User], list[str]]:
    """Owners and Administrators, plus the budget's users and extra addresses; each address once."""
    users = {u.id: u for u in notifications.recipients(session, org_id, ALERT_ROLES)}
    extra: list[str] = []
    budget = session.exec(select(Budget).where(Budget.subscription_id == sub.id)).first()
    if budget is not None:
        if budget.recipient_user_ids:
            for u in session.exec(
                    select(User).join(Membership, Membership.user_id == User.id)
                    .where(col(User.id).in_([int(i) for i in budget.recipient_user_ids]), Membership.org_id == org_id,
                           Membership.in_force(), User.is_active == True)).all():  # noqa: E712
                users.setdefault(u.id, u)
        extra = list(budget.extra_emails or [])
    ordered = sorted(users.values(), key=lambda u: u.id)
    known = {u.email.lower() for u in ordered}
    emails: list[str] = []
    for e in extra:
        if e and "@" in e and e.lower() not in known:
            known.add(e.lower())
            emails.append(e)
    return ordered, emails


def _names(session: Session, sub: Subscription) -> tuple[str, str]:
    plan = session.get(Plan, sub.plan_id)
    product = session.get(Product, plan.product_id) if plan else None
    product_name = product.name if product else (plan.name if plan else "")
    return product_name, sub.name or product_name


def _mail_items(items: Iterable[dict]) -> list[dict[str, Any]]:
    return [{"name": i["name"], "actual": Decimal(i["actual"]), "expected": Decimal(i["expected"]),
             "change": Decimal(i["change"]), "new": bool(i.get("new"))} for i in items]


def _record(session: Session, org: Organisation, sub: Subscription, a: Assessment, usage: _Usage, now: datetime,
            summary: AnomalySummary) -> None:
    cur = org.billing_currency
    # the monthly cap: counted under the subscription's row lock (PostgreSQL; SQLite writes one at a time)
    session.exec(select(Subscription.id).where(Subscription.id == sub.id).with_for_update()).first()
    month = clock.month_start(a.day)
    count = session.exec(select(func.count()).select_from(CostAnomaly).where(
        CostAnomaly.subscription_id == sub.id, CostAnomaly.day >= month,
        CostAnomaly.day < clock.next_month(month))).one()
    if count >= MAX_PER_MONTH:
        summary.capped += 1
        return

    def top(by_key):
        return [c.as_json() for c in contributors(by_key, a.day, a.direction, since=usage.since)]

    row = CostAnomaly(org_id=org.id, subscription_id=sub.id, day=a.day, actual=round_money(a.actual, cur),
                      expected=round_money(a.expected, cur), low=round_money(a.low, cur),
                      high=round_money(a.high, cur), currency=cur, direction=a.direction,
                      contributors={"services": top(usage.services), "resource_groups": top(usage.groups)},
                      created_at=now)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return  # found before (or by a concurrent run): each anomaly alerts once
    summary.anomalies += 1
    product, name = _names(session, sub)
    context = {"subscription_name": name, "product": product, "day": a.day, "direction": a.direction,
               "actual": row.actual, "expected": row.expected, "low": row.low, "high": row.high, "currency": cur,
               "services": _mail_items(row.contributors["services"]),
               "resource_groups": _mail_items(row.contributors["resource_groups"]),
               "subscription_id": sub.id}
    key = f"cost_anomaly:{sub.id}:{a.day:%Y%m%d}"
    users, emails = _recipients(session, sub, org.id)
    for user in users:
        notifications.notify_user(session, user, "cost_anomaly", context, org_id=org.id,
                                  dedupe_key=f"{key}:u{user.id}", now=now)
        summary.mails += 1
    for email in emails:
        notifications.enqueue(session, kind="cost_anomaly", to_email=email, context=context, locale="ru",
                              org_id=org.id, dedupe_key=f"{key}:e{email.lower()}"[:200], now=now)
        summary.mails += 1


def check_subscription(session: Session, sub: Subscription, now: datetime, summary: AnomalySummary) -> None:
    """Assess the last ``LOOKBACK_DAYS`` complete local days of one subscription. Flushes only."""
    org = session.get(Organisation, sub.org_id)
    if org is None:
        return
    today = clock.local_date(now, org.timezone)
    days = [today - timedelta(days=i) for i in range(LOOKBACK_DAYS, 0, -1)]
    usage = _usage(session, sub.id, days[0] - timedelta(days=WINDOW_DAYS), today)
    if usage.since is None:
        return
    done = set(session.exec(select(CostAnomaly.day).where(CostAnomaly.subscription_id == sub.id,
                                                          CostAnomaly.day >= days[0])).all())
    floor = abs_floor(org.billing_currency)
    for day in days:
        if day in done or day < usage.since or usage.unconverted & {day}:
            continue
        result = assess(usage.total, day, since=usage.since, floor=floor)
        if result is None or not result.is_anomaly:
            continue
        if result.direction == "drop":
            settled = (usage.last_day is not None and usage.last_day > day) or \
                now - clock.local_midnight(day + timedelta(days=1), org.timezone) >= SETTLE
            if not settled:
                continue
        _record(session, org, sub, result, usage, now, summary)


def detect(session: Session, now: datetime | None = None) -> AnomalySummary:
    """The daily job: every active pay-as-you-go subscription with alerts on; one committed
    transaction per subscription (an error is logged and the others go on)."""
    now = clock.aware(now) if now else clock.utcnow()
    summary = AnomalySummary()
    if session.in_transaction():
        session.commit()
    ids = list(session.exec(
        select(Subscription.id).join(Plan, Plan.id == Subscription.plan_id)
        .where(Plan.billing_type == "payg", Subscription.status == SubscriptionStatus.ACTIVE,
               Subscription.anomaly_alerts == True)  # noqa: E712
        .order_by(Subscription.id)).all())
    session.commit()
    for sub_id in ids:
        try:
            sub = session.get(Subscription, sub_id)
            if sub is not None:
                check_subscription(session, sub, now, summary)
                summary.subscriptions += 1
            session.commit()
        except Exception as exc:  # noqa: BLE001 - one subscription's trouble must not stop the others
            session.rollback()
            log.exception("cost anomalies of subscription %s", sub_id)
            summary.errors.append(f"subscription {sub_id}: {exc}")
    return summary


# -- for the UI -------------------------------------------------------------------------------

DEFAULT_LIMIT = 20


def _payg_sub(session: Session, access: Access, sub_id) -> Subscription:
    sub = authz.load_owned(session, access, Subscription, sub_id, "subscription", key="error.subscription_not_found")
    plan = session.get(Plan, sub.plan_id)
    if plan is None or plan.billing_type != "payg":
        raise Conflict("cost anomaly alerts are for pay-as-you-go subscriptions", key="error.not_payg")
    return sub


def _items(items) -> list[dict[str, Any]]:
    return [{"name": i.get("name", ""), "actual": Decimal(i["actual"]), "expected": Decimal(i["expected"]),
             "change": Decimal(i["change"]), "new": bool(i.get("new"))} for i in items or []]


def recent(session: Session, org_id: int, *, subscription_id: int | None = None, since: date | None = None,
           limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """The organisation's anomalies (of one of its subscriptions; from the local day ``since``),
    newest day first, as :func:`anomalies_for` describes them. No access check: the caller has
    made it (the dashboard, :func:`anomalies_for`)."""
    q = select(CostAnomaly).where(CostAnomaly.org_id == org_id)
    if subscription_id is not None:
        q = q.where(CostAnomaly.subscription_id == subscription_id)
    if since is not None:
        q = q.where(CostAnomaly.day >= since)
    rows = session.exec(q.order_by(col(CostAnomaly.day).desc(), col(CostAnomaly.id).desc())
                        .limit(max(1, min(int(limit), 200)))).all()
    names: dict[int, tuple[str, str]] = {}
    out = []
    for r in rows:
        if r.subscription_id not in names:
            names[r.subscription_id] = _names(session, session.get(Subscription, r.subscription_id))
        product, name = names[r.subscription_id]
        change = r.actual - r.expected
        out.append({
            "id": r.id, "subscription_id": r.subscription_id, "subscription_name": name, "product": product,
            "day": r.day, "direction": r.direction, "actual": r.actual, "expected": r.expected, "low": r.low,
            "high": r.high, "change": change,
            "change_pct": (change / r.expected * 100).quantize(Decimal("0.1")) if r.expected else None,
            "currency": r.currency, "services": _items(r.contributors.get("services")),
            "resource_groups": _items(r.contributors.get("resource_groups")), "created_at": r.created_at,
            "explanation_key": f"anomaly.explanation.{r.direction}",
            "explanation_params": {"subscription": name, "day": r.day, "actual": r.actual, "expected": r.expected,
                                   "low": r.low, "high": r.high},
        })
    return out


def anomalies_for(session: Session, actor: Actor | None, subscription_id=None, *,
                  limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """The organisation's cost anomalies, newest day first (any member may read; another
    organisation's or a malformed subscription id: NotFound). Each is a dict of plain values:

    ``id, subscription_id, subscription_name, product, day (date), direction ("spike"|"drop"),
    actual, expected, low, high, change (actual - expected), change_pct (Decimal % or None),
    currency, services, resource_groups`` (each ``[{name, actual, expected, change, new}]``, name ""
    = none), ``created_at`` and ``explanation_key`` / ``explanation_params`` (the i18n sentence
    the mail says too; amounts in the params are Decimal, to format with the currency).
    """
    access = authz.can_read(session, actor)
    sub_id = None
    if subscription_id not in (None, ""):
        sub_id = authz.load_owned(session, access, Subscription, subscription_id, "subscription",
                                  key="error.subscription_not_found").id
    out = recent(session, access.org_id, subscription_id=sub_id, limit=limit)
    session.commit()
    return out


def anomaly_alerts_enabled(session: Session, actor: Actor | None, subscription_id) -> dict[str, bool]:
    """``{"enabled": ..., "can_write": ...}`` for the setting's switch (any member may read)."""
    access = authz.can_read(session, actor)
    sub = _payg_sub(session, access, subscription_id)
    result = {"enabled": bool(sub.anomaly_alerts), "can_write": access.can_write}
    session.commit()
    return result


def set_anomaly_alerts(session: Session, actor: Actor | None, subscription_id, enabled: bool) -> bool:
    """Turn the subscription's cost anomaly alerts on or off (Owner/Administrator). Audited when it
    changes; commits; nothing changes on error. Returns the setting now."""
    try:
        access = authz.can_write(session, actor)
        sub = _payg_sub(session, access, subscription_id)
        enabled = bool(enabled)
        if sub.anomaly_alerts == enabled:
            session.rollback()
            return enabled
        sub.anomaly_alerts = enabled
        session.add(sub)
        audit.record(session, access.actor, "subscription.anomaly_alerts", subscription_id=sub.id, enabled=enabled)
        session.commit()
        return enabled
    except BaseException:
        session.rollback()
        raise


__all__ = ["AnomalySummary", "Assessment", "Contributor", "abs_floor", "anomalies_for", "anomaly_alerts_enabled",
           "assess", "check_subscription", "contributors", "detect", "recent", "set_anomaly_alerts"]
