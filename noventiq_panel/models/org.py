"""Organisations, users, memberships, sign-in sessions, tokens, audit events."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint, and_, text
from sqlmodel import Field, SQLModel

from .types import Money, UTCDateTime, utcnow


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    FINANCE = "finance"  # Financial manager: read-only


class BillingMode(StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"


class Organisation(SQLModel, table=True):
    # A tax id belongs to one customer (identity/organisations.py); empty ones are not compared.
    __table_args__ = (
        Index("uq_organisation_tax_id", "tax_id", unique=True, sqlite_where=text("tax_id <> ''"),
              postgresql_where=text("tax_id <> ''")),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    tax_id: str = Field(default="", max_length=32, index=True)
    address: str = Field(default="", max_length=500)
    phone: str = Field(default="", max_length=64)
    bank_details: str = Field(default="", max_length=500)
    billing_currency: str = Field(default="UZS", max_length=3)
    timezone: str = Field(default="Asia/Tashkent", max_length=64)
    billing_mode: str = Field(default=BillingMode.PREPAID, max_length=16)
    credit_limit: Decimal = Field(default=Decimal("0.00"), sa_type=Money)
    low_balance_threshold: Optional[Decimal] = Field(default=None, sa_type=Money)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Credit control: since when the balance is below what the organisation may spend (below zero
    # when prepaid, beyond the credit limit when postpaid); None while it is not.
    overdrawn_since: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    # An Owner's rule: every member signs in with a one-time code (identity/two_factor.py).
    require_two_factor: bool = Field(default=False)
    # Created by a visitor (sign-up, guest order), not by the reseller: its tax id is held only
    # once a member proved their mailbox (identity/organisations.py ``claim_tax_id``).
    self_service: bool = Field(default=False)
    # What an electronic invoice (ЭСФ) names beside the tax id and address (services/billing/esf.py;
    # formats in services/core/requisites.py): VAT registration code (12 digits), bank МФО (5
    # digits) and account (20 digits), ОКЭД (5 digits), the director, and the contract the
    # services are rendered under (empty: the reseller's public offer from the settings).
    vat_reg_code: str = Field(default="", max_length=12)
    bank_mfo: str = Field(default="", max_length=5)
    bank_account: str = Field(default="", max_length=20)
    oked: str = Field(default="", max_length=5)
    director: str = Field(default="", max_length=255)
    contract_no: str = Field(default="", max_length=64)
    contract_date: Optional[date] = Field(default=None)


class User(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)  # stored lower-case
    name: str = Field(default="", max_length=255)
    password_hash: Optional[str] = Field(default=None, max_length=255)
    locale: str = Field(default="ru", max_length=8)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    # When the user proved they read this mailbox (a verification or set-password link opened);
    # None: no access to any organisation yet (services/identity/verification.py).
    email_verified_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    # Two-factor sign-in (identity/two_factor.py): the TOTP secret (base32; set when enrolment
    # starts, in force once ``totp_enabled_at`` is set) and the last time step used (no replay).
    totp_secret: Optional[str] = Field(default=None, max_length=64, repr=False)
    totp_enabled_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    totp_last_step: Optional[int] = Field(default=None, sa_type=BigInteger)


class Membership(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "org_id", name="uq_membership_user_org"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    role: str = Field(default=Role.ADMIN, max_length=16)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # True while an invitation of a user who already had an account waits for that user's consent:
    # until then the membership gives no access and the inviting organisation sees only the e-mail.
    awaiting_consent: bool = Field(default=False)

    @classmethod
    def in_force(cls):
        """SQL condition of a membership that gives access: active and accepted by its user."""
        return and_(cls.is_active == True, cls.awaiting_consent == False)  # noqa: E712

    @property
    def gives_access(self) -> bool:
        return self.is_active and not self.awaiting_consent


class RecoveryCode(SQLModel, table=True):
    """A single-use recovery code of two-factor sign-in; only its SHA-256 is stored."""

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    code_hash: str = Field(max_length=64)
    used_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)


class AuthSession(SQLModel, table=True):
    """A signed-in browser. Only the hash of the secret the browser keeps is stored."""

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    org_id: Optional[int] = Field(default=None, foreign_key="organisation.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    ip: str = Field(default="", max_length=64)


class LoginAttempt(SQLModel, table=True):
    __table_args__ = (
        Index("ix_loginattempt_email_at", "email", "at"),
        Index("ix_loginattempt_ip_at", "ip", "at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    email: str = Field(max_length=254)
    ip: str = Field(default="", max_length=64)
    success: bool = Field(default=False)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TokenPurpose(StrEnum):
    RESET = "reset"  # password recovery
    INVITE = "invite"  # set-password link of an invited user or a new customer
    VERIFY = "verify"  # e-mail verification link of a self-registered account


class PasswordResetToken(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    purpose: str = Field(default=TokenPurpose.RESET, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    # The invitation (a membership awaiting consent) this link answers: setting the password through
    # it accepts that invitation and no other (no foreign key: a declined invitation is deleted).
    membership_id: Optional[int] = Field(default=None)


class AuditEvent(SQLModel, table=True):
    __table_args__ = (
        Index("ix_auditevent_org_created", "org_id", "created_at"),
        Index("ix_auditevent_sub_created", "subscription_id", "created_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: Optional[int] = Field(default=None, foreign_key="user.id")
    subscription_id: Optional[int] = Field(default=None, foreign_key="subscription.id")
    action: str = Field(max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
