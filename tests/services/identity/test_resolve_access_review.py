"""Review of 69c6084 (``auth.resolve`` keeps the rows it read alive for the unit of work).

The organisation row ``resolve`` read at the start of a unit of work stays in the session's
identity map (``db.keep_loaded``). ``ledger.lock_organisation`` reads the row again with
``SELECT ... FOR UPDATE`` but without ``populate_existing``: SQLAlchemy then answers with the object
already in the map and leaves its attributes as they were read before the lock. On PostgreSQL
(READ COMMITTED) a change committed by another transaction between ``resolve`` and the lock is
therefore not seen by the money checks made under the lock (billing mode, credit limit, the
organisation being active), although the database returned it to the locking statement.
Before the change nothing held the row between ``resolve`` and the lock, so the lock read it fresh.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlmodel import Session

from noventiq_panel.models import Organisation
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import InsufficientFunds
from noventiq_panel.services.identity import auth
from noventiq_panel.services.subscriptions import ordering

from tests.services.subs_world import make_world

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _postpaid_world(engine):
    """A postpaid organisation with a credit limit, its owner signed in (the session not due for a
    touch at NOW, so ``resolve`` keeps its rows for the unit of work)."""
    with Session(engine, expire_on_commit=False) as s:
        w = make_world(s)
        w.org.billing_mode, w.org.credit_limit = "postpaid", Decimal("100000")
        s.add(w.org)
        raw = auth._start_session(s, w.owner, w.org.id, "", NOW)
        s.commit()
        return raw, w.org.id, w.owner.id, w.plan("basic-m").id


def _only_postgresql(engine):
    if engine.dialect.name != "postgresql":
        # SQLite: the unit of work holds the write lock from its first statement, nobody commits
        # between resolve and the lock
        pytest.skip("a commit between resolve and the lock needs PostgreSQL's concurrency")


def test_lock_organisation_sees_the_row_as_the_database_has_it_after_resolve(engine):
    _only_postgresql(engine)
    raw, org_id, _owner_id, _plan_id = _postpaid_world(engine)
    with Session(engine, expire_on_commit=False) as unit:  # one unit of work (db.session_scope)
        auth.resolve(unit, raw, now=NOW)
        with Session(engine, expire_on_commit=False) as reseller:  # meanwhile: the credit is withdrawn
            o = reseller.get(Organisation, org_id)
            o.billing_mode, o.credit_limit = "prepaid", Decimal("0")
            reseller.commit()
        locked = ledger.lock_organisation(unit, org_id)
        seen = (locked.billing_mode, locked.credit_limit)
        unit.rollback()
    assert seen == ("prepaid", Decimal("0")), f"the lock handed back the row read before it: {seen}"


def test_an_order_is_not_charged_on_a_credit_limit_withdrawn_before_the_lock(engine):
    """Money: the owner's order event resolves (reads the organisation: postpaid, 100 000 credit);
    the reseller switches the organisation to prepaid (no credit) and commits; the order takes the
    organisation's lock and checks the funds on the row read before the lock: 30 000 charged on a
    zero balance of a prepaid organisation."""
    _only_postgresql(engine)
    raw, org_id, owner_id, plan_id = _postpaid_world(engine)
    with Session(engine, expire_on_commit=False) as unit:
        info = auth.resolve(unit, raw, now=NOW)
        with Session(engine, expire_on_commit=False) as reseller:
            o = reseller.get(Organisation, org_id)
            o.billing_mode, o.credit_limit = "prepaid", Decimal("0")
            reseller.commit()
        outcome = None
        try:
            outcome = ordering.order(unit, Actor(user_id=info.user_id, org_id=info.org_id), plan_id, 1, now=NOW)
        except InsufficientFunds:
            pass
    with Session(engine) as check:
        balance = ledger.balance(check, org_id)
    assert outcome is None and balance == Decimal("0.00"), (
        f"a prepaid organisation without funds was charged: balance {balance}")
