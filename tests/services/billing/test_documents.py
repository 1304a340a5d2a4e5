"""Closing documents: month boundaries in the organisation's time zone, totals equal to the ledger to
the tiyin, an unbroken number sequence per year under concurrent generators, no second number for
a month already generated, refusal of an open month, mail to Owner and Financial managers, access."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func
from sqlmodel import Session, select

from noventiq_panel.models import (
    ClosingDocument,
    ClosingRun,
    LedgerEntry,
    Notification,
    NotificationAttachment,
    Role,
    Sequence,
    Subscription,
)
from noventiq_panel.services.billing import documents
from noventiq_panel.services.core import clock, ledger
from noventiq_panel.services.core.errors import InvalidInput, NotFound

from tests import factories as f
from tests.concurrency import at_once

AFTER = datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)
UTC = timezone.utc


def _charge(session, o, amount, at, key, kind="charge", **kw):
    ledger.post(session, org_id=o.id, kind=kind, amount=Decimal(amount), idempotency_key=key, occurred_at=at,
                description=kw.pop("description", "Лицензии"), **kw)


def _counter(session, year=2026):
    session.rollback()
    row = session.get(Sequence, f"act-{year}")
    return row.value if row else 0


@pytest.fixture
def charged_org(session):
    o = f.org(session, name="ООО «Ромашка»", tax_id="300000001", address="г. Ташкент, ул. Навои, 1")
    owner = f.user(session, o, Role.OWNER, email="owner@romashka.uz")
    plans = f.catalog(session)
    basic = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Microsoft 365 Business Basic", quantity=10)
    azure = Subscription(org_id=o.id, plan_id=plans["azure-h"].id, name="Microsoft Azure", quantity=1)
    session.add_all([basic, azure])
    session.commit()
    # In the month (Asia/Tashkent, UTC+5): from 1 Oct 00:00 local (= 30 Sep 19:00 UTC)...
    _charge(session, o, "-300000.00", datetime(2026, 9, 30, 19, 0, tzinfo=UTC), "in-first", subscription_id=basic.id,
            quantity=Decimal(10), unit_price=Decimal("30000"), description="продление, 10 шт.")
    _charge(session, o, "-12345.67", datetime(2026, 10, 10, 5, tzinfo=UTC), "in-u1", kind="usage",
            subscription_id=azure.id)
    _charge(session, o, "-0.01", datetime(2026, 10, 20, 5, tzinfo=UTC), "in-u2", kind="usage", subscription_id=azure.id)
    _charge(session, o, "15000.00", datetime(2026, 10, 21, 5, tzinfo=UTC), "in-refund", kind="refund",
            subscription_id=basic.id, quantity=Decimal(-1), description="возврат, 1 шт.")
    # ...to 31 Oct 23:30 local (= 18:30 UTC), included
    _charge(session, o, "-90000.33", datetime(2026, 10, 31, 18, 30, tzinfo=UTC), "in-last", subscription_id=basic.id,
            quantity=Decimal(3), description="увеличение, 3 шт.")
    # Excluded: 30 Sep 23:59 local, 1 Nov 00:30 local (= 31 Oct 19:30 UTC), and money that is no charge
    _charge(session, o, "-7.00", datetime(2026, 9, 30, 18, 59, tzinfo=UTC), "out-before", subscription_id=basic.id)
    _charge(session, o, "-11.00", datetime(2026, 10, 31, 19, 30, tzinfo=UTC), "out-after", subscription_id=basic.id)
    _charge(session, o, "500000.00", datetime(2026, 10, 5, tzinfo=UTC), "topup", kind="topup")
    _charge(session, o, "-1.00", datetime(2026, 10, 5, tzinfo=UTC), "adj", kind="adjustment")
    session.commit()
    return o, owner


def test_act_total_equals_the_month_charges_to_the_tiyin(session, charged_org):
    o, _owner = charged_org
    [doc] = documents.generate_month(session, "2026-10", now=AFTER)
    start, end = datetime(2026, 9, 30, 19, 0, tzinfo=UTC), datetime(2026, 10, 31, 19, 0, tzinfo=UTC)
    ledger_sum = session.exec(select(func.sum(LedgerEntry.amount)).where(
        LedgerEntry.org_id == o.id, LedgerEntry.kind.in_(["charge", "usage", "refund"]),
        LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)).one()
    assert doc.total == -ledger_sum == Decimal("387346.01")
    assert (doc.org_id, doc.period, doc.year, doc.number, doc.kind) == (o.id, date(2026, 10, 1), 2026, 1, "act")
    lines, total, vat = documents.month_lines(session, o, date(2026, 10, 1))
    assert total == doc.total and vat == doc.vat == sum(line.vat for line in lines)
    # licence charges one line each, usage one line per subscription, refund negative
    assert sorted(line.amount for line in lines) == sorted(
        [Decimal("300000.00"), Decimal("-15000.00"), Decimal("90000.33"), Decimal("12345.68")])
    # prices include VAT at 12 %: VAT part = amount * 12 / 112
    assert {line.amount: line.vat for line in lines}[Decimal("300000.00")] == Decimal("32142.86")


def test_generating_a_month_again_takes_no_second_number(session, charged_org):
    documents.generate_month(session, "2026-10", now=AFTER)
    assert _counter(session) == 1
    assert documents.generate_month(session, date(2026, 10, 15), now=AFTER) == []
    assert _counter(session) == 1
    assert session.exec(select(func.count()).select_from(ClosingDocument)).one() == 1


def test_a_month_that_has_not_closed_is_refused_or_waits(session, charged_org):
    with pytest.raises(InvalidInput) as err:
        documents.generate_month(session, "2026-10", now=datetime(2026, 10, 20, tzinfo=UTC))
    assert err.value.key == "error.billing.month_not_closed"
    # 31 Oct 18:00 UTC: already November east of Tashkent, still 23:00 on 31 Oct in Tashkent
    assert documents.generate_month(session, "2026-10", now=datetime(2026, 10, 31, 18, 0, tzinfo=UTC)) == []
    assert _counter(session) == 0
    assert len(documents.generate_month(session, "2026-10", now=datetime(2026, 10, 31, 19, 0, tzinfo=UTC))) == 1
    with pytest.raises(InvalidInput):
        documents.generate_month(session, "2026-13", now=AFTER)


def test_numbers_are_unbroken_per_year_across_organisations_and_months(session):
    orgs = [f.org(session, name=f"ООО «Орг {i}»", tax_id=f"30000010{i}") for i in range(3)]
    for i, o in enumerate(orgs):
        _charge(session, o, "-100", datetime(2026, 11, 10, tzinfo=UTC), f"nov{i}")
        _charge(session, o, "-200", datetime(2026, 12, 10, tzinfo=UTC), f"dec{i}")
        _charge(session, o, "-300", datetime(2027, 1, 10, tzinfo=UTC), f"jan{i}")
    _charge(session, orgs[1], "-1", datetime(2026, 10, 10, tzinfo=UTC), "only-oct")
    session.commit()
    now = datetime(2027, 2, 5, tzinfo=UTC)
    numbers = []
    for month in ("2026-11", "2026-10", "2026-12", "2027-01"):
        numbers += [(d.year, d.number) for d in documents.generate_month(session, month, now=now)]
    assert numbers == [(2026, n) for n in range(1, 8)] + [(2027, 1), (2027, 2), (2027, 3)]


def _concurrent_orgs(engine, n):
    with Session(engine, expire_on_commit=False) as s:
        ids = []
        for i in range(n):
            o = f.org(s, name=f"ООО «Параллель {i}»", tax_id=f"3000002{i:02d}")
            f.user(s, o, Role.OWNER)
            _charge(s, o, f"-{1000 + i}.{i:02d}", datetime(2026, 10, 15, tzinfo=UTC), f"p{i}")
            ids.append(o.id)
        s.commit()
    return ids


def test_two_concurrent_generators_give_an_unbroken_sequence_and_one_document_per_org(engine):
    org_ids = _concurrent_orgs(engine, 6)

    def generate():
        with Session(engine, expire_on_commit=False) as s:
            return [(d.org_id, d.number) for d in documents.generate_month(s, "2026-10", now=AFTER)]

    results = at_once(generate, generate)  # raises what either raised
    made = [x for r in results for x in r]
    assert sorted(n for _o, n in made) == list(range(1, 7))  # each number handed out once, no gap
    with Session(engine) as s:
        docs = s.exec(select(ClosingDocument)).all()
        assert sorted(d.number for d in docs) == list(range(1, 7))
        assert sorted(d.org_id for d in docs) == sorted(org_ids)  # one per organisation
        assert s.get(Sequence, "act-2026").value == 6
        mails = s.exec(select(func.count()).select_from(Notification)
                       .where(Notification.kind == "closing_documents")).one()
        assert mails == 6


def test_documents_are_mailed_to_owner_and_finance_with_the_pdf(session, charged_org):
    o, _owner = charged_org
    f.user(session, o, Role.FINANCE, email="fin@romashka.uz")
    f.user(session, o, Role.ADMIN, email="admin@romashka.uz")
    [doc] = documents.generate_month(session, "2026-10", now=AFTER)
    mails = session.exec(select(Notification).where(Notification.kind == "closing_documents")).all()
    assert sorted(m.to_email for m in mails) == ["fin@romashka.uz", "owner@romashka.uz"]
    for m in mails:
        att = session.exec(select(NotificationAttachment).where(NotificationAttachment.notification_id == m.id)).one()
        assert att.mime_type == "application/pdf" and att.data == doc.pdf and att.filename == documents.filename(doc)


def test_list_and_download_are_limited_to_the_organisation(session, charged_org):
    o, owner = charged_org
    other = f.org(session, name="ООО «Чужая»", tax_id="300000002")
    _charge(session, other, "-5", datetime(2026, 10, 5, tzinfo=UTC), "other")
    session.commit()
    docs = documents.generate_month(session, "2026-10", now=AFTER)
    mine = next(d for d in docs if d.org_id == o.id)
    theirs = next(d for d in docs if d.org_id == other.id)
    a = f.actor(owner, o)
    rows, total = documents.list_documents(session, a)
    assert total == 1 and rows[0].id == mine.id and rows[0].act_number == f"АКТ-2026-{mine.number:06d}"
    assert documents.list_documents(session, a, year=2025)[1] == 0
    assert documents.list_documents(session, a, start="2026-10", end="2026-10")[1] == 1
    name, pdf = documents.document_pdf(session, a, mine.id)
    assert name == documents.filename(mine) and pdf.startswith(b"%PDF")
    for bad in (theirs.id, 999999, "abc", None):
        with pytest.raises(NotFound):
            documents.document_pdf(session, a, bad)
    fin = f.user(session, o, Role.FINANCE)
    assert documents.document_pdf(session, f.actor(fin, o), mine.id)[0] == name


# -- a month that nets to a credit --------------------------------------------------------------

def _month_of_credit(session):
    """September: a charge of 100; October: a refund of 250 outweighs a charge of 50 (net credit 200);
    November: a charge of 300; December: a charge of 120."""
    o = f.org(session, name="ООО «Кредит»", tax_id="300000777")
    f.user(session, o, Role.OWNER, email="owner@credit.uz")
    plans = f.catalog(session)
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Microsoft 365 Business Basic", quantity=5)
    session.add(sub)
    session.commit()
    day = lambda m, d=10: datetime(2026, m, d, 5, tzinfo=UTC)  # noqa: E731
    _charge(session, o, "-100.00", day(9), "sep", subscription_id=sub.id)
    _charge(session, o, "-50.00", day(10), "oct-c", subscription_id=sub.id)
    _charge(session, o, "250.00", day(10, 20), "oct-r", kind="refund", subscription_id=sub.id,
            description="возврат, 5 шт.")
    _charge(session, o, "-300.00", day(11), "nov", subscription_id=sub.id)
    _charge(session, o, "-120.00", day(12), "dec", subscription_id=sub.id)
    session.commit()
    return o


def _acts(session, o):
    docs = session.exec(select(ClosingDocument).where(ClosingDocument.org_id == o.id)
                        .order_by(ClosingDocument.period)).all()
    session.commit()
    return docs


def test_a_month_netting_to_a_credit_has_no_act_and_is_carried_into_the_next(session):
    o = _month_of_credit(session)
    for month, now in (("2026-09", datetime(2026, 10, 2, tzinfo=UTC)), ("2026-10", AFTER),
                       ("2026-11", datetime(2026, 12, 2, tzinfo=UTC)), ("2026-12", datetime(2027, 1, 2, tzinfo=UTC))):
        documents.generate_month(session, month, now=now)
    sep, nov, dec = _acts(session, o)
    assert (sep.period, sep.total, sep.carried_from) == (date(2026, 9, 1), Decimal("100.00"), None)
    # no act for October (a credit of 200); November settles it: 300 - 200
    assert (nov.period, nov.total, nov.carried_from) == (date(2026, 11, 1), Decimal("100.00"), date(2026, 10, 1))
    assert (dec.total, dec.carried_from) == (Decimal("120.00"), None)
    # every tiyin of consumption is in exactly one act
    consumption = session.exec(select(func.sum(LedgerEntry.amount)).where(
        LedgerEntry.org_id == o.id, LedgerEntry.kind.in_(ledger.CONSUMPTION_KINDS))).one()
    session.commit()
    assert sum(d.total for d in (sep, nov, dec)) == -consumption
    # the November act shows the carried credit as its own line, with a negative VAT part
    lines, _subs, total, _vat = documents.month_lines_with_subscriptions(session, o, date(2026, 11, 1))
    session.commit()
    assert total == Decimal("300.00")  # the month's own lines; the act adds the carried line
    assert [d.number for d in (sep, nov, dec)] == sorted(d.number for d in (sep, nov, dec))


def test_a_credit_larger_than_the_next_month_waits_for_a_later_act(session):
    o = _month_of_credit(session)
    _charge(session, o, "900.00", datetime(2026, 10, 25, 5, tzinfo=UTC), "oct-r2", kind="refund",
            description="возврат")
    session.commit()  # October: -50 + 250 + 900 = a credit of 1100; November 300, December 120
    for month, now in (("2026-10", AFTER), ("2026-11", datetime(2026, 12, 2, tzinfo=UTC)),
                       ("2026-12", datetime(2027, 1, 2, tzinfo=UTC))):
        assert documents.generate_month(session, month, now=now) == []
    assert documents.carried_months(session, o, date(2027, 1, 1)) == (date(2026, 10, 1), Decimal("-680.00"))
    session.commit()


def test_the_carry_is_decided_the_same_way_on_every_run(session):
    """Generating the months late, out of order or twice gives the same acts."""
    o = _month_of_credit(session)
    late = datetime(2027, 2, 1, tzinfo=UTC)
    for month in ("2026-11", "2026-09", "2026-11", "2026-10", "2026-12", "2026-12"):
        documents.generate_month(session, month, now=late)
    got = [(d.period, d.total, d.carried_from) for d in _acts(session, o)]
    # November was generated before September: the walk restarts after September's own charge
    assert got == [(date(2026, 9, 1), Decimal("100.00"), None),
                   (date(2026, 11, 1), Decimal("100.00"), date(2026, 10, 1)),
                   (date(2026, 12, 1), Decimal("120.00"), None)]


_TAX_IDS = itertools.count(310000000)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nets=st.lists(st.integers(min_value=-500, max_value=500), min_size=2, max_size=6),
       order=st.randoms(use_true_random=False))
def test_every_tiyin_of_consumption_is_in_one_act_or_still_carried(sqlite_engine, nets, order):
    """Months of random net consumption (credits included), their acts generated in a random order
    and some twice: the acts never go below zero and, with what is still carried, they add up to
    the consumption exactly."""
    with Session(sqlite_engine, expire_on_commit=False) as session:
        o = f.org(session, name="ООО «Случай»", tax_id=f"{next(_TAX_IDS)}")
        session.commit()
        months = [date(2025, 1 + i, 1) for i in range(len(nets))]
        for i, (m, net) in enumerate(zip(months, nets)):
            if net:
                _charge(session, o, f"{-net}.00", datetime(m.year, m.month, 10, tzinfo=UTC), f"h{o.id}-{i}",
                        kind="charge" if net > 0 else "refund")
        session.commit()
        runs = months + order.sample(months, k=len(months) // 2)
        order.shuffle(runs)
        for m in runs:
            documents.generate_month(session, m, now=datetime(2026, 1, 2, tzinfo=UTC))
        acts = _acts(session, o)
        assert all(d.total > 0 for d in acts)
        _first, carried = documents.carried_months(session, o, date(2025, 1 + len(nets), 1))
        session.commit()
        assert sum(d.total for d in acts) + carried == sum(nets)


# -- late usage of a month that had no act --------------------------------------------------------

def _consumption(session, o):
    total = session.exec(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
        LedgerEntry.org_id == o.id, LedgerEntry.kind.in_(ledger.CONSUMPTION_KINDS))).one()
    session.commit()
    return -Decimal(total)


def test_late_usage_of_a_credit_month_rated_after_its_documents_is_in_the_next_act(session):
    """October nets to a credit (no act) and its documents are generated; then the vendor's late
    usage of 31 October, more than the credit, is rated. It used to stay in October (no act covered
    it), which then owed money, so November's act skipped October as a month with an act of its own
    it never had: the usage was in no act. October is closed once its documents ran: the usage is
    dated when rated and November's act has it, with October's whole credit carried."""
    from tests.services.usage_world import add_usage, payg_sub, payg_world, set_rates, tashkent
    from noventiq_panel.services.usage import rating

    o, plans, _owner = payg_world(session)
    sub = payg_sub(session, o, plans["azure-h"], name="Azure prod")
    set_rates(session, date(2026, 10, 29), 8)
    _charge(session, o, "-100.00", tashkent(2026, 9, 10), "sep")
    _charge(session, o, "-50.00", tashkent(2026, 10, 10), "oct-c")
    _charge(session, o, "250.00", tashkent(2026, 10, 20), "oct-r", kind="refund", description="возврат")
    _charge(session, o, "-300.00", tashkent(2026, 11, 10), "nov")
    session.commit()
    [sep] = documents.generate_month(session, "2026-09", now=tashkent(2026, 10, 1, 2))
    assert documents.generate_month(session, "2026-10", now=tashkent(2026, 11, 1, 2)) == []  # a credit: no act
    add_usage(session, sub, tashkent(2026, 10, 31, 20), 2)  # the vendor's late records of October
    rated_at = tashkent(2026, 11, 5, 10)
    rating.rate_usage(session, now=rated_at)
    late = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).one()
    session.commit()
    assert late.period_start == tashkent(2026, 10, 31) and -late.amount > Decimal("200.00")
    assert late.occurred_at == rated_at  # October is closed: charged in the open month
    [nov] = documents.generate_month(session, "2026-11", now=tashkent(2026, 12, 1, 2))
    acts = _acts(session, o)
    assert sum(d.total for d in acts) == _consumption(session, o)  # nothing lost, nothing twice
    assert [(d.period, d.total, d.carried_from) for d in acts] == [
        (date(2026, 9, 1), Decimal("100.00"), None),
        (date(2026, 11, 1), Decimal("300.00") - late.amount - Decimal("200.00"), date(2026, 10, 1))]
    assert acts[0].id == sep.id and acts[1].id == nov.id
    # the recalculation line is all of October's entries; the late usage is November's own line
    lines = nov.esf_record["lines"]
    assert [Decimal(x["amount"]) for x in lines if x["description"].startswith("Перерасчёт")] == [Decimal("-200.00")]
    assert Decimal("0") - late.amount in [Decimal(x["amount"]) for x in lines if "Azure prod" in x["description"]]
    # generating the months again, in another order, adds nothing
    for month in ("2026-10", "2026-11", "2026-09"):
        assert documents.generate_month(session, month, now=tashkent(2026, 12, 2)) == []


def test_late_usage_of_a_month_the_organisation_had_no_charge_in_is_in_the_next_act(session):
    """September has an act; the organisation has no charge in October, so October's documents
    pass it by; then usage of 31 October arrives late. October is closed all the same (its
    documents ran): the usage goes into November's act, not into an October nobody generates."""
    from tests.services.usage_world import add_usage, payg_sub, payg_world, set_rates, tashkent
    from noventiq_panel.services.usage import rating

    o, plans, _owner = payg_world(session)
    sub = payg_sub(session, o, plans["azure-h"])
    set_rates(session, date(2026, 10, 29), 8)
    _charge(session, o, "-100.00", tashkent(2026, 9, 10), "sep")
    _charge(session, o, "-300.00", tashkent(2026, 11, 10), "nov")
    session.commit()
    documents.generate_month(session, "2026-09", now=tashkent(2026, 10, 1, 2))
    assert documents.generate_month(session, "2026-10", now=tashkent(2026, 11, 1, 2)) == []
    add_usage(session, sub, tashkent(2026, 10, 31, 20), 2)
    rating.rate_usage(session, now=tashkent(2026, 11, 5, 10))
    [nov] = documents.generate_month(session, "2026-11", now=tashkent(2026, 12, 1, 2))
    assert nov.total > Decimal("300.00")
    assert sum(d.total for d in _acts(session, o)) == _consumption(session, o)


def test_a_month_is_closed_only_where_it_had_ended_when_its_documents_ran(session):
    """The documents job runs at 02:30 in Tashkent on the 1st: October has ended in Tashkent but
    not in New York, so October stays open there (and is generated there by a later run)."""
    tashkent_org = f.org(session, name="ООО «Восток»", timezone="Asia/Tashkent")
    ny_org = f.org(session, name="LLC West", timezone="America/New_York")
    for o in (tashkent_org, ny_org):
        _charge(session, o, "-100.00", datetime(2026, 9, 10, tzinfo=UTC), f"sep{o.id}")
    session.commit()
    zones = {tashkent_org.id: "Asia/Tashkent", ny_org.id: "America/New_York"}
    assert documents.closed_through(session, zones) == {}
    documents.generate_month(session, "2026-09", now=datetime(2026, 10, 5, tzinfo=UTC))
    assert documents.closed_through(session, zones) == {tashkent_org.id: date(2026, 9, 1),
                                                        ny_org.id: date(2026, 9, 1)}
    documents.generate_month(session, "2026-10", now=datetime(2026, 10, 31, 21, 30, tzinfo=UTC))  # 02:30 Tashkent
    assert documents.closed_through(session, zones) == {tashkent_org.id: date(2026, 10, 1),
                                                        ny_org.id: date(2026, 9, 1)}
    documents.generate_month(session, "2026-10", now=datetime(2026, 11, 1, 9, 30, tzinfo=UTC))  # 14:30 Tashkent
    assert documents.closed_through(session, zones)[ny_org.id] == date(2026, 10, 1)
    # an earlier moment recorded later does not reopen it
    documents.generate_month(session, "2026-10", now=datetime(2026, 10, 31, 21, 30, tzinfo=UTC))
    assert documents.closed_through(session, zones)[ny_org.id] == date(2026, 10, 1)
    session.commit()


# -- the invariant, over whole histories --------------------------------------------------------------

_ZONES = ("Asia/Tashkent", "America/New_York")
_MONTHS = [date(2025, m, 1) for m in range(1, 9)]


def _history():
    """Per month: its charges (> 0) and refunds (< 0), usage of the month rated in it, and what
    happens after it ends: documents of the month generated (maybe twice, maybe weeks later),
    late usage or vendor credits of the month rated, refunds posted, at days 1-4 of the next
    month or the one after, 02:00 or 14:00 in Tashkent."""
    late = st.tuples(st.sampled_from(["gen", "gen", "late_usage", "refund"]), st.integers(1, 2),
                     st.integers(1, 4), st.sampled_from([2, 14]), st.integers(-400, 600).filter(bool))
    month = st.tuples(st.lists(st.integers(-500, 500).filter(bool), max_size=3),
                      st.one_of(st.none(), st.integers(1, 400)), st.lists(late, max_size=4))
    return st.lists(month, min_size=2, max_size=5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=_history(), zone=st.sampled_from(_ZONES))
def test_every_entry_is_in_one_act_or_still_carried_whatever_comes_late(sqlite_engine, history, zone):
    """Charges, refunds, usage and vendor credits of random months, with late usage and credits
    rated after the month's documents (which ran at random moments, some twice, some not at all
    until the end): every act is positive and totals exactly the entries of the months it settles
    (its own, and the carried ones from ``carried_from``); no entry is in two acts; what no act
    holds is exactly what is still carried into the next act."""
    from noventiq_panel.models import UsageRecord
    from noventiq_panel.services.core.clock import month_bounds, next_month
    from noventiq_panel.services.usage import rating
    from tests.services.usage_world import payg_sub, payg_world

    def tashkent_time(month, extra, day, hour):
        m = month
        for _ in range(extra):
            m = next_month(m)
        return datetime(m.year, m.month, day, hour, tzinfo=UTC) - timedelta(hours=5)

    with Session(sqlite_engine, expire_on_commit=False) as session:
        session.exec(delete(ClosingRun))  # the examples share the database: no month is closed yet
        session.commit()
        o, plans, _owner = payg_world(session, markup="0", tz=zone)
        sub = payg_sub(session, o, plans["azure-h"])
        keys = itertools.count()
        events = []  # (when, order, action, args)
        for i, (charges, usage, afterwards) in enumerate(history):
            m = _MONTHS[i]
            start, end = month_bounds(m, zone)
            for k, v in enumerate(charges):
                events.append((start + timedelta(days=5 + k), 0, "post", (v,)))
            if usage:
                events.append((start + timedelta(days=15), 0, "usage", (start + timedelta(days=14), usage)))
            for what, extra, day, hour, v in afterwards:
                at = tashkent_time(m, extra, day, hour)
                if what == "gen":
                    events.append((at, 1, "gen", (m,)))
                elif what == "late_usage":
                    events.append((at, 0, "usage", (end - timedelta(hours=2), v)))
                else:
                    events.append((at, 0, "post", (-abs(v),)))
        events.sort(key=lambda e: (e[0], e[1]))
        generated = set()
        for at, _order, action, args in events:
            if action == "post":
                (v,) = args
                _charge(session, o, f"{-v}.00", at, f"x{o.id}-{next(keys)}", kind="charge" if v > 0 else "refund")
                session.commit()
            elif action == "usage":
                period_start, cost = args
                session.add(UsageRecord(org_id=o.id, subscription_id=sub.id, period_start=period_start,
                                        period_end=period_start + timedelta(hours=1), cost=Decimal(cost),
                                        currency="UZS", source_key=f"u{o.id}-{next(keys)}"))
                session.commit()
                rating.rate_usage(session, now=at)
            else:
                (m,) = args
                documents.generate_month(session, m, now=at)
                if at >= month_bounds(m, zone)[1]:  # the month had ended for the organisation: it was generated
                    generated.add(m)
        # the months whose documents never ran, at last, in order (late entries reach two months on)
        months = _MONTHS[:len(history) + 2]
        for m in months:
            if m not in generated:
                documents.generate_month(session, m, now=datetime(2026, 1, 1, tzinfo=UTC))

        session.expire_all()
        entries = session.exec(select(LedgerEntry).where(
            LedgerEntry.org_id == o.id, LedgerEntry.kind.in_(ledger.CONSUMPTION_KINDS))).all()
        acts = _acts(session, o)

        def month_of(e):
            return clock.month_start(clock.local_date(e.occurred_at, zone))

        held: dict[int, int] = {}  # entry id -> the act that holds it
        for act in acts:
            assert act.total > 0
            settles = {act.period} | ({d for d in _MONTHS if act.carried_from <= d < act.period}
                                      if act.carried_from else set())
            mine = [e for e in entries if month_of(e) in settles]
            assert act.total == -sum(e.amount for e in mine), (act.period, act.carried_from)
            for e in mine:
                assert e.id not in held, f"entry {e.id} is in two acts"
                held[e.id] = act.id
        assert all(month_of(e) in months for e in entries)
        _first, carried = documents.carried_months(session, o, next_month(months[-1]))
        session.commit()
        assert -sum((e.amount for e in entries if e.id not in held), Decimal("0.00")) == carried
        assert sum(d.total for d in acts) + carried == -sum(e.amount for e in entries)


def test_closing_a_month_waits_for_a_rating_batch_in_flight(engine):
    """A rating batch holds ``closingdocument`` in SHARE mode and dates usage by the closed months
    it saw when it began. Closing a month (here a credit month: no act, so nothing else touches
    that table) waits for the batch to commit, so no batch that missed the run dates usage into
    the month after its act or credit was decided. (SQLite: one writer at a time anyway.)"""
    import threading

    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite runs one writing transaction at a time")
    with Session(engine, expire_on_commit=False) as s:
        o = f.org(s, name="ООО «Очередь»", tax_id="300000555")
        _charge(s, o, "100.00", datetime(2026, 10, 10, tzinfo=UTC), "credit", kind="refund", description="возврат")
        s.commit()
    done = threading.Event()

    def close_october():
        with Session(engine, expire_on_commit=False) as s:
            assert documents.generate_month(s, "2026-10", now=AFTER) == []
        done.set()

    with engine.connect() as batch:
        tx = batch.begin()
        batch.exec_driver_sql("LOCK TABLE closingdocument IN SHARE MODE")  # as rating._run_batch does
        worker = threading.Thread(target=close_october)
        worker.start()
        try:
            assert not done.wait(1.5)  # the run waits for the batch ...
            with Session(bind=batch) as s:  # ... which still finds October open
                assert documents.closed_through(s, {o.id: o.timezone}) == {}
        finally:
            tx.commit()
            worker.join(30)
    assert done.is_set()
    with Session(engine) as s:
        assert documents.closed_through(s, {o.id: o.timezone}) == {o.id: date(2026, 10, 1)}
