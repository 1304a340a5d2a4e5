"""The e-mail outbox (also each user's notification history) and the job leases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import Index, LargeBinary
from sqlmodel import Field, SQLModel

from .types import UTCDateTime, utcnow


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last retry


class Notification(SQLModel, table=True):
    __table_args__ = (
        Index("ix_notification_status_next", "status", "next_attempt_at"),
        Index("ix_notification_user_created", "user_id", "created_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: Optional[int] = Field(default=None, foreign_key="organisation.id", index=True)
    user_id: Optional[int] = Field(default=None, foreign_key="user.id")
    to_email: str = Field(max_length=254)
    kind: str = Field(max_length=64)  # template name
    locale: str = Field(default="ru", max_length=8)
    subject: str = Field(max_length=500)
    body_text: str = Field(default="")
    body_html: str = Field(default="")
    status: str = Field(default=NotificationStatus.QUEUED, max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str = Field(default="", max_length=1000)
    dedupe_key: Optional[str] = Field(default=None, max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)


class NotificationAttachment(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notification.id", index=True)
    filename: str = Field(max_length=255)
    mime_type: str = Field(default="application/octet-stream", max_length=100)
    data: bytes = Field(sa_type=LargeBinary)


class MailSecret(SQLModel, table=True):
    """The secret part of a queued mail's link (a set-password, reset or verification token), kept
    apart from the stored mail, whose body holds ``mark`` (random, one per mail) in its place. The
    mailer puts it in when it sends the mail and deletes it then (or when the mail fails for
    good); expired ones are purged."""

    notification_id: int = Field(primary_key=True, foreign_key="notification.id")
    secret: str = Field(max_length=200)
    mark: str = Field(default="__link_secret__", max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class JobLease(SQLModel, table=True):
    """Who runs the scheduler (or one job) now; a lease expires unless renewed."""

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class JobRun(SQLModel, table=True):
    """The last time each job finished; catch-up starts from here."""

    name: str = Field(primary_key=True, max_length=64)
    last_run_at: datetime = Field(sa_type=UTCDateTime)
    last_result: str = Field(default="", max_length=1000)
