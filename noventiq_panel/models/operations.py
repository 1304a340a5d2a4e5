"""What proves that money follows the customer's intent.

- ``Quote``: a priced operation shown to the customer for confirmation. Its id is the operation's
  server-issued id: the ledger key of the operation's money is derived from it, so one intent is
  one charge, and the confirmation must carry the same amount (a changed price, plan, quantity or
  organisation is refused, nothing is charged).
- ``SeatSpan``: the billable history of a subscription, one row per interval with the same plan,
  seat count and status. ``noventiq-panel ledger check`` and the property tests compare the seat-days
  held with what the ledger charged for them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from .types import Money, UTCDateTime, utcnow


class Quote(SQLModel, table=True):
    __table_args__ = (Index("ix_quote_org_created", "org_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=32)  # secrets.token_hex(16)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: Optional[int] = Field(default=None, foreign_key="user.id")
    subscription_id: Optional[int] = Field(default=None, foreign_key="subscription.id")
    action: str = Field(max_length=16)  # order | quantity | plan | cancel
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    amount: Decimal = Field(sa_type=Money)  # charged now (> 0) or refunded now (< 0), org currency
    currency: str = Field(max_length=3)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    result: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # the outcome, for a repeated confirm


class SeatSpan(SQLModel, table=True):
    __table_args__ = (Index("ix_seatspan_sub_start", "subscription_id", "start"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="subscription.id")
    plan_id: int = Field(foreign_key="plan.id")
    quantity: int
    status: str = Field(max_length=16)
    start: datetime = Field(sa_type=UTCDateTime)
    end: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # open while current
