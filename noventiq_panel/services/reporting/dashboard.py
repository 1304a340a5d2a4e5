"""The figures of the home page: balance, this month's consumption and its forecast, what expires
or renews soon, the day's exchange rates and the alerts that need the user.

Read-only; any member of the organisation may read it (``authz.can_read``). Amounts are Decimals
in the organisation's billing currency; the page formats them.

Consumption of a month = what the ledger took for services in that month (organisation time
zone): licence charges and rated usage, less refunds. Top-ups and manual adjustments are not
consumption. The month-end forecast = licence charges so far + usage so far projected linearly
over the whole month (usage accrues day by day) + the renewals and monthly instalments that fall
due before the month ends (priced at the plan's price and today's rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    BillingMode,
    Budget,
    BudgetAlert,
    EntryKind,
    LedgerEntry,
    Organisation,
    Payment,
    PaymentStatus,
    Plan,
    Product,
    Subscription,
    SubscriptionStatus,
)
from noventiq_panel.services.core import clock, ledger, rates
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.billing import invoices
from noventiq_panel.services.core.errors import DomainError
from noventiq_panel.services.usage import anomalies

SOON_DAYS = 30
ANOMALY_DAYS = 7  # cost anomalies of the last week are alerts on the home page
ANOMALY_ALERTS = 3
LIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIAL, SubscriptionStatus.SUSPENDED)


@dataclass(frozen=True)
class SoonItem:
    subscription_id: int
    name: str
    when: datetime
    event: str  # "renews" | "expires" | "trial_ends"
    quantity: int
    status: str


@dataclass(frozen=True)
class RateItem:
    currency: str
    rate: Decimal  # UZS for one unit
    rate_date: date


@dataclass(frozen=True)
class Alert:
    kind: str  # "low_balance" | "budget" | "payment_overdue" | "negative_balance" | "cost_anomaly"
    params: dict = field(default_factory=dict)
    link: str = "/"
    text_key: str = ""  # the sentence to show; "" = home.alert.<kind>


@dataclass(frozen=True)
class Dashboard:
    org_id: int
    org_name: str
    currency: str
    timezone: str
    billing_mode: str
    balance: Decimal
    credit_limit: Decimal
    available: Decimal
    month: date  # first day of the current month, organisation time zone
    month_to_date: Decimal
    forecast: Decimal
    soon: list[SoonItem]
    rates: list[RateItem]
    rates_date: date | None
    alerts: list[Alert]


def _month_consumption(session: Session, org_id: int, start: datetime, end: datetime) -> tuple[Decimal, Decimal]:
    """(licence charges less refunds, usage) taken in [start, end), as positive amounts."""
    rows = session.exec(
        select(LedgerEntry.kind, func.sum(LedgerEntry.amount))
        .where(
            LedgerEntry.org_id == org_id,
            col(LedgerEntry.kind).in_(ledger.CONSUMPTION_KINDS),
            LedgerEntry.occurred_at >= start,
            LedgerEntry.occurred_at < end,
        )
        .group_by(LedgerEntry.kind)
    ).all()
    licences = Decimal("0.00")
    usage = Decimal("0.00")
    for kind, total in rows:
        total = total if total is not None else Decimal("0.00")
        if kind == EntryKind.USAGE:
            usage += -total
        else:
            licences += -total
    return licences, usage


def _subscription_name(sub: Subscription, plan: Plan | None, product: Product | None) -> str:
    if sub.name:
        return sub.name
    if product is not None and plan is not None:
        return f"{product.name} — {plan.name}"
    return product.name if product is not None else (plan.name if plan is not None else f"#{sub.id}")


def _upcoming_charges(session: Session, org: Organisation, now: datetime, month_end: datetime, day: date) -> Decimal:
    """Renewals (auto-renew on, term ending before the month ends) and monthly instalments of
    yearly plans due before the month ends, converted at today's rate. A plan whose currency has
    no rate is left out (the forecast is an estimate)."""
    total = Decimal("0")
    subs = session.exec(
        select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(
            Subscription.org_id == org.id,
            Subscription.status == SubscriptionStatus.ACTIVE,
            Plan.billing_type == "license",
        )
    ).all()
    for sub, plan in subs:
        price = plan.price * sub.quantity
        due = Decimal("0")
        if plan.term == "year" and plan.billing_frequency == "monthly":
            if sub.next_billing_at is not None and now <= sub.next_billing_at < month_end:
                due = price / 12
        elif sub.auto_renew and not sub.cancel_at_term_end and sub.term_end is not None and now <= sub.term_end < month_end:
            due = price
        if due:
            try:
                converted, _rate = rates.convert_amount(session, due, plan.currency, org.billing_currency, day)
            except DomainError:
                continue
            total += converted
    return total


def _soon(session: Session, org_id: int, now: datetime, days: int) -> list[SoonItem]:
    horizon = now + timedelta(days=days)
    rows = session.exec(
        select(Subscription, Plan, Product)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .where(Subscription.org_id == org_id, col(Subscription.status).in_([s.value for s in LIVE_STATUSES]))
    ).all()
    items: list[SoonItem] = []
    for sub, plan, product in rows:
        if sub.is_trial and sub.trial_ends_at is not None:
            when, event = sub.trial_ends_at, "trial_ends"
        elif sub.term_end is not None:
            when = sub.term_end
            event = "renews" if (sub.auto_renew and not sub.cancel_at_term_end) else "expires"
        else:
            continue
        if now <= when < horizon:
            items.append(SoonItem(sub.id, _subscription_name(sub, plan, product), when, event, sub.quantity,
                                  str(sub.status)))
    items.sort(key=lambda i: (i.when, i.name))
    return items


def _alerts(session: Session, org: Organisation, balance: Decimal, available: Decimal, month: date,
            today: date) -> list[Alert]:
    alerts: list[Alert] = []
    if org.billing_mode == BillingMode.POSTPAID:
        if available <= 0:
            alerts.append(Alert("credit_exhausted", {"available": available, "currency": org.billing_currency},
                                "/billing"))
    elif balance < 0:
        alerts.append(Alert("negative_balance", {"balance": balance, "currency": org.billing_currency}, "/billing"))
    if org.low_balance_threshold is not None and available < org.low_balance_threshold and not (
        alerts and alerts[-1].kind in ("negative_balance", "credit_exhausted")
    ):
        alerts.append(Alert("low_balance", {"balance": available, "threshold": org.low_balance_threshold,
                                            "currency": org.billing_currency}, "/billing"))
    crossed = session.exec(
        select(BudgetAlert, Budget, Subscription)
        .join(Budget, Budget.id == BudgetAlert.budget_id)
        .join(Subscription, Subscription.id == Budget.subscription_id)
        .where(Budget.org_id == org.id, BudgetAlert.month == month)
        .order_by(col(BudgetAlert.created_at).desc())
    ).all()
    seen: set[int] = set()
    for alert, budget, sub in crossed:
        if budget.id in seen:  # the highest threshold crossed last is enough
            continue
        seen.add(budget.id)
        alerts.append(Alert("budget", {"subscription": sub.name or f"#{sub.id}", "percent": alert.percent,
                                       "type": alert.kind, "amount": budget.amount, "spent": alert.spent,
                                       "currency": budget.currency},
                            f"/subscriptions/{sub.id}"))
    payments = session.exec(
        select(Payment)
        .where(
            Payment.org_id == org.id,
            invoices.status_condition(PaymentStatus.OVERDUE, today),
        )
        .order_by(col(Payment.due_date))
    ).all()
    for p in payments:
        alerts.append(Alert("payment_overdue", {"number": p.number, "amount": p.amount, "currency": p.currency,
                                                "due_date": p.due_date}, "/billing"))
    for a in anomalies.recent(session, org.id, since=today - timedelta(days=ANOMALY_DAYS - 1), limit=ANOMALY_ALERTS):
        alerts.append(Alert("cost_anomaly", {**a["explanation_params"], "currency": a["currency"]},
                            f"/subscriptions/{a['subscription_id']}?tab=usage", text_key=a["explanation_key"]))
    return alerts


def get_dashboard(session: Session, actor: Actor, *, now: datetime | None = None, soon_days: int = SOON_DAYS) -> Dashboard:
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    now = clock.aware(now) if now is not None else clock.utcnow()
    tz = org.timezone or "Asia/Tashkent"
    today = clock.local_date(now, tz)
    month = clock.month_start(today)
    month_start, month_end = clock.month_bounds(month, tz)

    bal = ledger.balance(session, org.id)
    avail = ledger.spendable(bal, ledger.reserved(session, org.id), org.billing_mode, org.credit_limit)
    licences, usage = _month_consumption(session, org.id, month_start, now)
    elapsed = (now - month_start).total_seconds()
    length = (month_end - month_start).total_seconds()
    usage_forecast = usage * Decimal(length) / Decimal(elapsed) if elapsed > 3600 else usage
    forecast = licences + usage_forecast + _upcoming_charges(session, org, now, month_end, today)
    q = Decimal("0.01")
    rate_rows = rates.latest_rates(session, today)
    rate_items = [RateItem(r.currency, r.rate, r.rate_date) for r in rate_rows]
    return Dashboard(
        org_id=org.id,
        org_name=org.name,
        currency=org.billing_currency,
        timezone=tz,
        billing_mode=str(org.billing_mode),
        balance=bal,
        credit_limit=org.credit_limit,
        available=avail,
        month=month,
        month_to_date=(licences + usage).quantize(q),
        forecast=max(forecast, licences + usage).quantize(q),
        soon=_soon(session, org.id, now, soon_days),
        rates=rate_items,
        rates_date=max((r.rate_date for r in rate_items), default=None),
        alerts=_alerts(session, org, bal, avail, month, today),
    )
