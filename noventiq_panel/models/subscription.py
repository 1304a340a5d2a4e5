"""Subscriptions, their licence batches (cancellation windows), scheduled changes, budgets."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import Money, UTCDateTime, utcnow


class SubscriptionStatus(StrEnum):
    PENDING = "pending"  # ordered, waiting for funds or provisioning
    TRIAL = "trial"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Subscription(SQLModel, table=True):
    __table_args__ = (
        Index("ix_subscription_org_status", "org_id", "status"),
        Index("ix_subscription_status_term_end", "status", "term_end"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    plan_id: int = Field(foreign_key="plan.id", index=True)
    name: str = Field(default="", max_length=255)
    status: str = Field(default=SubscriptionStatus.PENDING, max_length=16)
    quantity: int = Field(default=1)
    term_start: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    term_end: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # exclusive
    next_billing_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # yearly billed monthly
    auto_renew: bool = Field(default=True)
    is_trial: bool = Field(default=False)
    trial_ends_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    trial_convert: bool = Field(default=False)  # convert to the paid plan when the trial ends
    grace_until: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    vendor_ref: str = Field(default="", max_length=128, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    activated_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    suspended_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    # Why it is suspended: "customer" (asked for it), "credit" (pay-as-you-go of an overdrawn
    # organisation: a top-up resumes it), "payment" (a renewal not paid: paying resumes it).
    suspend_reason: str = Field(default="", max_length=16)
    cancelled_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    cancel_at_term_end: bool = Field(default=False)
    # Pay-as-you-go: mail cost anomalies (services/usage/anomalies.py); the customer may turn it off.
    anomaly_alerts: bool = Field(default=True)


class LicenceBatch(SQLModel, table=True):
    """Seats added at one moment (purchase, renewal or mid-term increase).

    A decrease refunds pro rata only seats whose batch is still inside its cancellation window
    (``window_ends_at``); other seats can only be removed at the next renewal.
    """

    id: Optional[int] = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="subscription.id", index=True)
    quantity: int  # seats still held from this batch
    added_at: datetime = Field(sa_type=UTCDateTime)
    window_ends_at: datetime = Field(sa_type=UTCDateTime)
    source: str = Field(default="purchase", max_length=16)  # purchase | renewal | increase


class ChangeKind(StrEnum):
    QUANTITY = "quantity"
    PLAN = "plan"
    CANCEL = "cancel"


class ScheduledChange(SQLModel, table=True):
    __table_args__ = (Index("ix_scheduledchange_status_effective", "status", "effective_at"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="subscription.id", index=True)
    kind: str = Field(max_length=16)
    new_quantity: Optional[int] = None
    new_plan_id: Optional[int] = Field(default=None, foreign_key="plan.id")
    effective_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="pending", max_length=16)  # pending | applied | cancelled
    created_by: Optional[int] = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Budget(SQLModel, table=True):
    """A monthly spending budget on a pay-as-you-go subscription. It only warns.

    ``thresholds``: up to five ``{"percent": "80", "type": "actual"|"forecast"}``.
    """

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    subscription_id: int = Field(foreign_key="subscription.id", unique=True)
    amount: Decimal = Field(sa_type=Money)
    currency: str = Field(default="UZS", max_length=3)
    thresholds: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    recipient_user_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    extra_emails: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BudgetAlert(SQLModel, table=True):
    """One row per threshold crossed per budget month: the unique key makes the alert once-only."""

    __table_args__ = (
        UniqueConstraint("budget_id", "month", "percent", "kind", name="uq_budgetalert_once"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    budget_id: int = Field(foreign_key="budget.id", index=True)
    month: date  # first day of the budget month, organisation time zone
    percent: str = Field(max_length=16)
    kind: str = Field(max_length=16)  # actual | forecast
    spent: Decimal = Field(sa_type=Money)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
