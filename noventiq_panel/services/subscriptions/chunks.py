"""How the lifecycle jobs (:mod:`renewals`) walk thousands of subscriptions: in chunks, each one
transaction that reads with a handful of queries and writes in bulk.

A chunk first locks its organisations (PostgreSQL ``SELECT ... FOR UPDATE`` in id order, SQLite's
``BEGIN IMMEDIATE`` write lock), then reads its subscriptions again as plain rows: a second runner
waiting for the lock finds them renewed and skips them. It loads the balances, the due scheduled
changes, the recipients and the ledger keys already posted; what the lifecycle code does is
collected and written by :meth:`Chunk.write` with the shared row builders, one bulk insert per
table (COPY on PostgreSQL): ledger entries (``ledger.entry_row``/``post_many``), licence batches
(``licences.batch_row``/``add_many``), audit events (``audit.event_row``/``record_many``) and mails
(``notifications.Pending``/``enqueue_many``: a dedupe key already queued, or twice in the chunk, is
mailed once; mails render as they go in). Each chunk commits once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import bindparam, func, update
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    LedgerEntry,
    Membership,
    Organisation,
    Plan,
    Product,
    ScheduledChange,
    Subscription,
    User,
    Vendor,
)
from noventiq_panel.services.core import audit, clock, ledger, rates
from noventiq_panel.services.core.errors import DomainError
from noventiq_panel.services.core.money import round_money
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.subscriptions import licences, spans
from noventiq_panel.services.subscriptions.context import LIFECYCLE_ROLES, describe, entry_fields

CHUNK = 500


@dataclass
class Summary:
    renewed: int = 0
    instalments: int = 0
    reactivated: int = 0
    lapses_charged: int = 0
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


class Sub(SimpleNamespace):
    """A subscription of a chunk: its columns as plain attributes, read with Core rather than as an
    ORM object (loading, tracking and flushing thousands of those cost more than renewing them).
    The lifecycle code changes the attributes; :meth:`Chunk.write` stores the changed columns."""


class Chunk:
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
        self.subs = [Sub(**row) for row in self.loaded.values()]
        sums = dict(session.exec(
            select(LedgerEntry.org_id, func.sum(LedgerEntry.amount)).where(col(LedgerEntry.org_id).in_(org_ids))
            .group_by(LedgerEntry.org_id)).all())
        reserved = ledger.reserved_by_org(session, org_ids)
        self.available: dict[int, Decimal] = {
            org_id: ledger.spendable(sums.get(org_id), reserved.get(org_id), org.billing_mode, org.credit_limit)
            for org_id, org in self.orgs.items()}
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
        self.mails: list[notifications.Pending] = []
        self.keys: set[str] = set()
        self.existing_keys: set[str] = set()
        self.renewed_ids: list[int] = []
        self.batches: list[dict] = []

    # -- reading helpers --
    def org(self, sub: Sub) -> Organisation:
        return self.orgs[sub.org_id]

    def plan(self, plan_id: int) -> tuple[Plan, Product, Vendor]:
        return self.plans[plan_id]

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
    def charge(self, sub: Sub, plan: Plan, product: Product, *, plan_amount: Decimal, key: str,
               what: str, quantity: int, period: tuple[datetime, datetime], action: str,
               force: bool = False) -> tuple[bool, Decimal]:
        """Charge if the organisation can pay (``force``: whatever the balance, for service already
        given). Returns (done, amount): done is True when charged now or already charged under
        ``key`` before; False when the funds do not cover it."""
        org = self.org(sub)
        amount, rate, day = self.price(plan, org, plan_amount)
        if key in self.existing_keys or key in self.keys:
            return True, Decimal("0.00")
        if amount > self.available[org.id] and not force:
            return False, amount
        if amount > 0:
            self.available[org.id] -= amount
            self.keys.add(key)
            self.entries.append(ledger.entry_row(**entry_fields(
                org=org, sub_id=sub.id, plan=plan, kind="charge", amount=amount, plan_amount=plan_amount, rate=rate,
                day=day, key=key, description=describe(product, plan, what), quantity=quantity, now=self.now,
                period=period, user_id=None, meta={"action": action}), created_at=self.now))
            self.summary.charged[org.billing_currency] += amount
        return True, amount

    def audit(self, sub: Sub, action: str, **details) -> None:
        self.audits.append(audit.event_row(org_id=sub.org_id, user_id=None, action=action, subscription_id=sub.id,
                                           created_at=self.now, **details))

    def batch(self, sub: Sub, plan: Plan, source: str) -> None:
        self.batches.append(licences.batch_row(sub.id, sub.quantity, self.now, plan.cancellation_window_hours, source))

    def mail(self, sub: Sub, kind: str, context: dict, *, roles=LIFECYCLE_ROLES, dedupe: str | None = None) -> None:
        """One mail per recipient with one of ``roles`` (dedupe key suffixed ``:u<user id>``), queued
        by :meth:`write` in one bulk insert."""
        wanted = {str(r) for r in roles}
        org = self.org(sub)
        for user, role in self.recipients.get(sub.org_id, []):
            if role not in wanted or "@" not in (user.email or ""):
                continue
            ctx = {"org_name": org.name, "tz": org.timezone, "user_name": user.name, **context}
            self.mails.append(notifications.Pending(kind, user.email, ctx, user.locale, org.id, user.id,
                                                    f"{dedupe}:u{user.id}" if dedupe else None))

    def write(self) -> None:
        """Store the changed subscription columns (one executemany per set of columns), empty the old
        batches of renewed subscriptions, insert the new batches, ledger entries, audit events and
        mails in bulk. The scheduled changes (ORM objects) flush first."""
        session = self.session
        session.flush()
        table = Subscription.__table__
        changed: dict[tuple[str, ...], list[dict]] = defaultdict(list)
        moved: list[spans.State] = []
        for sub in self.subs:
            before = self.loaded[sub.id]
            values = {name: value for name, value in vars(sub).items() if value != before[name]}
            if values:
                changed[tuple(values)].append({"_id": sub.id, **values})
                if spans.changed(values):
                    moved.append(spans.State(sub.id, sub.plan_id, sub.quantity, str(sub.status)))
        for params in changed.values():
            session.connection().execute(update(table).where(table.c.id == bindparam("_id")), params)
        spans.split(session, moved, self.now)  # the seat spans of the changed rows
        for held in list(session.identity_map.values()):  # ORM copies the caller holds: read again
            if isinstance(held, Subscription) and held.id in self.loaded:
                session.expire(held)
        licences.empty(session, self.renewed_ids)
        licences.add_many(session, self.batches)
        ledger.post_many(session, self.entries, known=self.existing_keys)
        audit.record_many(session, self.audits)
        notifications.enqueue_many(session, self.mails, now=self.now)


def load_plans(session: Session) -> dict[int, tuple[Plan, Product, Vendor]]:
    rows = session.exec(select(Plan, Product, Vendor).join(Product, Product.id == Plan.product_id)
                        .join(Vendor, Vendor.id == Product.vendor_id)).all()
    return {p.id: (p, pr, v) for p, pr, v in rows}


def run_chunks(session: Session, due_clause, now: datetime, summary: Summary, process, *,
               chunk_size: int, keys_for) -> None:
    """Walk the subscriptions matching ``due_clause`` in id order (keyset), one transaction per
    chunk; ``keys_for(chunk, sub)`` names the ledger keys ``process(chunk, sub)`` may charge."""
    plans = load_plans(session)
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
            chunk = Chunk(session, first_id, last_id, sorted({org for _sub, org in rows}), now, due_clause,
                          summary, plans)
            chunk.existing_keys = ledger.existing_keys(session, [k for s in chunk.subs for k in keys_for(chunk, s)])
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
