"""The ledger: an append-only list of balance movements per organisation.

- ``post`` adds one entry under a unique idempotency key; the same key twice posts once (also from
  two threads at once: the unique index decides, the loser gets the winner's row).
- The balance is the sum of the entries. Nothing stores a balance; no entry is ever updated.
- Amounts are rounded half-up to the currency's minor unit here, once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..models import BillingMode, LedgerEntry, Organisation
from ..models.types import utcnow
from .errors import InsufficientFunds, InvalidInput, NotFound
from .money import round_money


def lock_organisation(session: Session, org_id: int) -> Organisation:
    """Serialise money movements of one organisation for the rest of the transaction.

    PostgreSQL: a row lock. SQLite: every transaction already holds the write lock (BEGIN IMMEDIATE).
    """
    org = session.exec(select(Organisation).where(Organisation.id == org_id).with_for_update()).first()
    if org is None:
        raise NotFound("organisation not found")
    return org


def find(session: Session, idempotency_key: str) -> LedgerEntry | None:
    return session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key)).first()


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

    Returns the existing entry when the key was already posted.
    """
    if isinstance(amount, float):
        raise InvalidInput("ledger amounts must be Decimal, not float", key="error.float")
    if not isinstance(amount, (Decimal, int)):
        raise InvalidInput(f"ledger amount must be Decimal, got {type(amount).__name__}", key="error.not_a_number")
    if not idempotency_key:
        raise InvalidInput("an idempotency key is required")
    existing = find(session, idempotency_key)
    if existing is not None:
        return existing
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("organisation not found")
    currency = currency or org.billing_currency
    entry = LedgerEntry(
        org_id=org_id,
        kind=kind,
        amount=round_money(Decimal(amount), currency),
        currency=currency,
        description=description[:500],
        idempotency_key=idempotency_key,
        occurred_at=occurred_at or utcnow(),
        **fields,
    )
    try:
        with session.begin_nested():
            session.add(entry)
    except IntegrityError:
        # Another transaction posted the same key first: that one stands.
        existing = find(session, idempotency_key)
        if existing is None:
            raise
        return existing
    return entry


def balance(session: Session, org_id: int, *, until: datetime | None = None) -> Decimal:
    """The sum of the organisation's entries (those before ``until`` if given)."""
    query = select(func.sum(LedgerEntry.amount)).where(LedgerEntry.org_id == org_id)
    if until is not None:
        query = query.where(LedgerEntry.occurred_at < until)
    # SUM keeps the column's type: integer minor units summed exactly, read back as Decimal.
    total = session.exec(query).one()
    return total if total is not None else Decimal("0.00")


def available(session: Session, org: Organisation) -> Decimal:
    """What can be spent now: the balance, plus the credit limit for postpaid organisations."""
    funds = balance(session, org.id)
    if org.billing_mode == BillingMode.POSTPAID:
        funds += org.credit_limit
    return funds


def require_funds(session: Session, org: Organisation, required: Decimal) -> None:
    """Raise InsufficientFunds with the shortfall when ``required`` is not covered."""
    funds = available(session, org)
    if required > funds:
        raise InsufficientFunds(required=required, available=funds, currency=org.billing_currency)
