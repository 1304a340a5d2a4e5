"""The demo data: alive, consistent with the rules, and two tenants that do not touch.

Hazards: demo money that does not add up (usage charged twice or not at all, a prepaid balance
that went negative), licence batches that do not sum to the seats, a status missing from the
demo, a demo user who cannot sign in, rows of one organisation pointing at the other.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel import db as dbmod
from noventiq_panel import models
from noventiq_panel.models import (
    AuditEvent,
    LedgerEntry,
    LicenceBatch,
    Membership,
    Organisation,
    Plan,
    Subscription,
    UsageRecord,
)
from noventiq_panel.services.identity import auth
from noventiq_panel.services.demo import demo
from noventiq_panel.services.core import ledger

from tests.services.usage_world import assert_entries_match_records, unrated

NOW = datetime(2026, 11, 25, 8, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    engine = dbmod.make_engine(url)
    models.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        result = demo.load(session, now=NOW)
    yield engine, result
    engine.dispose()


@pytest.fixture
def session(loaded):
    with Session(loaded[0], expire_on_commit=False) as s:
        yield s


def _org(session, key) -> Organisation:
    return session.exec(select(Organisation).where(Organisation.tax_id == demo.ORGS[key]["tax_id"])).one()


def test_the_first_organisation_has_subscriptions_in_every_status_and_billing_variant(session):
    org = _org(session, "romashka")
    subs = session.exec(select(Subscription).where(Subscription.org_id == org.id)).all()
    assert {s.status for s in subs} == {"active", "trial", "suspended", "pending", "expired", "cancelled"}
    plans = {s.id: session.get(Plan, s.plan_id) for s in subs}
    variants = {(p.billing_type, p.term, p.billing_frequency, p.granularity) for p in plans.values()}
    assert ("license", "month", "upfront", None) in variants
    assert ("license", "year", "upfront", None) in variants
    assert ("license", "year", "monthly", None) in variants
    assert ("payg", None, None, "hour") in variants
    assert 10 <= len(subs) <= 16
    # Dates are relative to "now": something renews within a week, something has just expired.
    ends = [s.term_end for s in subs if s.status == "active" and s.term_end]
    assert any(NOW < e <= NOW + timedelta(days=7) for e in ends)


def test_the_history_is_anchored_at_the_first_run(session, loaded):
    assert loaded[1].anchor == NOW.replace(minute=0)
    assert demo.find_anchor(session) == loaded[1].anchor
    assert session.exec(select(func.max(UsageRecord.period_end))).one() <= NOW


def test_a_prepaid_demo_balance_never_went_negative_and_ends_realistic(session):
    org = _org(session, "romashka")
    running = Decimal(0)
    for entry in session.exec(select(LedgerEntry).where(LedgerEntry.org_id == org.id)
                              .order_by(LedgerEntry.occurred_at, LedgerEntry.id)).all():
        running += entry.amount
        assert running >= 0, (entry.occurred_at, entry.description)
    balance = ledger.balance(session, org.id)
    assert running == balance
    assert Decimal("5000000") < balance < Decimal("60000000")


def test_every_usage_record_is_charged_exactly_once_and_the_ledger_matches_it(session):
    assert 10_000 <= session.exec(select(func.count()).select_from(UsageRecord)).one() <= 60_000
    assert unrated(session) == 0
    for key in demo.ORGS:
        org = _org(session, key)
        assert session.exec(select(func.count()).select_from(LedgerEntry)
                            .where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "usage")).one() > 0
    # each record counted in exactly one entry of its period; each entry charges what it shows
    assert_entries_match_records(session)


def test_licence_batches_add_up_to_the_seats(session):
    subs = session.exec(select(Subscription).where(Subscription.status.in_(["active", "suspended", "trial"]))).all()
    for sub in subs:
        plan = session.get(Plan, sub.plan_id)
        if plan.billing_type != "license":
            continue
        held = session.exec(select(func.sum(LicenceBatch.quantity)).where(LicenceBatch.subscription_id == sub.id)).one()
        assert held == sub.quantity, sub.name
    # One batch is still inside its 168-hour cancellation window (the page shows the time left).
    assert session.exec(select(LicenceBatch).where(LicenceBatch.window_ends_at > NOW)).first() is not None


def test_every_demo_user_signs_in_with_the_demo_password(session):
    for login in demo.LOGINS:
        token, user = auth.sign_in(session, login.email, demo.DEMO_PASSWORD, now=NOW)
        assert token and user.email == login.email
        membership = session.exec(select(Membership).where(Membership.user_id == user.id)).one()
        assert membership.role == login.role


def test_the_two_organisations_share_nothing(session):
    a, b = _org(session, "romashka"), _org(session, "vostok")
    members = {o.id: set(session.exec(select(Membership.user_id).where(Membership.org_id == o.id)).all())
               for o in (a, b)}
    assert members[a.id] and members[b.id] and not members[a.id] & members[b.id]
    for org in (a, b):
        sub_ids = set(session.exec(select(Subscription.id).where(Subscription.org_id == org.id)).all())
        for entry in session.exec(select(LedgerEntry).where(LedgerEntry.org_id == org.id)).all():
            assert entry.subscription_id is None or entry.subscription_id in sub_ids
        for event in session.exec(select(AuditEvent).where(AuditEvent.org_id == org.id)).all():
            assert event.user_id is None or event.user_id in members[org.id]
            assert event.subscription_id is None or event.subscription_id in sub_ids
        usage_subs = set(session.exec(select(UsageRecord.subscription_id).where(UsageRecord.org_id == org.id)).all())
        assert usage_subs <= sub_ids


def test_a_second_load_adds_nothing(session, loaded):
    before = demo.describe(session)
    result = demo.load(session, now=NOW + timedelta(days=3))
    assert result.created_orgs == [] and result.anchor == loaded[1].anchor
    assert demo.describe(session) == before


def test_demo_rates_cover_every_charge_day(session):
    # A charge in USD converted at a rate the panel does not have would be unexplainable.
    firsts = session.exec(select(LedgerEntry.source_currency, func.min(LedgerEntry.fx_date))
                          .where(LedgerEntry.source_currency.is_not(None))
                          .group_by(LedgerEntry.source_currency)).all()
    assert firsts
    for currency, first_day in firsts:
        assert first_day is not None
        assert session.exec(select(func.count()).select_from(models.ExchangeRate).where(
            models.ExchangeRate.currency == currency, models.ExchangeRate.rate_date <= first_day)).one() > 0
    assert session.exec(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.source_currency.is_not(None), LedgerEntry.fx_rate.is_(None))).one() == 0


def test_every_demo_money_movement_reads_in_english(session):
    """The demo posts what the services post: each entry names its action, so the English
    transactions list rebuilds its description instead of showing the stored Russian one."""
    import re

    from noventiq_panel.models import Role, User
    from noventiq_panel.services.billing import transactions
    from noventiq_panel.services.core.authz import Actor

    cyrillic = re.compile("[а-яА-ЯёЁ]")
    for org in session.exec(select(Organisation)).all():
        owner = session.exec(select(User).join(Membership, Membership.user_id == User.id)
                             .where(Membership.org_id == org.id, Membership.role == Role.OWNER)).first()
        rows, total = transactions.list_transactions(session, Actor(user_id=owner.id, org_id=org.id), limit=200,
                                                     group_usage=True)
        assert total and rows
        for row in rows:
            text = transactions.describe(row, "en", org.timezone)
            assert not cyrillic.search(text.replace(row.subscription_name, "")), (row.kind, text)


def test_the_demo_refuses_a_database_with_customers_it_did_not_create(sqlite_engine):
    """Issue 14: demo users have a published password; loading them beside real customers (or
    taking over an organisation or user that matches a demo one) must not happen."""
    from sqlmodel import Session

    from noventiq_panel.services.core.errors import Conflict
    from tests import factories as f

    with Session(sqlite_engine) as s:
        real = f.org(s, name=demo.ORGS[next(iter(demo.ORGS))]["name"], tax_id=demo.ORGS[next(iter(demo.ORGS))]["tax_id"])
        f.user(s, real, email="director@real.uz")
        before = demo.describe(s)
        with pytest.raises(Conflict) as exc:
            demo.load(s)
        assert exc.value.key == "demo.foreign_data"
        assert demo.describe(s) == before
