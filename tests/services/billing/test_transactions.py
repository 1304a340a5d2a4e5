"""Transactions: the running balance over the whole ledger (equals the balance), filters in the
organisation's time zone, paging, isolation, CSV/XLSX export."""

from __future__ import annotations

import csv
import io
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlmodel import select

from noventiq_panel.models import LedgerEntry, Role, Subscription
from noventiq_panel.services.core import ledger
from noventiq_panel.services.billing import transactions
from noventiq_panel.services.core.errors import Forbidden, InvalidInput

from tests import factories as f

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def org_actor(session):
    o = f.org(session, name="ООО «Ромашка»")
    u = f.user(session, o, Role.OWNER)
    return o, f.actor(u, o)


def _post(session, o, kind, amount, at, key, **kw):
    return ledger.post(session, org_id=o.id, kind=kind, amount=Decimal(amount), idempotency_key=key,
                       occurred_at=at, description=kw.pop("description", f"{kind} {key}"), **kw)


def _all_rows(session, a, **filters):
    rows, total = transactions.list_transactions(session, a, limit=200, **filters)
    assert len(rows) == total
    return rows


def test_running_balance_of_the_newest_row_equals_the_balance(session, org_actor):
    o, a = org_actor
    rng = random.Random(5)
    kinds = ["topup", "charge", "usage", "refund", "adjustment"]
    for i in range(80):
        # many entries share a timestamp: ties are ordered by id on both backends
        at = T0 + timedelta(hours=rng.randint(0, 30))
        _post(session, o, rng.choice(kinds), Decimal(rng.randint(-900000, 900000)) / 100, at, f"k{i}")
    session.commit()
    rows = _all_rows(session, a)
    assert rows[0].running_balance == ledger.balance(session, o.id)
    # each row's running balance is the sum of everything up to it in (occurred_at, id) order
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.org_id == o.id)
                           .order_by(LedgerEntry.occurred_at, LedgerEntry.id)).all()
    expected, acc = {}, Decimal("0.00")
    for e in entries:
        acc += e.amount
        expected[e.id] = acc
    assert {r.id: r.running_balance for r in rows} == expected
    # newest first
    assert [(r.occurred_at, r.id) for r in rows] == sorted(((r.occurred_at, r.id) for r in rows), reverse=True)


def test_running_balance_is_over_the_whole_ledger_whatever_the_filter(session, org_actor):
    o, a = org_actor
    _post(session, o, "topup", "1000.00", T0, "t1")
    _post(session, o, "charge", "-300.00", T0 + timedelta(days=1), "c1")
    _post(session, o, "topup", "50.50", T0 + timedelta(days=2), "t2")
    _post(session, o, "charge", "-0.50", T0 + timedelta(days=3), "c2")
    session.commit()
    charges = _all_rows(session, a, kind="charge")
    assert [(r.amount, r.running_balance) for r in charges] == [(Decimal("-0.50"), Decimal("750.00")),
                                                                (Decimal("-300.00"), Decimal("700.00"))]
    page, total = transactions.list_transactions(session, a, offset=1, limit=2)
    assert total == 4 and [r.running_balance for r in page] == [Decimal("750.50"), Decimal("700.00")]


def test_other_organisations_entries_neither_show_nor_count(session, org_actor):
    o, a = org_actor
    other = f.org(session, name="ООО «Чужая»", tax_id="300000002")
    _post(session, o, "topup", "100", T0, "mine")
    _post(session, other, "topup", "999999", T0 - timedelta(days=1), "theirs")
    session.commit()
    rows = _all_rows(session, a)
    assert [r.amount for r in rows] == [Decimal("100.00")] and rows[0].running_balance == Decimal("100.00")
    stranger = f.user(session, other, Role.OWNER)
    with pytest.raises(Forbidden):
        transactions.list_transactions(session, f.actor(stranger, o))


def test_period_filter_uses_the_organisation_local_days(session, org_actor):
    o, a = org_actor
    # 31 Oct 23:30 in Tashkent = 18:30 UTC; 1 Nov 00:30 in Tashkent = 19:30 UTC on 31 Oct
    _post(session, o, "charge", "-1", datetime(2026, 10, 31, 18, 30, tzinfo=timezone.utc), "oct")
    _post(session, o, "charge", "-2", datetime(2026, 10, 31, 19, 30, tzinfo=timezone.utc), "nov")
    session.commit()
    october = _all_rows(session, a, start=date(2026, 10, 1), end=date(2026, 10, 31))
    november = _all_rows(session, a, start="2026-11-01", end="2026-11-30")
    assert [r.amount for r in october] == [Decimal("-1.00")]
    assert [r.amount for r in november] == [Decimal("-2.00")]


def test_subscription_filter_and_names(session, org_actor):
    o, a = org_actor
    plans = f.catalog(session)
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="", quantity=3)
    session.add(sub)
    session.commit()
    _post(session, o, "charge", "-90000", T0, "s1", subscription_id=sub.id, quantity=Decimal(3))
    _post(session, o, "topup", "100000", T0 - timedelta(days=1), "s0")
    session.commit()
    rows = _all_rows(session, a, subscription_id=sub.id)
    assert len(rows) == 1 and rows[0].subscription_name == "Microsoft 365 Business Basic"
    assert rows[0].running_balance == Decimal("10000.00")


@pytest.mark.parametrize("bad", [{"kind": "theft"}, {"start": "yesterday"}, {"subscription_id": "x"},
                                 {"offset": -1}, {"limit": "many"}])
def test_bad_filters_are_refused(session, org_actor, bad):
    _o, a = org_actor
    with pytest.raises(InvalidInput):
        transactions.list_transactions(session, a, **bad)


def test_csv_export_has_russian_headers_and_plain_numbers(session, org_actor):
    o, a = org_actor
    _post(session, o, "topup", "1234567.8", T0, "t1", description="Оплата по счёту СЧ-2026-000001")
    _post(session, o, "charge", "-0.05", T0 + timedelta(hours=1), "c1")
    session.commit()
    name, data = transactions.export_transactions(session, a, "csv", now=T0)
    assert name.endswith(".csv") and data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "Дата" and rows[0][-1] == "Остаток после операции"
    assert rows[1][5] == "-0.05" and rows[1][7] == "1234567.75"
    assert rows[2][1] == "Пополнение" and rows[2][2] == "Оплата по счёту СЧ-2026-000001"
    assert rows[2][0] == "2026-10-01 05:00:00"  # Tashkent time


def test_uzbek_export_has_uzbek_headers_and_kinds(session, org_actor):
    o, a = org_actor
    _post(session, o, "topup", "1000", T0, "t1")
    session.commit()
    _name, data = transactions.export_transactions(session, a, "csv", locale="uz", now=T0)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:2] == ["Sana", "Operatsiya turi"] and rows[1][1] == "Toʻldirish"
    _name, data = transactions.export_transactions(session, a, "xlsx", locale="uz", now=T0)
    ws = load_workbook(io.BytesIO(data)).active
    assert ws.title == "Operatsiyalar" and ws["A1"].value == "Sana"


def test_xlsx_export_has_numbers_and_dates(session, org_actor):
    o, a = org_actor
    _post(session, o, "topup", "1000000", T0, "t1")
    _post(session, o, "usage", "-123.45", T0 + timedelta(days=1), "u1")
    _post(session, o, "charge", "-500", T0 + timedelta(days=40), "late")
    session.commit()
    name, data = transactions.export_transactions(session, a, "xlsx", end=date(2026, 10, 31), locale="en")
    assert name.endswith(".xlsx")
    ws = load_workbook(io.BytesIO(data)).active
    assert [c.value for c in ws[1]][:2] == ["Date", "Kind"]
    values = [[c.value for c in row] for row in ws.iter_rows(min_row=2)]
    assert len(values) == 2
    assert values[0][5] == pytest.approx(-123.45) and values[0][7] == pytest.approx(999876.55)
    assert isinstance(values[0][0], datetime) and values[0][0] == datetime(2026, 10, 2, 5, 0)
    assert ws["F2"].number_format == "#,##0.00" and ws["H2"].number_format == "#,##0.00"
    assert ws["F2"].data_type == "n"
    with pytest.raises(InvalidInput):
        transactions.export_transactions(session, a, "pdf")


def test_finance_role_reads_and_exports(session, org_actor):
    o, _a = org_actor
    fin = f.user(session, o, Role.FINANCE)
    _post(session, o, "topup", "10", T0, "t1")
    session.commit()
    assert transactions.list_transactions(session, f.actor(fin, o))[1] == 1
    assert transactions.export_transactions(session, f.actor(fin, o), "xlsx")[1][:2] == b"PK"


def test_descriptions_are_stored_in_russian_and_rebuilt_in_english(session, org_actor):
    o, a = org_actor
    tashkent = "Asia/Tashkent"
    hour = datetime(2026, 10, 10, 4, 0, tzinfo=timezone.utc)  # 09:00 in Tashkent
    _post(session, o, "charge", "-60000", T0, "renew", description="Microsoft 365 — месяц: продление с 01.10.2026, 2 шт.",
          quantity=Decimal(2), period_start=T0 - timedelta(hours=5), period_end=datetime(2026, 10, 31, 19, tzinfo=timezone.utc),
          meta={"action": "renewal"})
    _post(session, o, "usage", "-1234.56", hour, "use", description="Потребление: Azure", period_start=hour,
          period_end=hour + timedelta(hours=1), meta={"records": 3})
    _post(session, o, "usage", "0", hour, "free", description="Потребление не оплачивается (пробный период): Azure",
          period_start=hour, period_end=hour + timedelta(hours=1), meta={"not_billed": "trial"})
    _post(session, o, "adjustment", "5", hour, "manual", description="Корректировка по письму")
    session.commit()
    rows = {r.description: r for r in _all_rows(session, a)}
    ru = [transactions.describe(r, "ru", tashkent) for r in rows.values()]
    assert ru == list(rows)  # Russian: the stored text, as posted
    en = {r.description: transactions.describe(r, "en", tashkent) for r in rows.values()}
    assert en["Microsoft 365 — месяц: продление с 01.10.2026, 2 шт."] == "Renewal, 2 pcs, 10/1/26–10/31/26"
    assert en["Потребление: Azure"] == "Usage, 10/10/26 9:00\u202fAM–10:00\u202fAM"
    assert en["Потребление не оплачивается (пробный период): Azure"] == \
        "Usage, not billed: trial, 10/10/26 9:00\u202fAM–10:00\u202fAM"
    assert en["Корректировка по письму"] == "Корректировка по письму"  # origin unknown: the text as written
    _name, data = transactions.export_transactions(session, a, "csv", locale="en")
    assert "Usage, 10/10/26 9:00\u202fAM–10:00\u202fAM" in data.decode("utf-8-sig")


def _payg(session, o) -> Subscription:
    plans = f.catalog(session) if not session.exec(select(Subscription)).first() else None
    plan_id = (plans or {}).get("azure-h").id if plans else session.exec(select(Subscription)).first().plan_id
    sub = Subscription(org_id=o.id, plan_id=plan_id, name="Azure", quantity=1)
    session.add(sub)
    session.commit()
    return sub


def _hourly_usage(session, o, sub_id, first: datetime, hours: int, key: str, amount="-100.00", **kw):
    for h in range(hours):
        at = first + timedelta(hours=h)
        _post(session, o, "usage", amount, at, f"{key}{h}", description=kw.get("description", "Потребление: Azure"),
              subscription_id=sub_id, period_start=at, period_end=at + timedelta(hours=1),
              meta=kw.get("meta", {"records": 5}))


def test_usage_grouped_by_the_organisations_local_day(session, org_actor):
    o, a = org_actor  # Asia/Tashkent, UTC+5: the local day 10 Oct is 9 Oct 19:00 .. 10 Oct 19:00 UTC
    sub = _payg(session, o)
    _post(session, o, "topup", "10000", T0, "top0")
    day_start = datetime(2026, 10, 9, 19, 0, tzinfo=timezone.utc)
    _hourly_usage(session, o, sub.id, day_start - timedelta(hours=2), 28, "u")  # 2 h of 9 Oct, 24 of 10 Oct, 2 of 11
    _post(session, o, "topup", "500", day_start + timedelta(hours=10, minutes=30), "top1")  # in the middle of the day
    _hourly_usage(session, o, sub.id, day_start + timedelta(hours=3), 2, "free", amount="0",
                  description="Потребление не оплачивается (пробный период): Azure", meta={"not_billed": "trial"})
    session.commit()
    plain = _all_rows(session, a)
    grouped = _all_rows(session, a, group_usage=True)
    assert len(plain) == 2 + 28 + 2
    by_entries = sorted((r.entries, r.kind, r.amount) for r in grouped)
    assert by_entries == [(1, "topup", Decimal("500.00")), (1, "topup", Decimal("10000.00")),
                          (2, "usage", Decimal("-200.00")), (2, "usage", Decimal("-200.00")),
                          (2, "usage", Decimal("0.00")), (24, "usage", Decimal("-2400.00"))]
    # the sums are the ledger's; each row's running balance is the one after its last entry
    assert sum(r.amount for r in grouped) == ledger.balance(session, o.id) == grouped[0].running_balance
    running = {r.id: r.running_balance for r in plain}
    for r in grouped:
        assert r.running_balance == running[r.id]  # id = the group's last entry
    day = next(r for r in grouped if r.entries == 24)
    assert day.occurred_at == day_start + timedelta(hours=23)
    assert (day.period_start, day.period_end) == (day_start, day_start + timedelta(days=1))
    # newest first, the top-up in the middle of the day comes before (older than) the day's row
    assert [(r.occurred_at, r.id) for r in grouped] == sorted(((r.occurred_at, r.id) for r in grouped), reverse=True)
    assert transactions.describe(day, "ru", o.timezone) == "Потребление: Azure, 10.10.2026 (24 записи)"
    assert transactions.describe(day, "en", o.timezone) == "Usage, 10/10/26 (24 entries)"
    # filters choose the entries first: a part of the day is a smaller group with its own last balance
    part = _all_rows(session, a, group_usage=True, kind="usage", end=date(2026, 10, 10),
                     start=date(2026, 10, 10))
    assert sorted(r.entries for r in part) == [2, 24]
    _name, data = transactions.export_transactions(session, a, "csv", group_usage=True)
    text = data.decode("utf-8-sig")
    assert "Потребление: Azure, 10.10.2026 (24 записи)" in text and text.count("\r\n") == 1 + len(grouped)


def test_grouping_pages_and_keeps_other_organisations_out(session, org_actor):
    o, a = org_actor
    other = f.org(session, name="Чужая", tax_id="300000099")
    sub = _payg(session, o)
    theirs = _payg(session, other)
    _hourly_usage(session, o, sub.id, datetime(2026, 10, 1, 19, tzinfo=timezone.utc), 24 * 5, "mine")
    _hourly_usage(session, other, theirs.id, datetime(2026, 10, 1, 19, tzinfo=timezone.utc), 24 * 5, "theirs")
    session.commit()
    first, total = transactions.list_transactions(session, a, group_usage=True, limit=3)
    second, _ = transactions.list_transactions(session, a, group_usage=True, limit=3, offset=3)
    assert total == 5 and len(first) == 3 and len(second) == 2
    assert all(r.entries == 24 and r.subscription_id == sub.id for r in first + second)
    assert len({r.id for r in first + second}) == 5


def test_usage_netting_positive_is_shown_as_a_credit_in_every_language(session, org_actor):
    """The vendor's credit outweighing a day's usage makes a positive usage entry: it says credit
    (in Russian too, whatever the rating's description says), a charge still says usage."""
    o, a = org_actor
    sub = _payg(session, o)
    at = datetime(2026, 10, 10, 0, 0, tzinfo=timezone.utc)
    _post(session, o, "usage", "150.00", at, "credit", description="Потребление: Azure", subscription_id=sub.id,
          period_start=at, period_end=at + timedelta(days=1), meta={"records": 2})
    _post(session, o, "usage", "-80.00", at + timedelta(days=1), "charge", description="Потребление: Azure",
          subscription_id=sub.id, period_start=at + timedelta(days=1), period_end=at + timedelta(days=2),
          meta={"records": 3})
    session.commit()
    credit, charge = sorted(_all_rows(session, a), key=lambda r: r.amount, reverse=True)
    assert (credit.action, charge.action) == ("usage_credit", "usage")
    assert transactions.describe(credit, "ru", o.timezone).startswith("Кредит за потребление")
    assert transactions.describe(credit, "en", o.timezone).startswith("Usage credit")
    assert transactions.describe(credit, "uz", o.timezone).startswith("Isteʼmol uchun kredit")
    assert transactions.describe(charge, "ru", o.timezone) == "Потребление: Azure"
