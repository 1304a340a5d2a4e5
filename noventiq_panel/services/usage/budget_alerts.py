"""Budget checks (run after rating): one alert per threshold and budget month. Budgets only warn.

For every ``Budget`` (services/usage/budgets.py manages them):

- the budget month is the calendar month of ``now`` in the organisation's time zone, [first
  midnight, next first midnight);
- **actual** spend = the subscription's ``usage`` ledger entries of that month (by ``occurred_at``,
  which rating sets to the usage period's start), as a positive amount in the billing currency
  (converted at today's rate if the budget is in another currency);
- **forecast** = the month-to-date daily average projected over the month's days:
  ``actual / elapsed_days × days_in_month`` with ``elapsed_days`` the fraction of days gone since
  the month began, at least 1 (so the first hours of a month do not project one hour's usage
  ×720), and never below ``actual``;
- a threshold ``{"percent": p, "type": t}`` is crossed when the actual (``t = actual``) or the
  forecast (``t = forecast``) spend reaches ``amount × p / 100``.

Each crossed threshold inserts a ``BudgetAlert`` row (unique per budget, month, percent and type:
inside a savepoint, so of two concurrent runs one inserts and the other skips) and, in the same
transaction, a ``budget_threshold`` mail to each recipient: the budget's users (active members of
the organisation, in their language) and its extra addresses (Russian); a budget without any
recipient left mails the organisation's owners and administrators. A crossing found on a later
run of the same month sends nothing again.

During the first two days of a month the previous month is checked as well (actual thresholds
only), so usage of the month's last hours, rated after midnight, still alerts in its own month.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    Budget,
    BudgetAlert,
    LedgerEntry,
    Membership,
    Organisation,
    Plan,
    Product,
    Subscription,
    User,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core.errors import RateMissing
from noventiq_panel.services.core.money import round_money

log = logging.getLogger(__name__)

FALLBACK_ROLES = ("owner", "admin")
PREVIOUS_MONTH_GRACE = timedelta(days=2)


@dataclass
class BudgetSummary:
    budgets: int = 0
    alerts: int = 0
    mails: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.budgets} budgets checked, {self.alerts} thresholds crossed, {self.mails} mails"
        if self.errors:
            text += f"; {len(self.errors)} errors: {self.errors[0]}"
        return text


@dataclass(frozen=True)
class Spend:
    month: date
    actual: Decimal
    forecast: Decimal
    currency: str


def month_spend(session: Session, budget: Budget, org: Organisation, month: date, now: datetime) -> Spend:
    """Actual and forecast spend of the budget's subscription in ``month`` (organisation time zone)."""
    start, end = clock.month_bounds(month, org.timezone)
    total = session.exec(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.subscription_id == budget.subscription_id, LedgerEntry.kind == "usage",
            LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)
    ).one()
    actual = -(total if total is not None else Decimal("0.00"))
    currency = org.billing_currency
    if budget.currency and budget.currency.upper() != currency.upper():
        converted, _rate = rates.convert_amount(session, actual, currency, budget.currency,
                                                clock.local_date(now, org.timezone))
        actual, currency = round_money(converted, budget.currency), budget.currency
    days_in_month = (clock.next_month(month) - month).days
    if now >= end:
        forecast = actual
    else:
        elapsed = max(Decimal(1), Decimal(str((now - start).total_seconds())) / Decimal(86400))
        forecast = max(actual, (actual / elapsed * days_in_month).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return Spend(month=month, actual=actual, forecast=forecast, currency=currency)


def _crossed(budget: Budget, spend: Spend, *, actual_only: bool) -> list[tuple[str, str, Decimal]]:
    """[(percent, type, spend compared)] of the thresholds reached, lowest first."""
    out = []
    for threshold in budget.thresholds or []:
        percent = str(threshold.get("percent", ""))
        kind = threshold.get("type", "actual")
        try:
            limit = Decimal(budget.amount) * Decimal(percent) / 100
        except Exception:  # noqa: BLE001 - a malformed threshold must not stop the others
            log.warning("budget %s: bad threshold %r", budget.id, threshold)
            continue
        if kind == "forecast" and actual_only:
            continue
        value = spend.actual if kind == "actual" else spend.forecast
        if limit > 0 and value >= limit:
            out.append((percent, kind, value))
    return sorted(out, key=lambda t: (Decimal(t[0]), t[1]))


def _recipients(session: Session, budget: Budget, org_id: int) -> tuple[list[User], list[str]]:
    users: list[User] = []
    if budget.recipient_user_ids:
        users = list(session.exec(
            select(User).join(Membership, Membership.user_id == User.id)
            .where(col(User.id).in_([int(u) for u in budget.recipient_user_ids]), Membership.org_id == org_id,
                   Membership.in_force(), User.is_active == True)  # noqa: E712
            .order_by(User.id)).all())
    known = {u.email.lower() for u in users}
    extra = [e for e in (budget.extra_emails or []) if e and "@" in e and e.lower() not in known]
    if not users and not extra:
        users = notifications.recipients(session, org_id, FALLBACK_ROLES)
    return users, extra


def _alert(session: Session, budget: Budget, org: Organisation, product: str, budget_name: str, spend: Spend,
           percent: str, kind: str, value: Decimal, now: datetime, summary: BudgetSummary) -> None:
    try:
        with session.begin_nested():
            session.add(BudgetAlert(budget_id=budget.id, month=spend.month, percent=percent, kind=kind,
                                    spent=round_money(value, spend.currency), created_at=now))
    except IntegrityError:
        return  # alerted before (or by a concurrent run): once per budget month
    summary.alerts += 1
    context = {"budget_name": budget_name, "product": product, "threshold": Decimal(percent),
               "threshold_type": kind, "budget_amount": budget.amount, "spent": round_money(value, spend.currency),
               "currency": spend.currency, "month": spend.month, "subscription_id": budget.subscription_id}
    key = f"budget_threshold:{budget.id}:{spend.month:%Y%m}:{percent}:{kind}"
    users, extra = _recipients(session, budget, org.id)
    for user in users:
        notifications.notify_user(session, user, "budget_threshold", context, org_id=org.id,
                                  dedupe_key=f"{key}:u{user.id}", now=now)
        summary.mails += 1
    for email in extra:
        notifications.enqueue(session, kind="budget_threshold", to_email=email, context=context, locale="ru",
                              org_id=org.id, dedupe_key=f"{key}:e{email.lower()}"[:200], now=now)
        summary.mails += 1


def check_budget(session: Session, budget: Budget, now: datetime, summary: BudgetSummary) -> None:
    """Check one budget for the current (and, early in a month, the previous) month. Flushes only."""
    sub = session.get(Subscription, budget.subscription_id)
    org = session.get(Organisation, budget.org_id)
    if sub is None or org is None:
        return
    plan = session.get(Plan, sub.plan_id)
    product = session.get(Product, plan.product_id) if plan else None
    product_name = product.name if product else (plan.name if plan else "")
    budget_name = sub.name or product_name
    today = clock.local_date(now, org.timezone)
    current = clock.month_start(today)
    months = [(current, False)]
    if now - clock.month_bounds(current, org.timezone)[0] < PREVIOUS_MONTH_GRACE:
        months.insert(0, (clock.prev_month(current), True))
    for month, actual_only in months:
        spend = month_spend(session, budget, org, month, now)
        for percent, kind, value in _crossed(budget, spend, actual_only=actual_only):
            _alert(session, budget, org, product_name, budget_name, spend, percent, kind, value, now, summary)


def check_budgets(session: Session, now: datetime | None = None) -> BudgetSummary:
    """Check every budget; one transaction (committed) per budget. Never touches a subscription."""
    now = now or utcnow()
    summary = BudgetSummary()
    if session.in_transaction():
        session.commit()
    ids = list(session.exec(select(Budget.id).order_by(Budget.id)).all())
    session.commit()
    for budget_id in ids:
        try:
            budget = session.get(Budget, budget_id)
            if budget is None:
                session.commit()
                continue
            check_budget(session, budget, now, summary)
            session.commit()
            summary.budgets += 1
        except RateMissing as exc:
            session.rollback()
            summary.errors.append(f"budget {budget_id}: {exc}")
        except Exception:
            session.rollback()
            raise
    return summary


__all__ = ["BudgetSummary", "Spend", "check_budget", "check_budgets", "month_spend"]
