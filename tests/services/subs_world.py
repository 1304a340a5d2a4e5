"""Builders shared by the subscription, renewal, catalog, budget and authorisation tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import (
    AuditEvent,
    Budget,
    LedgerEntry,
    LicenceBatch,
    Notification,
    Organisation,
    Plan,
    Role,
    ScheduledChange,
    Subscription,
    User,
)
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.authz import Actor

from tests import factories as f

# 10 March 2026, 14:00 in Tashkent (UTC+5)
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)


def tashkent(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    """A wall-clock time in Tashkent (UTC+5, no DST) as an aware UTC datetime."""
    from datetime import timedelta

    return datetime(y, m, d, hh, mm, tzinfo=timezone.utc) - timedelta(hours=5)


@dataclass
class World:
    session: Session
    org: Organisation
    other_org: Organisation
    owner: User
    admin: User
    finance: User
    stranger: User  # owner of the other organisation
    plans: dict[str, Plan]

    @property
    def a_owner(self) -> Actor:
        return f.actor(self.owner, self.org)

    @property
    def a_admin(self) -> Actor:
        return f.actor(self.admin, self.org)

    @property
    def a_finance(self) -> Actor:
        return f.actor(self.finance, self.org)

    @property
    def a_stranger(self) -> Actor:
        """The other organisation's owner working in their own organisation."""
        return f.actor(self.stranger, self.other_org)

    @property
    def a_intruder(self) -> Actor:
        """The other organisation's owner claiming to act in ours."""
        return Actor(user_id=self.stranger.id, org_id=self.org.id)

    def topup(self, amount: str, org: Organisation | None = None) -> None:
        f.topup(self.session, org or self.org, amount)

    def balance(self, org: Organisation | None = None) -> Decimal:
        self.session.rollback()
        return ledger.balance(self.session, (org or self.org).id)

    def plan(self, code: str) -> Plan:
        return self.plans[code]

    def sub(self, sub_id: int) -> Subscription:
        self.session.rollback()
        return self.session.get(Subscription, sub_id, populate_existing=True)


def make_world(session: Session, *, rate_day: date = date(2020, 1, 1)) -> World:
    org = f.org(session, name="ООО «Ромашка»", tax_id="300000001")
    other = f.org(session, name="ООО «Лютик»", tax_id="300000002")
    owner = f.user(session, org, Role.OWNER, email="owner@romashka.uz", name="Олег Владелец")
    admin = f.user(session, org, Role.ADMIN, email="admin@romashka.uz", name="Анна Админ")
    finance = f.user(session, org, Role.FINANCE, email="finance@romashka.uz", name="Фаина Финансы")
    stranger = f.user(session, other, Role.OWNER, email="owner@lutik.uz", name="Чужой Владелец")
    plans = f.catalog(session)
    f.usd_rate(session, rate_day, "12000.00")
    return World(session, org, other, owner, admin, finance, stranger, plans)


@pytest.fixture
def world(session) -> World:
    return make_world(session)


def counts(session: Session) -> dict:
    """Row counts of everything an operation could write, and each organisation's balance."""
    session.rollback()
    tables = (Subscription, LedgerEntry, LicenceBatch, ScheduledChange, AuditEvent, Notification, Budget)
    result = {t.__name__: session.exec(select(func.count()).select_from(t)).one() for t in tables}
    result["balances"] = {o.id: ledger.balance(session, o.id) for o in session.exec(select(Organisation)).all()}
    result["subs"] = [(s.id, s.status, s.quantity, s.plan_id, s.auto_renew, s.cancel_at_term_end, s.term_end)
                      for s in session.exec(select(Subscription).order_by(Subscription.id)).all()]
    return result
