"""Cost anomalies of pay-as-you-go subscriptions (``services/usage/anomalies.py`` finds them)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import Money, UTCDateTime, utcnow


class CostAnomaly(SQLModel, table=True):
    """One day of a subscription whose cost fell far outside what its last 60 days predict.

    The unique (subscription, day) makes the alert once-only: a second run of the job, or two at
    once, adds nothing. Amounts are in ``currency`` (the organisation's billing currency), rounded
    to its minor unit. ``contributors``: ``{"services": [...], "resource_groups": [...]}``, each item
    ``{"name", "actual", "expected", "change", "new"}`` with the amounts as decimal strings.
    """

    __table_args__ = (
        UniqueConstraint("subscription_id", "day", name="uq_costanomaly_sub_day"),
        Index("ix_costanomaly_org_day", "org_id", "day"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    subscription_id: int = Field(foreign_key="subscription.id")
    day: date  # the organisation-local day
    actual: Decimal = Field(sa_type=Money)
    expected: Decimal = Field(sa_type=Money)
    low: Decimal = Field(sa_type=Money)
    high: Decimal = Field(sa_type=Money)
    currency: str = Field(default="UZS", max_length=3)
    direction: str = Field(max_length=8)  # spike | drop
    contributors: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


__all__ = ["CostAnomaly"]
