"""The provisioning queue: what an operator must do at a vendor that has no API (or whose
connector is not configured), and what the customer reserved for it
(``services/subscriptions/provisioning.py`` works it)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from .types import Money, Price, UTCDateTime, utcnow


class TaskStatus(StrEnum):
    OPEN = "open"  # waiting for the operator
    COMPLETED = "completed"  # done at the vendor (an order: charged now)
    REJECTED = "rejected"  # the vendor refused (a reason for the customer; the reservation is released)
    CANCELLED = "cancelled"  # the customer cancelled the order before it was done


class ProvisioningTask(SQLModel, table=True):
    """One order or change to carry out at the vendor by hand.

    ``action``: order | quantity | plan | suspend | resume | cancel | auto_renew. ``params``: what
    the vendor is to do (quantity, plan code, ...). An order reserves ``reserved`` (the
    organisation's billing currency; ``plan_amount`` at the rate of ``fx_date``, the order day) while it is open: the
    organisation's available funds are less by it, so it cannot be spent twice; completing the
    task charges exactly it (ledger key ``provisioning:<id>:charge``), rejecting or cancelling it
    releases it. Changes reserve nothing.
    """

    __table_args__ = (
        Index("ix_provisioningtask_status", "status", "requested_at"),
        Index("ix_provisioningtask_org_status", "org_id", "status"),
        Index("ix_provisioningtask_sub", "subscription_id"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    subscription_id: int = Field(foreign_key="subscription.id")
    vendor_code: str = Field(max_length=64)
    action: str = Field(max_length=16)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default=TaskStatus.OPEN, max_length=16)
    reserved: Decimal = Field(default=Decimal("0"), sa_type=Money)
    currency: str = Field(default="UZS", max_length=3)
    plan_amount: Decimal = Field(default=Decimal("0"), sa_type=Price)  # in the plan's currency
    fx_date: Optional[date] = None  # the order day: its exchange rate converts plan_amount (as the quote did)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    requested_by: Optional[int] = Field(default=None, foreign_key="user.id")
    done_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    done_by: str = Field(default="", max_length=255)  # the operator
    vendor_ref: str = Field(default="", max_length=255)
    reason: str = Field(default="", max_length=1000)  # a rejection's reason, shown to the customer
    reported_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # last overdue report
    # an order's operation (``op:<id>:charge``, as the ledger entry of a connector's order would be
    # keyed): the same order carried out twice (a waiting action run again) finds its task
    request_key: Optional[str] = Field(default=None, max_length=200, unique=True)


__all__ = ["ProvisioningTask", "TaskStatus"]
