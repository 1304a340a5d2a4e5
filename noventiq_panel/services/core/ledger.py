"""The ledger: an append-only list of balance movements per organisation.

- ``entry_row`` is the one place an entry's columns are made (the checks, the key rule, the
  rounding); ``post`` adds one entry built by it under a unique idempotency key. An idempotency
  key names one intent: the same key again returns the entry posted first only when the call means
  the same thing (same organisation, kind and amount), also from two threads at once (the unique
  index decides, the loser gets the winner's row); a key already used for something else is a
  Conflict, never a silently skipped charge. ``post_many`` writes many rows built by
  ``entry_row`` in one bulk insert (jobs), under the same rule.
- The balance is the sum of the entries. Nothing stores a balance; no entry is ever updated.
- Amounts are rounded half-up to the currency's minor unit here, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.db import insert_rows
from noventiq_panel.models import BillingMode, EntryKind, LedgerEntry, Organisation, ProvisioningTask, TaskStatus
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core.errors import Conflict, InsufficientFunds, InvalidInput, NotFound
from noventiq_panel.services.core.money import round_money


# What counts as consumption (spend): charges, usage and the refunds of charges; not top-ups.
CONSUMPTION_KINDS = (EntryKind.CHARGE.value, EntryKind.USAGE.value, EntryKind.REFUND.value)


def lock_organisation(session: Session, org_id: int) -> Organisation:
    """Serialise money movements of one organisation for the rest of the transaction.

    PostgreSQL: a row lock. SQLite: every transaction already holds the write lock (BEGIN IMMEDIATE).
    """
    # populate_existing: the row as the lock read it, not as this unit of work read it before
    # (identity.auth.resolve keeps the caller's organisation for the whole unit of work)
    org = session.exec(select(Organisation).where(Organisation.id == org_id).with_for_update()
                       .execution_options(populate_existing=True)).first()
    if org is None:
        raise NotFound("organisation not found")
    return org


def find(session: Session, idempotency_key: str) -> LedgerEntry | None:
    return session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key)).first()


# The columns an entry may carry beside the required ones (all of them, so that rows of one bulk
# insert have the same keys).
_OPTIONAL = ("subscription_id", "payment_id", "quantity", "unit_price", "source_amount", "source_currency",
             "fx_rate", "fx_date", "period_start", "period_end", "created_by", "created_at", "meta")


def entry_row(
    *,
    org_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
    description: str = "",
    occurred_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The columns of one ledger entry: a Decimal amount (never a float) rounded half-up to the
    currency's minor unit, a non-empty idempotency key, the description cut to its column."""
    if isinstance(amount, float):
        raise InvalidInput("ledger amounts must be Decimal, not float", key="error.float")
    if not isinstance(amount, (Decimal, int)) or isinstance(amount, bool):
        raise InvalidInput(f"ledger amount must be Decimal, got {type(amount).__name__}", key="error.not_a_number")
    if not idempotency_key:
        raise InvalidInput("an idempotency key is required")
    unknown = set(fields) - set(_OPTIONAL)
    if unknown:
        raise TypeError(f"not ledger columns: {sorted(unknown)}")
    now = utcnow()
    row = dict(
        org_id=org_id,
        kind=str(kind),
        amount=round_money(Decimal(amount), currency),
        currency=currency,
        description=description[:500],
        idempotency_key=idempotency_key,
        occurred_at=occurred_at or now,
        **{name: None for name in _OPTIONAL},
    )
    row.update(meta={}, created_at=now)
    row.update(fields)
    return row


def _same_intent(existing: LedgerEntry, org_id: int, kind: str, amount: Decimal) -> LedgerEntry:
    """``existing`` when posting (org, kind, amount) under its key means the same thing; else Conflict."""
    if existing.org_id != org_id or existing.kind != str(kind) or existing.amount != amount:
        raise Conflict(f"idempotency key {existing.idempotency_key!r} was used for another movement",
                       key="error.ledger_key_reused")
    return existing


def post(
    session: Session,
    *,
    org_id: int,
    kind: str,
    amount: Decimal,
    idempotency_key: str,
    description: str = "",
    currency: str | None = None,
    occurred_at: datetime | None = None,
    **fields,
) -> LedgerEntry:
    """Add one entry (flushed, not committed: the caller's transaction commits it with the rest).

    Returns the existing entry when the key was already posted for the same organisation, kind and
    amount; raises Conflict when it was posted for anything else.
    """
    # Checked before the organisation is read, so a bad amount or key is refused the same way
    # whatever the organisation (the row is built again below with the organisation's currency).
    entry_row(org_id=org_id, kind=kind, amount=amount, currency=currency or "UZS", idempotency_key=idempotency_key)
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("organisation not found")
    row = entry_row(org_id=org_id, kind=kind, amount=amount, currency=currency or org.billing_currency,
                    idempotency_key=idempotency_key, description=description, occurred_at=occurred_at, **fields)
    existing = find(session, idempotency_key)
    if existing is not None:
        return _same_intent(existing, org_id, kind, row["amount"])
    entry = LedgerEntry(**row)
    try:
        with session.begin_nested():
            session.add(entry)
    except IntegrityError:
        # Another transaction posted the same key first: that one stands, if it meant the same.
        existing = find(session, idempotency_key)
        if existing is None:
            raise
        return _same_intent(existing, org_id, kind, row["amount"])
    return entry


def existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are already posted (looked up 500 at a time)."""
    return set(_posted(session, keys))


def _posted(session: Session, keys: Iterable[str]) -> dict[str, tuple[int, str, Decimal]]:
    """(organisation, kind, amount) of each of ``keys`` already posted."""
    keys = list(keys)
    found: dict[str, tuple[int, str, Decimal]] = {}
    for i in range(0, len(keys), 500):
        for key, org_id, kind, amount in session.exec(
                select(LedgerEntry.idempotency_key, LedgerEntry.org_id, LedgerEntry.kind, LedgerEntry.amount)
                .where(LedgerEntry.idempotency_key.in_(keys[i:i + 500]))).all():
            found[key] = (org_id, kind, amount)
    return found


def post_many(session: Session, rows: Iterable[dict[str, Any]], *, known: set[str] | None = None) -> int:
    """Write rows made by :func:`entry_row` in one bulk insert (flushed with the session's
    transaction, not committed) and return how many were written. A key already posted, or twice
    in ``rows``, is written once. ``known``: keys the caller already looked up (its own lookup of
    the same keys, under the organisations' locks), to skip the second query. The caller holds the
    organisations' locks (``lock_organisation``), so no other transaction posts these keys. A key
    posted before, or twice in ``rows``, for another organisation, kind or amount is a Conflict."""
    rows = list(rows)
    if not rows:
        return 0
    meant: dict[str, tuple[int, str, Decimal] | None] = dict.fromkeys(known or ())
    if known is None:
        meant.update(_posted(session, (r["idempotency_key"] for r in rows)))
    fresh = []
    for row in rows:
        key, intent = row["idempotency_key"], (row["org_id"], row["kind"], row["amount"])
        if key not in meant:
            meant[key] = intent
            fresh.append(row)
        elif meant[key] is not None and meant[key] != intent:
            raise Conflict(f"idempotency key {key!r} was used for another movement", key="error.ledger_key_reused")
    return insert_rows(session, LedgerEntry.__table__, fresh)


def balance(session: Session, org_id: int, *, until: datetime | None = None) -> Decimal:
    """The sum of the organisation's entries (those before ``until`` if given)."""
    query = select(func.sum(LedgerEntry.amount)).where(LedgerEntry.org_id == org_id)
    if until is not None:
        query = query.where(LedgerEntry.occurred_at < until)
    # SUM keeps the column's type: integer minor units summed exactly, read back as Decimal.
    total = session.exec(query).one()
    return total if total is not None else Decimal("0.00")


def reserved(session: Session, org_id: int) -> Decimal:
    """What the organisation's open orders at a vendor without an API hold back
    (``ProvisioningTask.reserved``): charged when the operator completes them, released otherwise."""
    total = session.exec(select(func.sum(ProvisioningTask.reserved)).where(
        ProvisioningTask.org_id == org_id, ProvisioningTask.status == TaskStatus.OPEN)).one()
    return total if total is not None else Decimal("0.00")


def reserved_by_org(session: Session, org_ids: Iterable[int] | None = None) -> dict[int, Decimal]:
    """:func:`reserved` of many organisations at once (those in ``org_ids``, or all), by id; an
    organisation without open orders is absent."""
    q = select(ProvisioningTask.org_id, func.sum(ProvisioningTask.reserved)).where(
        ProvisioningTask.status == TaskStatus.OPEN)
    if org_ids is not None:
        q = q.where(col(ProvisioningTask.org_id).in_(list(org_ids)))
    return {oid: Decimal(total or 0) for oid, total in session.exec(q.group_by(ProvisioningTask.org_id)).all()}


def spendable(balance_: Decimal, reserved_: Decimal, billing_mode: str, credit_limit: Decimal | None) -> Decimal:
    """The rule of what can be spent: the balance less what open orders reserve, plus the credit
    limit for a postpaid organisation (:func:`available`; the jobs apply it to many at once)."""
    funds = Decimal(balance_ or 0) - Decimal(reserved_ or 0)
    if billing_mode == BillingMode.POSTPAID:
        funds += Decimal(credit_limit or 0)
    return funds


def available(session: Session, org: Organisation) -> Decimal:
    """What can be spent now (:func:`spendable`)."""
    return spendable(balance(session, org.id), reserved(session, org.id), org.billing_mode, org.credit_limit)


def require_funds(session: Session, org: Organisation, required: Decimal) -> None:
    """Raise InsufficientFunds with the shortfall when ``required`` is not covered."""
    funds = available(session, org)
    if required > funds:
        raise InsufficientFunds(required=required, available=funds, currency=org.billing_currency)
