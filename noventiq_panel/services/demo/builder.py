"""How the demo writes one organisation's history: ``OrgBuilder``.

Dates are relative to the demo's anchor (its "now"), in the organisation's time zone. Charges are
planned first (``charge``, in the plan's currency, converted at the demo rate of their day) and
posted at the end by ``post_money``, in time order, with the top-ups fitted around them: a prepaid
organisation tops up before a charge would take its balance under a cushion, a postpaid one pays
each month's charges on the 5th of the next. Every row goes through the services' own builders:
ledger entries through ``ledger.entry_row``/``post_many``, audit events through
``audit.event_row``/``record_many``, licence batches through ``licences.add`` (the 168-hour window
of ``proration.window_end``), mail through ``notifications.notify_user``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any, Callable

from sqlmodel import Session, select

from noventiq_panel.models import (
    MicrosoftTenant, NotificationStatus, Organisation, Payment, Plan, Product, ProvisioningTask, Subscription, User,
    Vendor,
)
from noventiq_panel.services.core import audit, clock, ledger, proration, rates
from noventiq_panel.services.core.money import round_money
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.subscriptions import licences

_NS = uuid.UUID("5d1c6f0e-3c1b-4d8e-9a57-6b0f3c2a9e11")  # namespace of the demo's stable GUIDs


def hour_floor(dt: datetime) -> datetime:
    return clock.aware(dt).replace(minute=0, second=0, microsecond=0)


def guid(*parts: str) -> str:
    """A stable GUID of the demo (a subscription's vendor reference)."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


def q6(value: Decimal) -> Decimal:
    return Decimal(value).quantize(Decimal("0.000001"))


def at_local(day: date, tz: str, hour: int = 10, minute: int = 0) -> datetime:
    """A moment on a local day (working hours make the history look real)."""
    return clock.local_midnight(day, tz) + timedelta(hours=hour, minutes=minute)


def local_day_text(dt: datetime, tz: str, inclusive_end: bool = False) -> str:
    """The local day of ``dt`` as dd.mm.yyyy (the day before for the exclusive end of a period)."""
    day = clock.local_date(dt, tz)
    if inclusive_end:
        day -= timedelta(days=1)
    return day.strftime("%d.%m.%Y")


def marker_key(org_key: str) -> str:
    """The key of an organisation's first top-up, which is posted with its whole history and keeps
    the demo's anchor in its ``meta``."""
    return f"demo:{org_key}:topup:001"


def mail(session: Session, user: User, org: Organisation, kind: str, context: dict, at: datetime, key: str,
         *, sent: bool = True) -> None:
    """Queue a mail of ``kind`` to ``user`` as of ``at`` (dedupe key ``demo:<key>``); ``sent``
    marks it sent a minute later, as the outbox job would."""
    row = notifications.notify_user(session, user, kind, context, org_id=org.id, dedupe_key=f"demo:{key}", now=at)
    if sent and row.status == NotificationStatus.QUEUED and row.sent_at is None:
        row.status, row.sent_at, row.attempts = NotificationStatus.SENT, at + timedelta(minutes=1), 1
        session.add(row)


@dataclass
class PlannedEntry:
    """One planned ledger entry (the amount in the organisation's currency, unrounded)."""

    at: datetime
    kind: str
    amount: Decimal
    key: str
    description: str
    fields: dict[str, Any] = field(default_factory=dict)
    post: bool = True  # False: only fitted into the top-ups (services.usage.rating posts the real entry)


class OrgBuilder:
    """Builds one organisation's history relative to ``anchor``."""

    def __init__(self, session: Session, key: str, org: Organisation, anchor: datetime,
                 users: dict[str, User]):
        self.session = session
        self.key = key
        self.org = org
        self.anchor = anchor
        self.tz = org.timezone
        self.today = clock.local_date(anchor, self.tz)
        self.users = users
        self.plans = {p.code: p for p in session.exec(select(Plan)).all()}
        self.products = {p.id: p for p in session.exec(select(Product)).all()}
        self.money: list[PlannedEntry] = []
        self.events: list[dict[str, Any]] = []
        self.subs: dict[str, Subscription] = {}
        self.after_money: list[Callable[[], None]] = []
        self.rate_cache: dict[tuple[str, date], Decimal] = {}

    # --- dates ---------------------------------------------------------------------------------
    def day(self, offset: int) -> date:
        return self.today + timedelta(days=offset)

    def midnight(self, offset: int) -> datetime:
        return clock.local_midnight(self.day(offset), self.tz)

    def at(self, offset: int, hour: int = 10, minute: int = 0) -> datetime:
        return at_local(self.day(offset), self.tz, hour, minute)

    # --- conversion ----------------------------------------------------------------------------
    def rate(self, currency: str, day: date) -> Decimal:
        if currency == self.org.billing_currency:
            return Decimal(1)
        k = (currency, day)
        if k not in self.rate_cache:
            self.rate_cache[k] = rates.conversion_rate(self.session, currency, self.org.billing_currency, day)
        return self.rate_cache[k]

    def charge(self, sub: Subscription, plan: Plan, at: datetime, source_amount: Decimal, *, key: str,
               description: str, kind: str = "charge", quantity: Decimal | int | None = None,
               unit_price: Decimal | None = None, period: tuple[datetime, datetime] | None = None,
               meta: dict | None = None, post: bool = True) -> None:
        """Plan a charge (``source_amount`` > 0 in the plan's currency); refunds pass kind=refund."""
        fx_day = clock.local_date(at, self.tz)
        rate = self.rate(plan.currency, fx_day)
        sign = Decimal(1) if kind == "refund" else Decimal(-1)
        fields: dict[str, Any] = dict(subscription_id=sub.id, meta=meta or {})
        if quantity is not None:
            fields["quantity"] = q6(Decimal(quantity))
        if unit_price is not None:
            fields["unit_price"] = q6(unit_price)
        if plan.currency != self.org.billing_currency:
            fields.update(source_amount=q6(source_amount), source_currency=plan.currency, fx_rate=rate,
                          fx_date=fx_day)
        if period is not None:
            fields.update(period_start=period[0], period_end=period[1])
        self.money.append(PlannedEntry(at, kind, sign * source_amount * rate, key, description, fields, post))

    def pro_rata(self, sub: Subscription, plan: Plan, seats: int, at: datetime) -> tuple[Decimal, int, int]:
        """(what ``seats`` of ``plan`` cost from the day of ``at`` to the end of the subscription's
        current billing period, the days remaining, the days of the period)."""
        period = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, at,
                                          self.tz)
        remaining, total = proration.days_remaining(period.start, period.end, at, self.tz)
        amount = proration.pro_rata_charge(plan.price, plan.term, plan.billing_frequency, seats, period, at, self.tz)
        return amount, remaining, total

    # --- subscriptions -------------------------------------------------------------------------
    def product_name(self, plan: Plan) -> str:
        return self.products[plan.product_id].name

    def subscription(self, sub_key: str, plan_code: str, *, status: str, quantity: int, term_start=None,
                     term_end=None, name: str | None = None, **kw) -> Subscription:
        plan = self.plans[plan_code]
        sub = Subscription(
            org_id=self.org.id, plan_id=plan.id, name=name or self.product_name(plan), status=status,
            quantity=quantity, term_start=term_start, term_end=term_end,
            vendor_ref=kw.pop("vendor_ref", guid(self.key, sub_key)),
            created_at=kw.pop("created_at", term_start or self.anchor),
            activated_at=kw.pop("activated_at", term_start if status != "pending" else None), **kw)
        self.session.add(sub)
        self.session.flush()
        self.subs[sub_key] = sub
        return sub

    def provisioning_order(self, sub: Subscription, *, requested_at: datetime, user: str = "owner",
                           done_at: datetime | None = None) -> ProvisioningTask:
        """The provisioning task of ``sub``'s order (its vendor has no API): open, its first period's
        price reserved at the rate of the order day; or completed by an operator at ``done_at``."""
        plan = self.session.get(Plan, sub.plan_id)
        product = self.products[plan.product_id]
        vendor = self.session.get(Vendor, product.vendor_id)
        day = clock.local_date(requested_at, self.tz)
        plan_amount = q6(plan.price * sub.quantity)
        task = ProvisioningTask(
            org_id=self.org.id, subscription_id=sub.id, vendor_code=vendor.code, action="order",
            params={"plan": plan.code, "quantity": sub.quantity, "trial": False},
            reserved=round_money(plan_amount * self.rate(plan.currency, day), self.org.billing_currency),
            currency=self.org.billing_currency, plan_amount=plan_amount, fx_date=day, requested_at=requested_at,
            requested_by=self.users[user].id)
        if done_at is not None:
            task.status, task.done_at, task.done_by, task.vendor_ref = "completed", done_at, "Оператор Noventiq", \
                sub.vendor_ref
        self.session.add(task)
        self.session.flush()
        return task

    def microsoft_tenant(self, domain: str, at: datetime, user: str = "owner") -> None:
        """The organisation's Microsoft tenant, linked by ``user`` who accepted the Microsoft
        Customer Agreement then, and confirmed by the operator an hour later (its id is derived
        from the domain)."""
        who = self.users[user]
        tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, domain))
        confirmed = at + timedelta(hours=1)
        self.session.add(MicrosoftTenant(org_id=self.org.id, domain=domain, tenant_id=tenant_id, linked_by=who.id,
                                         linked_at=at, verified_at=confirmed, agreement_name=who.name or who.email,
                                         agreement_email=who.email, agreement_accepted_at=at,
                                         agreement_confirmed_at=confirmed))
        self.audit("microsoft.tenant_linked", at, user=user, domain=domain, tenant_id="", verified=False,
                   agreement_name=who.name or who.email, agreement_email=who.email)
        self.audit("microsoft.tenant_confirmed", confirmed, user=None, domain=domain, tenant_id=tenant_id,
                   operator="Оператор Noventiq")

    def sub_key(self, sub: Subscription) -> str:
        return next(k for k, s in self.subs.items() if s is sub)

    def batch(self, sub: Subscription, quantity: int, added_at: datetime, source: str = "purchase") -> None:
        plan = self.session.get(Plan, sub.plan_id)
        licences.add(self.session, sub.id, quantity, added_at, plan.cancellation_window_hours, source)

    def audit(self, action: str, at: datetime, *, user: str | None = "owner", sub: Subscription | None = None,
              **details) -> None:
        """An audit event by ``user`` (a role of the demo's users; None: the system), written with the money."""
        self.events.append(audit.event_row(org_id=self.org.id, user_id=self.users[user].id if user else None,
                                           action=action, subscription_id=sub.id if sub else None, created_at=at,
                                           **details))

    def licence_history(self, sub_key: str, plan_code: str, *, quantity: int, first_start: datetime,
                        terms: int, status: str = "active", auto_renew: bool = True, first_quantity=None,
                        **kw) -> Subscription:
        """A licence subscription renewed ``terms - 1`` times since ``first_start``; every term
        (or monthly instalment) charged at its start."""
        plan = self.plans[plan_code]
        starts, start = [], first_start
        for _ in range(terms):
            end = proration.term_end(start, plan.term, self.tz, anchor_day=clock.local_date(first_start, self.tz).day)
            starts.append((start, end))
            start = end
        term_start, term_end = starts[-1]
        monthly = proration.is_billed_monthly(plan.term, plan.billing_frequency)
        next_billing = None
        if monthly:
            period = proration.billing_period(term_start, term_end, plan.term, plan.billing_frequency,
                                              min(self.anchor, term_end - timedelta(seconds=1)), self.tz)
            next_billing = proration.next_period_start(period, term_end) if status in ("active",) else None
        sub = self.subscription(sub_key, plan_code, status=status, quantity=quantity, term_start=term_start,
                                term_end=term_end, auto_renew=auto_renew, next_billing_at=next_billing,
                                created_at=first_start, activated_at=first_start, **kw)
        product = self.product_name(plan)
        seats = first_quantity or quantity
        unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
        for n, (t_start, t_end) in enumerate(starts, 1):
            if monthly:
                p_start = t_start
                while p_start < min(self.anchor, t_end):
                    period = proration.billing_period(t_start, t_end, plan.term, plan.billing_frequency, p_start,
                                                      self.tz)
                    self.charge(sub, plan, p_start + timedelta(minutes=5), unit * seats, quantity=seats,
                                unit_price=unit, key=f"demo:{self.key}:{sub_key}:t{n}:p{period.index + 1:02d}",
                                description=f"{product}: {seats} лиц., ежемесячный платёж {period.index + 1}/12 "
                                            f"({local_day_text(period.start, self.tz)}–"
                                            f"{local_day_text(period.end, self.tz, True)})",
                                period=(period.start, period.end), meta={"action": (
                                    "instalment" if period.index else "order" if n == 1 else "renewal")})
                    p_start = period.end
            else:
                self.charge(sub, plan, t_start + timedelta(minutes=5), unit * seats, quantity=seats,
                            unit_price=unit, key=f"demo:{self.key}:{sub_key}:t{n}",
                            description=f"{product}: {seats} лиц., {'продление' if n > 1 else 'покупка'} "
                                        f"на период {local_day_text(t_start, self.tz)}–"
                                        f"{local_day_text(t_end, self.tz, True)}",
                            period=(t_start, t_end), meta={"action": "renewal" if n > 1 else "order"})
            if n == 1:
                self.audit("subscription.ordered", t_start, sub=sub, plan=plan_code, quantity=seats)
            else:
                self.audit("subscription.renewed", t_start, user=None, sub=sub, quantity=seats)
        if status in ("active", "suspended"):
            self.batch(sub, seats, term_start, "purchase" if terms == 1 else "renewal")
        return sub

    # --- the ledger ----------------------------------------------------------------------------
    def _topup(self, n: int, at: datetime, amount: Decimal) -> PlannedEntry:
        """The ``n``-th top-up: a paid bank transfer (the one payment method there is) and its entry."""
        number = f"DEMO-{self.key[:3].upper()}-{n:04d}"
        payment = self.session.exec(select(Payment).where(Payment.number == number)).first()
        if payment is None:
            payment = Payment(org_id=self.org.id, number=number, kind="topup", method="bank_transfer", amount=amount,
                              currency=self.org.billing_currency, status="paid", purpose="Пополнение баланса",
                              due_date=clock.local_date(at, self.tz), paid_amount=amount,
                              created_at=at - timedelta(hours=20), paid_at=at, created_by=self.users["owner"].id)
            self.session.add(payment)
            self.session.flush()
        meta = {"demo_anchor": self.anchor.isoformat()} if n == 1 else {}
        return PlannedEntry(at, "topup", amount, f"demo:{self.key}:topup:{n:03d}",
                            f"Пополнение баланса, платёж {number}", {"payment_id": payment.id, "meta": meta})

    def _with_topups(self, plan: list[PlannedEntry], cushion: Decimal, step: Decimal, final_min: Decimal,
                     postpaid: bool) -> list[PlannedEntry]:
        """The planned entries with the top-ups that pay for them."""
        entries: list[PlannedEntry] = []
        balance = Decimal(0)
        n_topup = 0

        def topup(at: datetime, amount: Decimal) -> None:
            nonlocal balance, n_topup
            n_topup += 1
            entries.append(self._topup(n_topup, at, amount))
            balance += amount

        if postpaid:
            by_month: dict[date, Decimal] = {}
            for m in plan:
                month = clock.local_date(m.at, self.tz).replace(day=1)
                by_month[month] = by_month.get(month, Decimal(0)) + m.amount
            entries.extend(plan)
            for month in sorted(by_month):
                pay_day = clock.next_month(month).replace(day=5)
                if pay_day < self.today and by_month[month] < 0:
                    topup(at_local(pay_day, self.tz, 11), (-by_month[month]).quantize(Decimal("0.01")))
            return entries
        for m in plan:
            if balance + m.amount < cushion:
                need = cushion - (balance + m.amount)
                topup(m.at - timedelta(hours=22), (need / step).to_integral_value(rounding=ROUND_CEILING) * step + step)
            entries.append(m)
            balance += m.amount
        if balance < final_min:
            topup(self.at(-2, 15), ((final_min - balance) / step).to_integral_value(rounding=ROUND_CEILING) * step)
        return entries

    def post_money(self, *, cushion: Decimal, step: Decimal, final_min: Decimal, postpaid: bool = False) -> None:
        """Post the planned charges in time order with top-ups fitted around them: a prepaid
        organisation tops up before a charge would take the balance under ``cushion``; a postpaid
        one pays each month's charges on the 5th of the next. Then the audit events, and the
        ``after_money`` steps (which read the ledger)."""
        plan = sorted(self.money, key=lambda m: (m.at, m.key))
        entries = self._with_topups(plan, cushion, step, final_min, postpaid)
        ledger.post_many(self.session, [
            ledger.entry_row(org_id=self.org.id, kind=m.kind, amount=m.amount, currency=self.org.billing_currency,
                             idempotency_key=m.key, description=m.description, occurred_at=m.at, created_at=m.at,
                             **m.fields)
            for m in sorted(entries, key=lambda m: (m.at, m.kind != "topup", m.key)) if m.post])
        audit.record_many(self.session, self.events)
        self.events = []
        self.session.flush()
        for fn in self.after_money:
            fn()
