"""Pay-as-you-go usage records as imported from the vendor's billing exports."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from .types import Price, UTCDateTime, utcnow


class UsageRecord(SQLModel, table=True):
    """Usage of one meter on one resource over [period_start, period_end).

    ``cost`` is in ``currency`` (the vendor's price, before markup and conversion). Rating
    sets ``ledger_entry_id``: a record is charged exactly once. ``source_key`` is unique so that
    re-importing the same export adds nothing.
    """

    __table_args__ = (
        Index("ix_usage_sub_unrated", "subscription_id", "ledger_entry_id"),
        Index("ix_usage_org_period", "org_id", "period_start"),
        Index("ix_usage_sub_period", "subscription_id", "period_start"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    subscription_id: int = Field(foreign_key="subscription.id")
    period_start: datetime = Field(sa_type=UTCDateTime)
    period_end: datetime = Field(sa_type=UTCDateTime)
    service: str = Field(default="", max_length=128)  # meter category / ServiceName
    meter: str = Field(default="", max_length=255)
    resource_group: str = Field(default="", max_length=255)
    resource_id: str = Field(default="", max_length=500)
    resource_name: str = Field(default="", max_length=255)
    quantity: Decimal = Field(default=Decimal("0"), sa_type=Price)
    unit: str = Field(default="", max_length=64)
    cost: Decimal = Field(default=Decimal("0"), sa_type=Price)
    currency: str = Field(default="USD", max_length=3)
    source: str = Field(default="import", max_length=16)
    source_key: str = Field(max_length=64, unique=True)
    ledger_entry_id: Optional[int] = Field(default=None, foreign_key="ledgerentry.id")
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
