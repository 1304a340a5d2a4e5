"""Card payments through the Uzbek gateways: one row per provider transaction.

- ``PaymeTransaction``: a transaction of Payme's Merchant API (JSON-RPC; Payme calls us). Its Payme
  id is unique; amounts are integers in tiyin (1 сум = 100 tiyin) as the protocol carries them; the
  protocol's times are Unix milliseconds and are kept as received/answered (``*_time``) beside the
  same moments as UTC datetimes (``*_at``) for queries. ``state`` is the protocol's: 1 created,
  2 performed, -1 cancelled before perform, -2 cancelled after perform.
- ``ClickTransaction``: a transaction of Click's SHOP API (Prepare, then Complete). ``click_trans_id``
  is unique; the amount is in сум with the decimals Click sent. ``state``: 0 prepared, 1 completed,
  -1 cancelled.

Both name the account they pay: ``account_kind`` ``org`` (a balance top-up; ``payment_id`` is the
top-up payment created for it) or ``invoice`` (an issued invoice; ``payment_id`` is that invoice).
The money itself is the ledger entry ``ledger_entry_id`` (key ``payme:<id>`` / ``click:<id>``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from .types import Money, UTCDateTime, utcnow


class CardAccountKind(StrEnum):
    ORG = "org"  # accumulative: a balance top-up keyed by the organisation's account number
    INVOICE = "invoice"  # one-time: an issued invoice, its exact amount


class PaymeState(IntEnum):
    CREATED = 1
    PERFORMED = 2
    CANCELLED = -1  # before perform
    CANCELLED_AFTER_PERFORM = -2


class PaymeTransaction(SQLModel, table=True):
    __table_args__ = (
        Index("ix_paymetransaction_payme_time", "payme_time"),
        Index("ix_paymetransaction_payment_state", "payment_id", "state"),
        Index("ix_paymetransaction_state_time", "state", "payme_time"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    payme_id: str = Field(max_length=32, unique=True)
    payme_time: int = Field(sa_column=Column(BigInteger, nullable=False))  # Payme's create time, ms
    payme_time_at: datetime = Field(sa_type=UTCDateTime)
    account_kind: str = Field(max_length=8)  # CardAccountKind
    account: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # as Payme sent it
    org_id: int = Field(foreign_key="organisation.id", index=True)
    payment_id: Optional[int] = Field(default=None, foreign_key="payment.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))  # tiyin
    state: int = Field(default=PaymeState.CREATED)
    reason: Optional[int] = None
    create_time: int = Field(sa_column=Column(BigInteger, nullable=False))  # ms, our create time
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    perform_time: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))  # 0: not performed
    performed_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    cancel_time: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))  # 0: not cancelled
    cancelled_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    # SetFiscalData: the fiscal receipt Payme reports, by receipt type ("PERFORM", "CANCEL").
    fiscal_data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    ledger_entry_id: Optional[int] = Field(default=None, foreign_key="ledgerentry.id")  # the top-up
    reversal_entry_id: Optional[int] = Field(default=None, foreign_key="ledgerentry.id")  # cancel after perform


class ClickState(IntEnum):
    PREPARED = 0
    COMPLETED = 1
    CANCELLED = -1


class ClickTransaction(SQLModel, table=True):
    __table_args__ = (
        Index("ix_clicktransaction_payment_state", "payment_id", "state"),
        Index("ix_clicktransaction_created", "created_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)  # our merchant_prepare_id
    click_trans_id: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    click_paydoc_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    service_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    merchant_trans_id: str = Field(max_length=64)  # the account as Click sent it
    merchant_prepare_id: Optional[int] = None
    merchant_confirm_id: Optional[int] = None
    account_kind: str = Field(max_length=8)  # CardAccountKind
    org_id: int = Field(foreign_key="organisation.id", index=True)
    payment_id: Optional[int] = Field(default=None, foreign_key="payment.id")
    amount: Decimal = Field(sa_type=Money)  # сум
    state: int = Field(default=ClickState.PREPARED)
    error: Optional[int] = None  # Click's error code of a failed payment (Complete with error < 0)
    error_note: str = Field(default="", max_length=255)
    sign_time: str = Field(default="", max_length=32)  # as Click sent it (Prepare)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    completed_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    ledger_entry_id: Optional[int] = Field(default=None, foreign_key="ledgerentry.id")


__all__ = ["CardAccountKind", "ClickState", "ClickTransaction", "PaymeState", "PaymeTransaction"]
