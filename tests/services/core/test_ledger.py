"""The ledger: balance = sum, idempotency under concurrency, rounding once, no float."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import InvalidInput

from tests import factories as f


def test_balance_is_the_sum_after_any_sequence(session):
    o = f.org(session)
    rng = random.Random(7)
    expected = Decimal("0.00")
    for i in range(60):
        amount = Decimal(rng.randint(-500000, 500000)) / 100
        ledger.post(session, org_id=o.id, kind="adjustment", amount=amount, idempotency_key=f"k{i}")
        expected += amount
        if i % 7 == 0:
            session.commit()
            assert ledger.balance(session, o.id) == expected
    session.commit()
    assert ledger.balance(session, o.id) == expected
    total = sum((e.amount for e in session.exec(select(LedgerEntry)).all()), Decimal("0"))
    assert total == expected


def test_same_key_twice_posts_once(session):
    o = f.org(session)
    a = ledger.post(session, org_id=o.id, kind="topup", amount=Decimal("100"), idempotency_key="pay-1")
    b = ledger.post(session, org_id=o.id, kind="topup", amount=Decimal("100"), idempotency_key="pay-1")
    session.commit()
    assert a.id == b.id
    assert ledger.balance(session, o.id) == Decimal("100.00")


def test_same_key_from_two_threads_posts_once(engine):
    with Session(engine) as s:
        o = f.org(s)
        org_id = o.id
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker():
        try:
            with Session(engine) as s:
                barrier.wait()
                ledger.post(s, org_id=org_id, kind="topup", amount=Decimal("250.00"), idempotency_key="race")
                s.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as s:
        rows = s.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == "race")).all()
        assert len(rows) == 1
        assert ledger.balance(s, org_id) == Decimal("250.00")
    # A loser may see the unique violation at commit on PostgreSQL; it must never post twice.
    assert len(errors) <= 1


def test_amounts_are_rounded_half_up_once(session):
    o = f.org(session)
    e1 = ledger.post(session, org_id=o.id, kind="charge", amount=Decimal("-0.005"), idempotency_key="r1")
    e2 = ledger.post(session, org_id=o.id, kind="charge", amount=Decimal("1.125"), idempotency_key="r2")
    e3 = ledger.post(session, org_id=o.id, kind="charge", amount=Decimal("1.124999"), idempotency_key="r3")
    session.commit()
    assert (e1.amount, e2.amount, e3.amount) == (Decimal("-0.01"), Decimal("1.13"), Decimal("1.12"))


def test_a_float_is_refused_with_a_clear_error(session):
    o = f.org(session)
    with pytest.raises(InvalidInput, match="float"):
        ledger.post(session, org_id=o.id, kind="topup", amount=0.1, idempotency_key="f")
    session.rollback()
    assert ledger.balance(session, o.id) == Decimal("0.00")
