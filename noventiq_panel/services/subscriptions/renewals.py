"""The subscription lifecycle run by the scheduler: renewals, monthly instalments, trial ends, reminders.

Each function is ``f(session, now=None, ...) -> summary dict``; it commits once per chunk of
subscriptions and is safe to run twice, concurrently, or again after a crash half-way:

- every charge carries a key per subscription and period (``renewal:<sub>:<yyyymmdd of the new
  term's first local day>``, ``instalment:<sub>:<yyyymmdd>``, ``trial:<sub>``), and a key already
  in the ledger is never charged again;
- a chunk first locks its organisations (PostgreSQL ``SELECT ... FOR UPDATE`` in id order, SQLite's
  ``BEGIN IMMEDIATE`` write lock), then reads its subscriptions again: a second runner waiting for
  the lock finds them renewed and skips them;
- mail goes to the outbox in the same transaction, with dedupe keys where a run may repeat it.

Renewal (``renew_due``), for a licence subscription whose ``term_end <= now``:

1. pending scheduled changes that are due apply first (decrease, downgrade, cancellation);
2. ``cancel_at_term_end`` → cancelled; auto-renew off → expired (at the term end);
3. auto-renew on and the balance (plus the credit limit of postpaid organisations) covers the next
   billing period (the whole term when billed upfront, the first instalment of a yearly plan billed
   monthly) → charged; the new term starts where the old one ended; all seats get a new licence
   batch (source ``renewal``) and so a new cancellation window;
4. no funds → ``grace_until = term_end + settings.renewal_grace_days`` (the subscription keeps working,
   a ``renewal_failed_funds`` mail); still unpaid when the grace period ends → suspended (``suspended``
   mail, ``grace_until`` kept as the mark of a suspension for non-payment); another grace period later
   → expired. While suspended for non-payment each run retries: once the balance covers it, a new
   term starts on that day (the suspended days are not charged).

A subscription suspended by the customer is never charged; at its term end it expires only if
auto-renew is off (or is cancelled if so scheduled), otherwise it waits for ``resume``.

10 000 due subscriptions renew in one run in a few seconds: chunks of 500 are read with a handful
of queries (organisations, subscriptions as plain rows, balances, scheduled changes, recipients,
existing keys); what a chunk writes goes in bulk (the changed subscription columns in one
executemany, ledger entries, batches, audit events and mails in one insert each, COPY on
PostgreSQL), mails are rendered at the end, each recipient's once, and each chunk commits once.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, func, or_, update
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.db import BulkInsert
from noventiq_panel.models import (
    AuditEvent,
    BillingMode,
    LedgerEntry,
    LicenceBatch,
    Membership,
    Notification,
    NotificationStatus,
    Organisation,
    Plan,
    Product,
    ScheduledChange,
    Subscription,
    SubscriptionStatus,
    User,
    Vendor,
)
from noventiq_panel.i18n import format as fmt
from noventiq_panel.models.subscription import ChangeKind
from noventiq_panel.services.core import clock, rates
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core import proration
from noventiq_panel.services.subscriptions import provisioning
from noventiq_panel.services.core.errors import DomainError
from noventiq_panel.services.core.money import round_money
from noventiq_panel.services.subscriptions.subscriptions import LIFECYCLE_ROLES, MONEY_ROLES, anchor_day

S = SubscriptionStatus
CHUNK = 500
_Q6 = Decimal("0.000001")


def _now(now: datetime | None) -> datetime:
    return clock.aware(now) if now else clock.utcnow()


def _ymd(moment: datetime, tz: str) -> str:
    return f"{clock.local_date(moment, tz):%Y%m%d}"


def _last_day(end: datetime, tz: str) -> date:
    """The last local day of a period ending (exclusively) at ``end`` — "paid through"."""
    return clock.local_date(end, tz) - timedelta(days=1)


@dataclass
class Summary:
    renewed: int = 0
    instalments: int = 0
    reactivated: int = 0
    grace_started: int = 0
    waiting: int = 0
    suspended: int = 0
    expired: int = 0
    cancelled: int = 0
    trials_converted: int = 0
    trials_expired: int = 0
    changes_applied: int = 0
    reminders: int = 0
    skipped: int = 0
    charged: dict = field(default_factory=lambda: defaultdict(Decimal))
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("charged", "errors")}
        data["charged"] = {c: str(a) for c, a in self.charged.items()}
        data["errors"] = list(self.errors)
        return data


class _Sub(SimpleNamespace):
    """A subscription of a chunk: its columns as plain attributes, read with Core rather than as an
    ORM object (loading, tracking and flushing thousands of those cost more than renewing them).
    The lifecycle code below changes the attributes; ``_Chunk.write`` stores the changed columns."""


class _Chunk:
    """What one chunk needs, loaded with a few queries: organisations (locked), subscriptions, plans,
    balances, recipients, existing ledger keys; collects the subscription changes, ledger entries,
    batches, audit events and mails, written in bulk by :meth:`write`."""

    def __init__(self, session: Session, first_id: int, last_id: int, org_ids: list[int], now: datetime,
                 due_clause, summary: Summary, plans: dict[int, tuple[Plan, Product, Vendor]]):
        self.session, self.now, self.summary, self.plans = session, now, summary, plans
        # Lock in id order (no deadlock between runners), then read the subscriptions again: those of
        # the id range still due (a second runner that waited for the lock finds them renewed), and
        # only of the locked organisations. By range: 500 ids cost more to send than the rows.
        self.orgs: dict[int, Organisation] = {
            o.id: o for o in session.exec(
                select(Organisation).where(col(Organisation.id).in_(org_ids)).order_by(Organisation.id)
                .with_for_update().execution_options(populate_existing=True)).all()}
        table = Subscription.__table__
        self.loaded: dict[int, dict] = {
            row["id"]: dict(row) for row in session.connection().execute(
                select(table).where(table.c.id.between(first_id, last_id), table.c.org_id.in_(org_ids), due_clause)
                .order_by(table.c.id)).mappings()}
        self.subs = [_Sub(**row) for row in self.loaded.values()]
        sums = dict(session.exec(
            select(LedgerEntry.org_id, func.sum(LedgerEntry.amount)).where(col(LedgerEntry.org_id).in_(org_ids))
            .group_by(LedgerEntry.org_id)).all())
        self.available: dict[int, Decimal] = {}
        for org_id, org in self.orgs.items():
            funds = sums.get(org_id) or Decimal("0.00")
            if org.billing_mode == BillingMode.POSTPAID:
                funds += org.credit_limit
            self.available[org_id] = funds
        self.changes: dict[int, list[ScheduledChange]] = defaultdict(list)
        for change in session.exec(
                select(ScheduledChange).where(col(ScheduledChange.subscription_id).between(first_id, last_id),
                                              ScheduledChange.status == "pending", ScheduledChange.effective_at <= now)
                .order_by(ScheduledChange.id)).all():
            if change.subscription_id in self.loaded:
                self.changes[change.subscription_id].append(change)
        self.recipients: dict[int, list[tuple[User, str]]] = defaultdict(list)
        for user, membership in session.exec(
                select(User, Membership).join(Membership, Membership.user_id == User.id)
                .where(col(Membership.org_id).in_(org_ids), Membership.in_force(),  # noqa: E712
                       User.is_active == True).order_by(User.id)).all():  # noqa: E712
            self.recipients[membership.org_id].append((user, membership.role))
        self.rates: dict[tuple[str, str, date], Decimal] = {}
        self.entries: list[dict] = []
        self.audits: list[dict] = []
        self.mails: list[tuple[dict, dict]] = []  # (outbox row without the rendered texts, context)
        self.mail_keys: set[str] = set()
        self.keys: set[str] = set()
        self.existing_keys: set[str] = set()
        self.renewed_ids: list[int] = []
        self.batches: list[dict] = []

    # -- reading helpers --
    def org(self, sub: _Sub) -> Organisation:
        return self.orgs[sub.org_id]

    def plan(self, plan_id: int) -> tuple[Plan, Product, Vendor]:
        return self.plans[plan_id]

    def prefetch_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            self.existing_keys.update(self.session.exec(
                select(LedgerEntry.idempotency_key).where(col(LedgerEntry.idempotency_key).in_(part))).all())

    def rate(self, plan: Plan, org: Organisation) -> tuple[Decimal, date]:
        day = clock.local_date(self.now, org.timezone)
        k = (plan.currency, org.billing_currency, day)
        if k not in self.rates:
            self.rates[k] = rates.conversion_rate(self.session, plan.currency, org.billing_currency, day)
        return self.rates[k], day

    def price(self, plan: Plan, org: Organisation, plan_amount: Decimal) -> tuple[Decimal, Decimal, date]:
        """(rounded amount in org currency, rate, rate day); RateMissing propagates."""
        rate, day = self.rate(plan, org)
        return round_money(Decimal(plan_amount) * rate, org.billing_currency), rate, day

    # -- writing helpers --
    def charge(self, sub: _Sub, plan: Plan, product: Product, *, plan_amount: Decimal, key: str,
               what: str, quantity: int, period: tuple[datetime, datetime], action: str) -> tuple[bool, Decimal]:
        """Charge if the organisation can pay. Returns (done, amount): done is True when charged now
        or already charged under ``key`` before; False when the funds do not cover it."""
        org = self.org(sub)
        amount, rate, day = self.price(plan, org, plan_amount)
        if key in self.existing_keys or key in self.keys:
            return True, Decimal("0.00")
        if amount > self.available[org.id]:
            return False, amount
        if amount > 0:
            self.available[org.id] -= amount
            self.keys.add(key)
            self.entries.append(dict(
                org_id=org.id, kind="charge", amount=-amount, currency=org.billing_currency,
                description=f"{product.name} — {plan.name}: {what}"[:500], subscription_id=sub.id,
                payment_id=None, created_by=None,
                quantity=Decimal(quantity), unit_price=proration.period_price(plan.price, plan.term, plan.billing_frequency).quantize(_Q6),
                source_amount=Decimal(plan_amount).quantize(_Q6), source_currency=plan.currency,
                fx_rate=Decimal(rate).quantize(_Q6), fx_date=day, period_start=period[0], period_end=period[1],
                idempotency_key=key, occurred_at=self.now, created_at=self.now, meta={"action": action}))
            self.summary.charged[org.billing_currency] += amount
        return True, amount

    def audit(self, sub: _Sub, action: str, **details) -> None:
        self.audits.append(dict(org_id=sub.org_id, user_id=None, subscription_id=sub.id, action=action,
                                details={k: (v if isinstance(v, (int, str, bool, type(None))) else str(v))
                                         for k, v in details.items()},
                                created_at=self.now))

    def batch(self, sub: _Sub, plan: Plan, source: str) -> None:
        self.batches.append(dict(subscription_id=sub.id, quantity=sub.quantity, added_at=self.now,
                                 window_ends_at=self.now + timedelta(hours=plan.cancellation_window_hours),
                                 source=source))

    def mail(self, sub: _Sub, kind: str, context: dict, *, roles=LIFECYCLE_ROLES,
             dedupe: str | None = None) -> None:
        """One outbox row per recipient with one of ``roles``, rendered by ``notifications.render``
        exactly as ``notifications.enqueue`` does, but written in one bulk insert per chunk (a
        savepoint and an ORM object per mail would cost more than the renewal itself). Rendered
        by :meth:`write`, once the mails already in the outbox (same dedupe key) are left out."""
        wanted = {str(r) for r in roles}
        org = self.org(sub)
        for user, role in self.recipients.get(sub.org_id, []):
            if role not in wanted or "@" not in (user.email or ""):
                continue
            key = f"{dedupe}:u{user.id}" if dedupe else None
            if key is not None:
                if key in self.mail_keys:
                    continue
                self.mail_keys.add(key)
            ctx = dict(context)
            ctx.setdefault("org_name", org.name)
            ctx.setdefault("tz", org.timezone)
            ctx.setdefault("user_name", user.name)
            locale = fmt.normalize_locale(user.locale)
            self.mails.append((dict(
                org_id=org.id, user_id=user.id, to_email=user.email[:254], kind=kind, locale=locale,
                status=NotificationStatus.QUEUED.value, attempts=0, next_attempt_at=self.now, last_error="",
                dedupe_key=key, created_at=self.now, sent_at=None), ctx))

    def write(self) -> None:
        """Store the changed subscription columns (one executemany per set of columns), zero the old
        batches of renewed subscriptions, insert the new batches, ledger entries and audit events in
        bulk, then the mails not in the outbox yet, each rendered as it goes in. The scheduled
        changes (ORM objects) flush first."""
        session = self.session
        session.flush()
        table = Subscription.__table__
        changed: dict[tuple[str, ...], list[dict]] = defaultdict(list)
        for sub in self.subs:
            before = self.loaded[sub.id]
            values = {name: value for name, value in vars(sub).items() if value != before[name]}
            if values:
                changed[tuple(values)].append({"_id": sub.id, **values})
        for params in changed.values():
            session.connection().execute(update(table).where(table.c.id == bindparam("_id")), params)
        for held in list(session.identity_map.values()):  # ORM copies the caller holds: read again
            if isinstance(held, Subscription) and held.id in self.loaded:
                session.expire(held)
        if self.renewed_ids:
            session.execute(update(LicenceBatch).where(col(LicenceBatch.subscription_id).in_(self.renewed_ids))
                            .values(quantity=0).execution_options(synchronize_session=False))
        for model, rows in ((LicenceBatch, self.batches), (LedgerEntry, self.entries), (AuditEvent, self.audits)):
            _insert_rows(session, model, rows)
        keyed = [row["dedupe_key"] for row, _context in self.mails if row["dedupe_key"]]
        seen: set[str] = set()
        for i in range(0, len(keyed), 500):
            seen.update(session.exec(select(Notification.dedupe_key)
                                     .where(col(Notification.dedupe_key).in_(keyed[i:i + 500]))).all())

        def rendered():  # streamed: PostgreSQL stores the first mails while the next ones render
            for row, context in self.mails:
                if row["dedupe_key"] not in seen:
                    mail = notifications.render(row["kind"], context, row["locale"])
                    yield {**row, "subject": mail.subject, "body_text": mail.text, "body_html": mail.html}

        _insert_rows(session, Notification, rendered())


def _insert_rows(session: Session, model, rows: Iterable[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys, values as the model takes them) in one go."""
    rows = iter(rows)
    first = next(rows, None)
    if first is not None:
        names = list(first)
        BulkInsert(session, model.__table__, names).insert(
            [row[name] for name in names] for row in itertools.chain([first], rows))


def _load_plans(session: Session) -> dict[int, tuple[Plan, Product, Vendor]]:
    rows = session.exec(select(Plan, Product, Vendor).join(Product, Product.id == Plan.product_id)
                        .join(Vendor, Vendor.id == Product.vendor_id)).all()
    return {p.id: (p, pr, v) for p, pr, v in rows}


def _run_chunks(session: Session, due_clause, now: datetime, summary: Summary, process, *,
                chunk_size: int, keys_for) -> None:
    """Walk the subscriptions matching ``due_clause`` in id order (keyset), one transaction per chunk."""
    plans = _load_plans(session)
    last_id = 0
    while True:
        try:
            rows = session.exec(select(Subscription.id, Subscription.org_id)
                                .where(due_clause, Subscription.id > last_id)
                                .order_by(Subscription.id).limit(chunk_size)).all()
            if not rows:
                session.rollback()
                return
            first_id, last_id = rows[0][0], rows[-1][0]
            chunk = _Chunk(session, first_id, last_id, sorted({org for _sub, org in rows}), now, due_clause,
                           summary, plans)
            chunk.prefetch_keys([k for s in chunk.subs for k in keys_for(chunk, s)])
            for sub in chunk.subs:
                try:
                    process(chunk, sub)
                except DomainError as exc:  # e.g. no exchange rate: this one waits, the others go on
                    summary.errors.append(f"subscription {sub.id}: {exc.key}: {exc}")
                    summary.skipped += 1
            chunk.write()
            session.commit()
        except Exception:
            session.rollback()
            raise


def _clamp(quantity: int, plan: Plan) -> int:
    return max(plan.min_quantity, min(quantity, plan.max_quantity))


def _apply_changes(chunk: _Chunk, sub: _Sub) -> None:
    """Apply the subscription's due scheduled changes (decrease, downgrade, cancel) in order."""
    for change in chunk.changes.pop(sub.id, []):
        plan, _product, vendor = chunk.plan(sub.plan_id)
        connector = provisioning.connector_for(vendor.code)
        if change.kind == ChangeKind.QUANTITY and change.new_quantity:
            old = sub.quantity
            sub.quantity = _clamp(change.new_quantity, plan)
            connector.change_quantity(sub.vendor_ref, sub.quantity)
            chunk.audit(sub, "subscription.quantity_changed", old_quantity=old, new_quantity=sub.quantity,
                        scheduled=True, change_id=change.id)
        elif change.kind == ChangeKind.PLAN and change.new_plan_id in chunk.plans:
            new_plan = chunk.plan(change.new_plan_id)[0]
            old_code = plan.code
            sub.plan_id = new_plan.id
            sub.quantity = _clamp(sub.quantity, new_plan)
            connector.change_plan(sub.vendor_ref, new_plan.code)
            chunk.audit(sub, "subscription.plan_changed", from_plan=old_code, to_plan=new_plan.code,
                        direction="downgrade", scheduled=True, change_id=change.id)
        elif change.kind == ChangeKind.CANCEL:
            sub.cancel_at_term_end = True
        change.status = "applied"
        chunk.summary.changes_applied += 1


def _end(chunk: _Chunk, sub: _Sub, status: str, at: datetime) -> None:
    plan, product, vendor = chunk.plan(sub.plan_id)
    provisioning.connector_for(vendor.code).cancel(sub.vendor_ref)
    sub.status = status
    sub.next_billing_at = None
    if status == S.CANCELLED:
        sub.cancelled_at = at
        chunk.summary.cancelled += 1
    else:
        chunk.summary.expired += 1
    for change in chunk.changes.pop(sub.id, []):
        change.status = "cancelled"
    tz = chunk.org(sub).timezone
    chunk.audit(sub, f"subscription.{status}", at=at.isoformat())
    chunk.mail(sub, "expired", {"product": product.name, "expired_on": clock.local_date(at, tz),
                                "subscription_id": sub.id}, dedupe=f"expired:{sub.id}:{_ymd(at, tz)}")


def _new_term(chunk: _Chunk, sub: _Sub, start: datetime, *, key: str, action: str, fresh: bool) -> bool:
    """Charge the first billing period of a term starting at ``start`` and move the subscription
    into it. ``fresh``: the term run restarts (anchor = start). False when the funds do not cover it."""
    org = chunk.org(sub)
    plan, product, _vendor = chunk.plan(sub.plan_id)
    tz = org.timezone
    anchor = clock.local_date(start, tz).day if fresh else anchor_day(sub, tz)
    end = proration.term_end(start, plan.term, tz, anchor)
    period = proration.billing_period(start, end, plan.term, plan.billing_frequency, start, tz, anchor)
    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    done, amount = chunk.charge(sub, plan, product, plan_amount=unit * sub.quantity, key=key,
                                what=f"продление с {clock.local_date(start, tz):%d.%m.%Y}, {sub.quantity} шт.",
                                quantity=sub.quantity, period=(period.start, period.end), action=action)
    if not done:
        return False
    sub.term_start, sub.term_end = start, end
    if fresh:
        sub.activated_at = start
    sub.next_billing_at = proration.next_period_start(period, end)
    sub.grace_until = None
    if sub.status != S.ACTIVE:
        provisioning.connector_for(chunk.plan(sub.plan_id)[2].code).resume(sub.vendor_ref)
        sub.status, sub.suspended_at = S.ACTIVE, None
    chunk.renewed_ids.append(sub.id)
    chunk.batch(sub, plan, "renewal")
    chunk.audit(sub, "subscription.renewed", term_start=start.isoformat(), term_end=end.isoformat(),
                quantity=sub.quantity, amount=str(amount), plan=plan.code)
    chunk.mail(sub, "renewal_done", {"product": product.name, "quantity": sub.quantity, "amount": amount,
                                     "currency": org.billing_currency, "period_end": _last_day(period.end, tz),
                                     "subscription_id": sub.id}, roles=MONEY_ROLES)
    return True


def _unpaid(chunk: _Chunk, sub: _Sub, *, due_from: datetime, amount: Decimal, what: str) -> None:
    """The period starting ``due_from`` could not be paid: grace, then suspension."""
    org = chunk.org(sub)
    tz = org.timezone
    _plan, product, vendor = chunk.plan(sub.plan_id)
    grace = timedelta(days=get_settings().renewal_grace_days)
    started = sub.grace_until is None
    if started:
        sub.grace_until = due_from + grace
        chunk.summary.grace_started += 1
        chunk.audit(sub, "subscription.payment_failed", what=what, amount=str(amount),
                    grace_until=sub.grace_until.isoformat())
        shortfall = max(Decimal("0.00"), amount - chunk.available[org.id])
        chunk.mail(sub, "renewal_failed_funds",
                   {"product": product.name, "amount": amount, "shortfall": shortfall,
                    "currency": org.billing_currency, "suspend_on": clock.local_date(sub.grace_until, tz),
                    "subscription_id": sub.id},
                   roles=MONEY_ROLES, dedupe=f"{what}_failed:{sub.id}:{_ymd(due_from, tz)}")
    if chunk.now >= sub.grace_until and sub.status == S.ACTIVE:
        provisioning.connector_for(vendor.code).suspend(sub.vendor_ref)
        sub.status, sub.suspended_at = S.SUSPENDED, chunk.now
        chunk.summary.suspended += 1
        chunk.audit(sub, "subscription.suspended", reason="funds")
        chunk.mail(sub, "suspended", {"product": product.name, "suspended_on": clock.local_date(chunk.now, tz), "reason": "funds",
                                      "subscription_id": sub.id},
                   roles=MONEY_ROLES, dedupe=f"suspended:{sub.id}:{_ymd(due_from, tz)}")
    elif sub.status == S.ACTIVE and not started:
        chunk.summary.waiting += 1


def _past_expiry(sub: _Sub, now: datetime) -> bool:
    """Suspended for non-payment for a second grace period: it expires."""
    grace = timedelta(days=get_settings().renewal_grace_days)
    return sub.status == S.SUSPENDED and sub.grace_until is not None and now >= sub.grace_until + grace


# --- renewals --------------------------------------------------------------------------------

def _renewal_due_clause(now: datetime):
    term_over = and_(col(Subscription.term_end).is_not(None), col(Subscription.term_end) <= now,
                     Subscription.is_trial == False)  # noqa: E712
    return or_(
        and_(Subscription.status == S.ACTIVE, term_over),
        and_(Subscription.status == S.SUSPENDED, term_over,
             or_(col(Subscription.grace_until).is_not(None), Subscription.auto_renew == False,  # noqa: E712
                 Subscription.cancel_at_term_end == True)),  # noqa: E712
    )


def _renewal_start(chunk: _Chunk, sub: _Sub, tz: str) -> datetime:
    """Where the next term starts: where the last one ended, or today for a subscription suspended
    for non-payment (the suspended days are not charged)."""
    if sub.status == S.SUSPENDED:
        return clock.local_midnight(clock.local_date(chunk.now, tz), tz)
    return sub.term_end


def _renewal_key(sub: _Sub, start: datetime, tz: str) -> str:
    return f"renewal:{sub.id}:{_ymd(start, tz)}"


def _renewal_keys(chunk: _Chunk, sub: _Sub) -> list[str]:
    tz = chunk.org(sub).timezone
    return [_renewal_key(sub, _renewal_start(chunk, sub, tz), tz)]


def _renew_one(chunk: _Chunk, sub: _Sub) -> None:
    now = chunk.now
    org = chunk.org(sub)
    tz = org.timezone
    _apply_changes(chunk, sub)
    plan = chunk.plan(sub.plan_id)[0]
    if plan.billing_type != "license":
        chunk.summary.skipped += 1
        return
    if sub.cancel_at_term_end:
        _end(chunk, sub, S.CANCELLED, sub.term_end)
        return
    if not sub.auto_renew:
        _end(chunk, sub, S.EXPIRED, sub.term_end)
        return
    if sub.status == S.SUSPENDED:
        if sub.grace_until is None:  # suspended by the customer: waits for resume, never charged
            chunk.summary.skipped += 1
            return
        if _past_expiry(sub, now):
            _end(chunk, sub, S.EXPIRED, now)
            return
        start = _renewal_start(chunk, sub, tz)
        if _new_term(chunk, sub, start, key=_renewal_key(sub, start, tz), action="renewal", fresh=True):
            chunk.summary.reactivated += 1
        else:
            chunk.summary.waiting += 1
        return
    start = _renewal_start(chunk, sub, tz)
    if _new_term(chunk, sub, start, key=_renewal_key(sub, start, tz), action="renewal", fresh=False):
        chunk.summary.renewed += 1
        return
    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    amount = chunk.price(plan, org, unit * sub.quantity)[0]
    _unpaid(chunk, sub, due_from=sub.term_end, amount=amount, what="renewal")
    if _past_expiry(sub, now):
        _end(chunk, sub, S.EXPIRED, now)


def renew_due(session: Session, now: datetime | None = None, *, chunk_size: int = CHUNK) -> dict:
    """Renew, expire, cancel or suspend every licence subscription whose term has ended (see the
    module docstring). Returns counts; commits per chunk."""
    now = _now(now)
    summary = Summary()
    clause = _renewal_due_clause(now)
    _run_chunks(session, clause, now, summary, _renew_one, chunk_size=chunk_size, keys_for=_renewal_keys)
    return summary.as_dict()


# --- monthly instalments of yearly plans -----------------------------------------------------

def _instalment_clause(now: datetime, monthly_plan_ids: list[int]):
    return and_(
        col(Subscription.plan_id).in_(monthly_plan_ids or [-1]),
        Subscription.is_trial == False,  # noqa: E712
        col(Subscription.next_billing_at).is_not(None),
        col(Subscription.next_billing_at) <= now,
        col(Subscription.next_billing_at) < col(Subscription.term_end),
        col(Subscription.term_end) > now,
        or_(Subscription.status == S.ACTIVE,
            and_(Subscription.status == S.SUSPENDED, col(Subscription.grace_until).is_not(None))),
    )


def _instalment_keys(chunk: _Chunk, sub: _Sub) -> list[str]:
    tz = chunk.org(sub).timezone
    return [f"instalment:{sub.id}:{_ymd(sub.next_billing_at, tz)}", f"resume:{sub.id}:{_ymd(chunk.now, tz)}"]


def _instalment_one(chunk: _Chunk, sub: _Sub) -> None:
    now = chunk.now
    org = chunk.org(sub)
    tz = org.timezone
    plan, product, vendor = chunk.plan(sub.plan_id)
    if not proration.is_billed_monthly(plan.term, plan.billing_frequency):
        chunk.summary.skipped += 1
        return
    anchor = anchor_day(sub, tz)
    unit = proration.period_price(plan.price, plan.term, plan.billing_frequency)
    if sub.status == S.SUSPENDED:  # for non-payment
        if _past_expiry(sub, now):
            _end(chunk, sub, S.EXPIRED, now)
            return
        period = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency, now, tz, anchor)
        remaining, total = proration.days_remaining(period.start, period.end, now, tz)
        done, amount = chunk.charge(sub, plan, product, plan_amount=proration.prorate(unit * sub.quantity, remaining, total),
                                    key=f"resume:{sub.id}:{_ymd(period.start, tz)}", what="возобновление, остаток месяца",
                                    quantity=sub.quantity, period=(period.start, period.end), action="resume")
        if done:
            provisioning.connector_for(vendor.code).resume(sub.vendor_ref)
            sub.status, sub.suspended_at, sub.grace_until = S.ACTIVE, None, None
            sub.next_billing_at = proration.next_period_start(period, sub.term_end)
            chunk.summary.reactivated += 1
            chunk.audit(sub, "subscription.resumed", reason="paid", amount=str(amount))
        else:
            chunk.summary.waiting += 1
        return
    while sub.next_billing_at is not None and sub.next_billing_at <= now and sub.next_billing_at < sub.term_end:
        period = proration.billing_period(sub.term_start, sub.term_end, plan.term, plan.billing_frequency,
                                          sub.next_billing_at, tz, anchor)
        done, amount = chunk.charge(sub, plan, product, plan_amount=unit * sub.quantity,
                                    key=f"instalment:{sub.id}:{_ymd(period.start, tz)}",
                                    what=f"ежемесячный платёж с {clock.local_date(period.start, tz):%d.%m.%Y}, {sub.quantity} шт.",
                                    quantity=sub.quantity, period=(period.start, period.end), action="instalment")
        if not done:
            _unpaid(chunk, sub, due_from=period.start, amount=amount, what="instalment")
            if _past_expiry(sub, now):
                _end(chunk, sub, S.EXPIRED, now)
            return
        sub.next_billing_at = proration.next_period_start(period, sub.term_end)
        sub.grace_until = None
        chunk.summary.instalments += 1
        chunk.audit(sub, "subscription.instalment", period_start=period.start.isoformat(), amount=str(amount))


def bill_instalments_due(session: Session, now: datetime | None = None, *, chunk_size: int = CHUNK) -> dict:
    """Charge the monthly instalments of yearly plans billed monthly that fell due (catching up on
    missed months one by one, each keyed ``instalment:<sub>:<yyyymmdd>``). Suspended subscriptions
    are not charged; an unpaid instalment follows the same grace → suspension → expiry path as a
    renewal, and a subscription suspended for non-payment is resumed (rest of the month, pro rata)
    once the balance covers it."""
    now = _now(now)
    summary = Summary()
    monthly = list(session.exec(select(Plan.id).where(Plan.term == "year", Plan.billing_frequency == "monthly")).all())
    clause = _instalment_clause(now, monthly)
    _run_chunks(session, clause, now, summary, _instalment_one, chunk_size=chunk_size, keys_for=_instalment_keys)
    return summary.as_dict()


# --- trials ----------------------------------------------------------------------------------

def _trial_clause(now: datetime):
    return and_(Subscription.status == S.TRIAL, col(Subscription.trial_ends_at).is_not(None),
                col(Subscription.trial_ends_at) <= now)


def _trial_keys(chunk: _Chunk, sub: _Sub) -> list[str]:
    return [f"trial:{sub.id}"]


def _trial_one(chunk: _Chunk, sub: _Sub) -> None:
    plan, product, vendor = chunk.plan(sub.plan_id)
    target = None
    if sub.trial_convert and plan.trial_converts_to:
        target = next((p for p, pr, _v in chunk.plans.values()
                       if p.code == plan.trial_converts_to and p.is_active and pr.is_active), None)
    if target is None or target.billing_type != "license":
        sub.is_trial = False
        _end(chunk, sub, S.EXPIRED, sub.trial_ends_at)
        chunk.summary.expired -= 1
        chunk.summary.trials_expired += 1
        return
    org = chunk.org(sub)
    tz = org.timezone
    start = sub.trial_ends_at
    quantity = _clamp(sub.quantity, target)
    end = proration.term_end(start, target.term, tz)
    period = proration.billing_period(start, end, target.term, target.billing_frequency, start, tz)
    unit = proration.period_price(target.price, target.term, target.billing_frequency)
    target_product = chunk.plan(target.id)[1]
    done, amount = chunk.charge(sub, target, target_product, plan_amount=unit * quantity, key=f"trial:{sub.id}",
                                what=f"переход с пробного периода, {quantity} шт.", quantity=quantity,
                                period=(period.start, period.end), action="trial_conversion")
    if not done:
        sub.is_trial = False
        _end(chunk, sub, S.EXPIRED, sub.trial_ends_at)
        chunk.summary.expired -= 1
        chunk.summary.trials_expired += 1
        return
    sub.plan_id, sub.quantity = target.id, quantity
    provisioning.connector_for(chunk.plan(target.id)[2].code).change_plan(sub.vendor_ref, target.code)
    sub.status, sub.is_trial, sub.auto_renew = S.ACTIVE, False, True
    sub.term_start, sub.term_end, sub.activated_at = start, end, start
    sub.next_billing_at = proration.next_period_start(period, end)
    chunk.batch(sub, target, "purchase")
    chunk.summary.trials_converted += 1
    chunk.audit(sub, "subscription.trial_converted", plan=target.code, quantity=sub.quantity, amount=str(amount))
    chunk.mail(sub, "renewal_done", {"product": target_product.name, "quantity": sub.quantity, "amount": amount,
                                     "currency": org.billing_currency, "period_end": _last_day(period.end, tz),
                                     "subscription_id": sub.id}, roles=MONEY_ROLES)


def end_trials(session: Session, now: datetime | None = None, *, chunk_size: int = CHUNK) -> dict:
    """Trials whose time is up: converted to ``plan.trial_converts_to`` when the customer chose so
    (``trial_convert``) and the balance covers the first period (key ``trial:<sub>``), else expired."""
    now = _now(now)
    summary = Summary()
    clause = _trial_clause(now)
    _run_chunks(session, clause, now, summary, _trial_one, chunk_size=chunk_size, keys_for=_trial_keys)
    return summary.as_dict()


# --- reminders -------------------------------------------------------------------------------

def send_reminders(session: Session, now: datetime | None = None, *, days_before: tuple[int, ...] = (7, 1),
                   chunk_size: int = CHUNK) -> dict:
    """Reminders before a term or trial ends: ``renewal_reminder`` (auto-renew on, with the amount and
    the balance), ``expiry_reminder`` (auto-renew off or cancellation scheduled), ``trial_reminder``.
    One mail per subscription, end date and threshold (dedupe key), the nearest threshold first
    reached: running it hourly or twice sends nothing twice."""
    now = _now(now)
    summary = Summary()
    horizon = now + timedelta(days=max(days_before))
    licence = and_(Subscription.status == S.ACTIVE, col(Subscription.term_end).is_not(None),
                   col(Subscription.term_end) > now, col(Subscription.term_end) <= horizon)
    trial = and_(Subscription.status == S.TRIAL, col(Subscription.trial_ends_at).is_not(None),
                 col(Subscription.trial_ends_at) > now, col(Subscription.trial_ends_at) <= horizon)
    clause = or_(licence, trial)

    def remind(chunk: _Chunk, sub: _Sub) -> None:
        org = chunk.org(sub)
        tz = org.timezone
        plan, product, _vendor = chunk.plan(sub.plan_id)
        end = sub.trial_ends_at if sub.status == S.TRIAL else sub.term_end
        threshold = min(d for d in days_before if end - now <= timedelta(days=d))
        end_day = clock.local_date(end, tz)
        key = f"{sub.id}:{end_day:%Y%m%d}:{threshold}"
        if sub.status == S.TRIAL:
            context = {"product": product.name, "trial_ends_on": end_day, "converts": sub.trial_convert,
                       "subscription_id": sub.id}
            target = next((p for p, _pr, _v in chunk.plans.values() if p.code == plan.trial_converts_to), None)
            if sub.trial_convert and target is not None:
                context["amount"] = chunk.price(target, org, proration.period_price(
                    target.price, target.term, target.billing_frequency) * _clamp(sub.quantity, target))[0]
                context["currency"] = org.billing_currency
            chunk.mail(sub, "trial_reminder", context, dedupe=f"trial_reminder:{key}")
        elif plan.billing_type != "license":
            return
        elif sub.auto_renew and not sub.cancel_at_term_end:
            amount = chunk.price(plan, org, proration.period_price(plan.price, plan.term, plan.billing_frequency)
                                 * sub.quantity)[0]
            funds = chunk.available[org.id]
            if org.billing_mode == BillingMode.POSTPAID:
                funds -= org.credit_limit  # the mail shows the balance itself
            chunk.mail(sub, "renewal_reminder", {"product": product.name, "renew_on": end_day, "amount": amount,
                                                 "currency": org.billing_currency, "balance": funds,
                                                 "subscription_id": sub.id},
                       roles=MONEY_ROLES, dedupe=f"renewal_reminder:{key}")
        else:
            chunk.mail(sub, "expiry_reminder", {"product": product.name, "expires_on": end_day,
                                                "subscription_id": sub.id}, dedupe=f"expiry_reminder:{key}")
        summary.reminders += 1

    _run_chunks(session, clause, now, summary, remind, chunk_size=chunk_size, keys_for=lambda chunk, sub: [])
    return summary.as_dict()
