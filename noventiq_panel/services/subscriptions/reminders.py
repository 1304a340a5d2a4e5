"""Daily reminders. Each mail carries a dedupe key, so it is sent once however often the job runs.

Everything is computed from ``now`` (a run after downtime sends what is due now, once — the nearest
threshold reached, not every missed one):

- **expiry** (``expiry_reminder``): licence subscriptions that will end — auto-renew off or a
  cancellation at term end — 30, 7 and 1 days before ``term_end``; key
  ``expiry_reminder:<sub>:<yyyymmdd of the end>:<days>:u<user>`` (owners and administrators).
- **renewal without funds** (``renewal_reminder``): auto-renewing licence subscriptions 7, 3 and 1
  days before ``term_end`` when the organisation's available funds (balance, plus the credit limit
  of a postpaid organisation) do not cover it — renewals of one organisation are added up in
  date order, so funds that cover the first renewal only leave the later ones reminded; key
  ``renewal_reminder:<sub>:<yyyymmdd>:<days>:u<user>`` (owners, administrators, financial managers).
- **trial ending** (``trial_reminder``): 3 days before ``trial_ends_at``; key
  ``trial_reminder:<sub>:<yyyymmdd>:3:u<user>``.
- **low balance** (``low_balance``): the available funds are below the next 7 days of projected
  spend — renewals and monthly instalments falling due within 7 days plus the pay-as-you-go usage
  of the last 7 days (its daily average × 7) — or below the organisation's own
  ``low_balance_threshold``. Once per episode: the key carries the id of the latest top-up
  (``low_balance:<org>:t<entry id>``), so it is sent again only after a new top-up.
- **payments** (``payment_due`` / ``payment_overdue``): invoices due within 3 days, and invoices
  past due (``services.billing.postpaid.mark_overdue`` stores the overdue status first); keys
  ``payment_due:<payment>`` / ``payment_overdue:<payment>`` (+ recipient suffix); to the user who
  asked for the invoice, else the owners and financial managers.

Days are counted on the organisation's calendar (its time zone). One transaction per
organisation; reminders never change a subscription or move money.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    EntryKind,
    LedgerEntry,
    Membership,
    Notification,
    Organisation,
    Payment,
    PaymentStatus,
    Plan,
    Product,
    ScheduledChange,
    Subscription,
    SubscriptionStatus,
    User,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import postpaid
from noventiq_panel.services.core import clock, ledger, proration, rates
from noventiq_panel.services.core.errors import RateMissing
from noventiq_panel.services.core.money import round_money
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.subscriptions.context import BILLING_ROLES, LIFECYCLE_ROLES, MONEY_ROLES, clamp, seat_price

log = logging.getLogger(__name__)

S = SubscriptionStatus
EXPIRY_DAYS = (30, 7, 1)
RENEWAL_DAYS = (7, 3, 1)
TRIAL_DAYS = (3,)
PAYMENT_DUE_DAYS = 3
LOW_BALANCE_DAYS = 7


@dataclass
class ReminderSummary:
    expiry: int = 0
    renewal: int = 0
    trial: int = 0
    low_balance: int = 0
    payment_due: int = 0
    payment_overdue: int = 0
    marked_overdue: int = 0
    mails: int = 0  # outbox rows added (a dedupe hit adds none)
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"reminders: expiry {self.expiry}, renewal {self.renewal}, trial {self.trial}, "
                f"low balance {self.low_balance}, payment due {self.payment_due}, overdue {self.payment_overdue} "
                f"({self.mails} new mails)")
        if self.errors:
            text += f"; {len(self.errors)} errors: {self.errors[0]}"
        return text


def threshold_reached(end: datetime, now: datetime, days: tuple[int, ...]) -> int | None:
    """The nearest threshold (in days) that ``end`` is within, or None (also when it is past)."""
    if end <= now:
        return None
    reached = [d for d in days if end - now <= timedelta(days=d)]
    return min(reached) if reached else None


def _queued(session: Session, dedupe_key: str) -> int | None:
    return session.exec(select(Notification.id).where(Notification.dedupe_key == dedupe_key)).first()


class _Mailer:
    """Mails of one organisation; counts only new outbox rows."""

    def __init__(self, session: Session, org: Organisation, now: datetime, summary: ReminderSummary):
        self.session, self.org, self.now, self.summary = session, org, now, summary
        self.members: list[tuple[User, str]] | None = None

    def _members(self) -> list[tuple[User, str]]:
        if self.members is None:
            self.members = list(self.session.exec(
                select(User, Membership.role).join(Membership, Membership.user_id == User.id)
                .where(Membership.org_id == self.org.id, Membership.in_force(),  # noqa: E712
                       User.is_active == True).order_by(User.id)).all())  # noqa: E712
        return self.members

    def to_roles(self, roles: tuple[str, ...], kind: str, context: dict, key: str) -> int:
        sent = 0
        for user, role in self._members():
            if role in roles and "@" in (user.email or ""):
                before = _queued(self.session, f"{key}:u{user.id}")
                notifications.notify_user(self.session, user, kind, context, org_id=self.org.id,
                                          dedupe_key=f"{key}:u{user.id}", now=self.now)
                if before is None:
                    sent += 1
        self.summary.mails += sent
        return sent


def _price(session: Session, plan: Plan, org: Organisation, quantity: int, day: date, cache: dict) -> Decimal:
    """Billing-currency price of the next billing period of ``quantity`` seats (rounded)."""
    key = (plan.currency, org.billing_currency, day)
    if key not in cache:
        cache[key] = rates.conversion_rate(session, plan.currency, org.billing_currency, day)
    return round_money(seat_price(plan) * quantity * cache[key], org.billing_currency)


def _renewal_terms(session: Session, sub: Subscription, plans: dict[int, tuple[Plan, Product]]) -> tuple[Plan, int]:
    """Plan and seats of the next term: pending scheduled changes due by the term end apply first."""
    plan = plans[sub.plan_id][0]
    quantity = sub.quantity
    for change in session.exec(
            select(ScheduledChange).where(ScheduledChange.subscription_id == sub.id,
                                          ScheduledChange.status == "pending",
                                          ScheduledChange.effective_at <= sub.term_end)
            .order_by(col(ScheduledChange.effective_at), col(ScheduledChange.id))).all():
        if change.kind == "quantity" and change.new_quantity:
            quantity = change.new_quantity
        elif change.kind == "plan" and change.new_plan_id in plans:
            plan = plans[change.new_plan_id][0]
    return plan, clamp(quantity, plan)


def _subscription_reminders(session: Session, org: Organisation, subs: list[Subscription],
                            plans: dict[int, tuple[Plan, Product]], mailer: _Mailer, now: datetime,
                            summary: ReminderSummary, rate_cache: dict) -> None:
    tz = org.timezone
    today = clock.local_date(now, tz)
    funds = ledger.available(session, org)
    balance = ledger.balance(session, org.id)
    renewing: list[tuple[Subscription, int, Decimal]] = []
    for sub in sorted(subs, key=lambda s: (s.term_end or s.trial_ends_at or now, s.id)):
        plan, product = plans[sub.plan_id]
        if sub.status == S.TRIAL:
            if sub.trial_ends_at is None:
                continue
            days = threshold_reached(sub.trial_ends_at, now, TRIAL_DAYS)
            if days is None:
                continue
            end_day = clock.local_date(sub.trial_ends_at, tz)
            context = {"product": product.name, "trial_ends_on": end_day, "converts": bool(sub.trial_convert),
                       "subscription_id": sub.id}
            target = next((p for p, _pr in plans.values() if p.code == plan.trial_converts_to), None)
            if sub.trial_convert and target is not None:
                try:
                    context["amount"] = _price(session, target, org, clamp(sub.quantity, target), today, rate_cache)
                    context["currency"] = org.billing_currency
                except RateMissing as exc:
                    summary.errors.append(f"subscription {sub.id}: {exc}")
            summary.trial += bool(mailer.to_roles(LIFECYCLE_ROLES, "trial_reminder", context,
                                                  f"trial_reminder:{sub.id}:{end_day:%Y%m%d}:{days}"))
            continue
        if plan.billing_type != "license" or sub.status != S.ACTIVE or sub.term_end is None:
            continue
        end_day = clock.local_date(sub.term_end, tz)
        if not sub.auto_renew or sub.cancel_at_term_end:
            days = threshold_reached(sub.term_end, now, EXPIRY_DAYS)
            if days is not None:
                summary.expiry += bool(mailer.to_roles(
                    LIFECYCLE_ROLES, "expiry_reminder",
                    {"product": product.name, "expires_on": end_day, "subscription_id": sub.id},
                    f"expiry_reminder:{sub.id}:{end_day:%Y%m%d}:{days}"))
            continue
        days = threshold_reached(sub.term_end, now, RENEWAL_DAYS)
        if days is None:
            continue
        try:
            next_plan, quantity = _renewal_terms(session, sub, plans)
            amount = _price(session, next_plan, org, quantity, today, rate_cache)
        except RateMissing as exc:
            summary.errors.append(f"subscription {sub.id}: {exc}")
            continue
        renewing.append((sub, days, amount))
    needed = Decimal("0.00")
    for sub, days, amount in renewing:  # in term-end order: the funds go to the earliest renewals
        needed += amount
        if needed <= funds:
            continue
        product = plans[sub.plan_id][1]
        end_day = clock.local_date(sub.term_end, tz)
        summary.renewal += bool(mailer.to_roles(
            MONEY_ROLES, "renewal_reminder",
            {"product": product.name, "renew_on": end_day, "amount": amount, "currency": org.billing_currency,
             "balance": balance, "subscription_id": sub.id},
            f"renewal_reminder:{sub.id}:{end_day:%Y%m%d}:{days}"))


def projected_spend(session: Session, org: Organisation, now: datetime, subs: list[Subscription],
                    plans: dict[int, tuple[Plan, Product]], rate_cache: dict,
                    days: int = LOW_BALANCE_DAYS) -> Decimal:
    """Spend expected in the next ``days`` days: renewals and instalments due, plus pay-as-you-go
    usage at the average of the last ``days`` days."""
    horizon = now + timedelta(days=days)
    today = clock.local_date(now, org.timezone)
    total = Decimal("0.00")
    for sub in subs:
        plan = plans[sub.plan_id][0]
        if plan.billing_type != "license" or sub.status != S.ACTIVE or sub.term_end is None:
            continue
        try:
            if sub.auto_renew and not sub.cancel_at_term_end and now < sub.term_end <= horizon:
                next_plan, quantity = _renewal_terms(session, sub, plans)
                total += _price(session, next_plan, org, quantity, today, rate_cache)
            if (proration.is_billed_monthly(plan.term, plan.billing_frequency) and sub.next_billing_at is not None
                    and now < sub.next_billing_at <= horizon and sub.next_billing_at < sub.term_end):
                total += _price(session, plan, org, sub.quantity, today, rate_cache)
        except RateMissing:
            continue
    usage = session.exec(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.org_id == org.id, LedgerEntry.kind == EntryKind.USAGE,
            LedgerEntry.occurred_at >= now - timedelta(days=days), LedgerEntry.occurred_at < now)
    ).one()
    if usage is not None and usage < 0:
        total += -usage  # the last `days` days' usage = its daily average × `days`
    return total


def _low_balance(session: Session, org: Organisation, subs: list[Subscription],
                 plans: dict[int, tuple[Plan, Product]], mailer: _Mailer, now: datetime,
                 summary: ReminderSummary, rate_cache: dict) -> None:
    threshold = projected_spend(session, org, now, subs, plans, rate_cache)
    if org.low_balance_threshold is not None:
        threshold = max(threshold, org.low_balance_threshold)
    if threshold <= 0:
        return
    funds = ledger.available(session, org)
    if funds >= threshold:
        return
    last_topup = session.exec(
        select(func.max(LedgerEntry.id)).where(LedgerEntry.org_id == org.id, LedgerEntry.kind == EntryKind.TOPUP)
    ).one() or 0
    summary.low_balance += bool(mailer.to_roles(
        BILLING_ROLES, "low_balance",
        {"balance": ledger.balance(session, org.id), "threshold": round_money(threshold, org.billing_currency),
         "currency": org.billing_currency},
        f"low_balance:{org.id}:t{last_topup}"))


def _payment_reminders(session: Session, org: Organisation, mailer: _Mailer, now: datetime,
                       summary: ReminderSummary) -> None:
    today = clock.local_date(now, org.timezone)
    payments = session.exec(
        select(Payment).where(Payment.org_id == org.id,
                              col(Payment.status).in_([PaymentStatus.PENDING, PaymentStatus.OVERDUE]),
                              col(Payment.due_date).is_not(None),
                              col(Payment.due_date) <= today + timedelta(days=PAYMENT_DUE_DAYS))
        .order_by(col(Payment.id))).all()
    for payment in payments:
        overdue = payment.status == PaymentStatus.OVERDUE or payment.due_date < today
        kind = "payment_overdue" if overdue else "payment_due"
        context = {"invoice_number": payment.number, "amount": payment.amount - (payment.paid_amount or 0),
                   "currency": payment.currency, "due_date": payment.due_date}
        key = f"{kind}:{payment.id}"
        requester = session.get(User, payment.created_by) if payment.created_by else None
        member = requester is not None and requester.is_active and session.exec(
            select(Membership.id).where(Membership.user_id == requester.id, Membership.org_id == org.id,
                                        Membership.in_force())).first() is not None  # noqa: E712
        if member:
            sent = _queued(session, f"{key}:u{requester.id}") is None
            notifications.notify_user(session, requester, kind, context, org_id=org.id,
                                      dedupe_key=f"{key}:u{requester.id}", now=now)
            summary.mails += sent
        else:
            sent = bool(mailer.to_roles(BILLING_ROLES, kind, context, key))
        if overdue:
            summary.payment_overdue += sent
        else:
            summary.payment_due += sent


def send_reminders(session: Session, now: datetime | None = None) -> ReminderSummary:
    """All reminders due at ``now``; one committed transaction per organisation."""
    now = clock.aware(now) if now else utcnow()
    summary = ReminderSummary()
    if session.in_transaction():
        session.commit()
    summary.marked_overdue = len(postpaid.mark_overdue(session, now))
    plans = {p.id: (p, pr) for p, pr in session.exec(
        select(Plan, Product).join(Product, Product.id == Plan.product_id)).all()}
    horizon = now + timedelta(days=max(EXPIRY_DAYS + RENEWAL_DAYS + TRIAL_DAYS))
    org_ids = list(session.exec(select(Organisation.id).where(Organisation.is_active == True)  # noqa: E712
                                .order_by(Organisation.id)).all())
    session.commit()
    rate_cache: dict = {}
    for org_id in org_ids:
        try:
            org = session.get(Organisation, org_id)
            subs = list(session.exec(
                select(Subscription).where(
                    Subscription.org_id == org_id,
                    or_(and_(Subscription.status == S.ACTIVE, col(Subscription.term_end).is_not(None),
                             col(Subscription.term_end) > now),
                        and_(Subscription.status == S.TRIAL, col(Subscription.trial_ends_at).is_not(None),
                             col(Subscription.trial_ends_at) > now, col(Subscription.trial_ends_at) <= horizon)))
                .order_by(col(Subscription.id))).all())
            mailer = _Mailer(session, org, now, summary)
            soon = [s for s in subs if (s.term_end or s.trial_ends_at) <= horizon]
            _subscription_reminders(session, org, soon, plans, mailer, now, summary, rate_cache)
            _low_balance(session, org, subs, plans, mailer, now, summary, rate_cache)
            _payment_reminders(session, org, mailer, now, summary)
            session.commit()
        except Exception:
            session.rollback()
            raise
    return summary


__all__ = ["ReminderSummary", "projected_spend", "send_reminders", "threshold_reached"]
