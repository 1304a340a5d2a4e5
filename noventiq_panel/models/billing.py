"""The ledger, payments, bank statement lines and closing documents."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import Money, Price, UTCDateTime, utcnow


class EntryKind(StrEnum):
    TOPUP = "topup"  # money in (a payment)
    CHARGE = "charge"  # licences: order, increase, renewal, monthly instalment
    USAGE = "usage"  # rated pay-as-you-go usage
    REFUND = "refund"  # pro rata refund of a decrease or cancellation
    ADJUSTMENT = "adjustment"  # manual correction or reversal


class LedgerEntry(SQLModel, table=True):
    """One append-only movement of an organisation's balance, in its billing currency.

    Positive amounts add to the balance, negative ones take from it. A row is never updated;
    a mistake is reversed by a new row. ``idempotency_key`` is unique: posting the same key twice
    posts once.
    """

    __table_args__ = (
        Index("ix_ledger_org_occurred", "org_id", "occurred_at"),
        Index("ix_ledger_sub_occurred", "subscription_id", "occurred_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    kind: str = Field(max_length=16)
    amount: Decimal = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    description: str = Field(default="", max_length=500)
    subscription_id: Optional[int] = Field(default=None, foreign_key="subscription.id")
    payment_id: Optional[int] = Field(default=None, foreign_key="payment.id")
    quantity: Optional[Decimal] = Field(default=None, sa_type=Price)
    unit_price: Optional[Decimal] = Field(default=None, sa_type=Price)  # in source_currency
    source_amount: Optional[Decimal] = Field(default=None, sa_type=Price)
    source_currency: Optional[str] = Field(default=None, max_length=3)
    fx_rate: Optional[Decimal] = Field(default=None, sa_type=Price)  # the rate used, stored on the charge
    fx_date: Optional[date] = None
    period_start: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    period_end: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    idempotency_key: str = Field(max_length=200, unique=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: Optional[int] = Field(default=None, foreign_key="user.id")
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    OVERDUE = "overdue"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Payment(SQLModel, table=True):
    """A top-up or an invoice to pay. ``pending_action`` is the order or licence increase that
    waits for this payment (the shortfall path) and is completed when it is paid."""

    __table_args__ = (Index("ix_payment_org_created", "org_id", "created_at"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    number: str = Field(max_length=32, unique=True)
    kind: str = Field(default="topup", max_length=16)  # topup | shortfall | postpaid
    method: str = Field(default="bank_transfer", max_length=32)
    amount: Decimal = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    status: str = Field(default=PaymentStatus.PENDING, max_length=16, index=True)
    purpose: str = Field(default="", max_length=500)
    due_date: Optional[date] = None
    pending_action: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON)
    paid_amount: Decimal = Field(default=Decimal("0.00"), sa_type=Money)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paid_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    created_by: Optional[int] = Field(default=None, foreign_key="user.id")


class StatementLineStatus(StrEnum):
    CREDITED = "credited"  # matched its invoice by number, payer tax id and amount: credited on import
    REVIEW = "review"  # anything else: waits for an operator, nobody's balance changed
    ASSIGNED = "assigned"  # an operator credited it to an invoice
    REJECTED = "rejected"  # an operator decided it is not a customer's payment (returned, not ours)


class StatementLine(SQLModel, table=True):
    """A line of an imported bank statement; ``line_hash`` makes a re-import change nothing."""

    id: Optional[int] = Field(default=None, primary_key=True)
    line_hash: str = Field(max_length=64, unique=True)
    value_date: date
    amount: Decimal = Field(sa_type=Money)
    payer_tax_id: str = Field(default="", max_length=32)
    purpose: str = Field(default="", max_length=500)
    payment_id: Optional[int] = Field(default=None, foreign_key="payment.id")  # credited to, or the candidate
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status: str = Field(default=StatementLineStatus.CREDITED, max_length=16, index=True)
    reason: str = Field(default="", max_length=500)  # why it waits for review; the operator's note
    decided_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)


class ClosingDocument(SQLModel, table=True):
    """An act of completed work (with its invoice) for one organisation and one closed month."""

    __table_args__ = (
        UniqueConstraint("org_id", "period", "kind", name="uq_closingdoc_org_period"),
        UniqueConstraint("year", "number", "kind", name="uq_closingdoc_year_number"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    kind: str = Field(default="act", max_length=16)
    period: date  # first day of the month
    # The first earlier month whose consumption this act also settles (a run of months that netted
    # to a credit and so had no act of their own, ``documents`` explains); None: its month only.
    carried_from: Optional[date] = Field(default=None)
    year: int
    number: int
    total: Decimal = Field(sa_type=Money)
    vat: Decimal = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    pdf: bytes = Field(default=b"", sa_type=LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # What its electronic invoice (ЭСФ) needs, as it was at issue (services/billing/esf_record.py):
    # parties, contract, VAT rate, lines with their product codes. NULL: issued before migration 0011.
    esf_record: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))
    # Requisites missing at issue, taken later from the then-current data, written once when the
    # ЭСФ was first made complete ({"at": ..., "values": {...}}); NULL: nothing was taken later.
    esf_later: Optional[dict[str, Any]] = Field(default=None, sa_type=JSON(none_as_null=True))


class ClosingRun(SQLModel, table=True):
    """A month whose closing documents have been generated (``documents.generate_month``), and the
    latest moment a generation of it ran as. For every organisation whose local month had ended by
    then the month is closed: its act, or its credit carried into a later act, is decided, and its
    consumption never changes again (rating dates late usage of a closed month when it is rated)."""

    period: date = Field(primary_key=True)  # first day of the month
    run_at: datetime = Field(sa_type=UTCDateTime)


class Sequence(SQLModel, table=True):
    """Gap-free counters (document numbers per year, payment numbers)."""

    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(default=0)
