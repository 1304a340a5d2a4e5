"""Bank statement import: automatic matching, partial and over payments, duplicate lines, re-import,
unmatched and bad lines, and the same money seen by the operator and in a statement."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, Notification, Payment, Role, StatementLine
from noventiq_panel.services.core import ledger
from noventiq_panel.services.billing import invoices, payments, statement_import
from noventiq_panel.services.core.errors import Conflict, InvalidInput, NotFound

from tests import factories as f

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
TAX = "300000001"


@pytest.fixture
def setup(session):
    o = f.org(session, name="ООО «Ромашка»", tax_id=TAX)
    u = f.user(session, o, Role.OWNER)
    a = f.actor(u, o)
    p1 = invoices.request_topup(session, a, "1200000", now=NOW)
    p2 = invoices.request_topup(session, a, "500000", now=NOW)
    return o, a, p1, p2


def _csv(*lines: str, header: str = "date,amount,payer_tax_id,purpose") -> bytes:
    return ("\n".join(([header] if header else []) + list(lines)) + "\n").encode("utf-8")


def _state(session, org_id):
    session.rollback()
    return (
        ledger.balance(session, org_id),
        session.exec(select(func.count()).select_from(LedgerEntry)).one(),
        session.exec(select(func.count()).select_from(StatementLine)).one(),
        session.exec(select(func.count()).select_from(Notification)).one(),
        [(p.number, p.status, p.paid_amount) for p in session.exec(select(Payment).order_by(Payment.id)).all()],
    )


def test_lines_are_matched_by_invoice_number_and_payer_tax_id(session, setup):
    o, _a, p1, p2 = setup
    report = statement_import.import_statement(session, _csv(
        f"2026-11-26,1200000.00,{TAX},Оплата по счёту № {p1.number} за облачные услуги",
        f"27.11.2026,500000,{TAX},\"оплата сч {p2.number[3:].replace('-', '/')}, НДС 12%\"",
    ), now=NOW)
    assert [(r.line_no, r.status, r.payment_number) for r in report.lines] == [(2, "imported", p1.number),
                                                                                (3, "imported", p2.number)]
    assert sorted(report.paid_numbers) == sorted([p1.number, p2.number])
    assert ledger.balance(session, o.id) == Decimal("1700000.00")
    assert session.get(Payment, p1.id).status == "paid" and session.get(Payment, p2.id).status == "paid"
    assert session.exec(select(func.count()).select_from(Notification)
                        .where(Notification.kind == "payment_received")).one() == 2


def test_a_partial_payment_waits_for_review_and_the_operator_assigns_it(session, setup):
    """Issue 14: only an exact match of invoice, payer and amount credits on import; a partial
    payment waits for an operator, and nobody's balance changes until then."""
    o, _a, p1, _p2 = setup
    report = statement_import.import_statement(session, _csv(f"2026-11-26,700000,{TAX},{p1.number}"), now=NOW)
    [line] = report.review
    assert "700000.00 received, 1200000.00 due" in line.reason
    assert ledger.balance(session, o.id) == 0 and session.get(Payment, p1.id).paid_amount == 0
    [waiting] = statement_import.review_list(session)
    result = statement_import.assign(session, waiting.id, p1.number, note="the customer's first part", now=NOW)
    assert result.credited == Decimal("700000.00")
    # the rest, exactly what is still due, credits on import
    report = statement_import.import_statement(session, _csv(f"2026-11-28,500000.00,{TAX},доплата {p1.number}"), now=NOW)
    p = session.get(Payment, p1.id)
    session.refresh(p)
    assert p.paid_amount == Decimal("1200000.00") and p.status == "paid"
    assert report.paid_numbers == [p1.number]
    assert ledger.balance(session, o.id) == Decimal("1200000.00")
    keys = sorted(session.exec(select(LedgerEntry.idempotency_key).where(LedgerEntry.payment_id == p1.id)).all())
    assert all(k.startswith(f"payment:{p1.id}:line:") for k in keys) and len(keys) == 2
    assert statement_import.review_list(session) == []
    with pytest.raises(Conflict):  # decided once
        statement_import.assign(session, waiting.id, p1.number, now=NOW)
    assert ledger.balance(session, o.id) == Decimal("1200000.00")


def test_an_over_payment_waits_for_review_and_a_rejected_line_credits_nothing(session, setup):
    o, _a, _p1, p2 = setup
    report = statement_import.import_statement(session, _csv(f"2026-11-26,650000.50,{TAX},{p2.number}"), now=NOW)
    assert report.review and ledger.balance(session, o.id) == 0
    [waiting] = statement_import.review_list(session)
    with pytest.raises(InvalidInput):
        statement_import.reject(session, waiting.id, note="  ")
    statement_import.reject(session, waiting.id, note="returned to the payer", now=NOW)
    assert statement_import.review_list(session) == []
    assert [w.reason for w in statement_import.review_list(session, status="rejected")] == ["returned to the payer"]
    with pytest.raises(Conflict):
        statement_import.assign(session, waiting.id, p2.number, now=NOW)
    assert ledger.balance(session, o.id) == 0 and session.get(Payment, p2.id).status == "pending"


def test_assigning_needs_a_waiting_line_and_a_real_invoice(session, setup):
    o, _a, p1, _p2 = setup
    statement_import.import_statement(session, _csv(f"2026-11-26,1000,{TAX},оплата без номера"), now=NOW)
    [waiting] = statement_import.review_list(session)
    with pytest.raises(NotFound):
        statement_import.assign(session, waiting.id, "СЧ-2026-999999", now=NOW)
    for forged in (999999, "1", None, True):
        with pytest.raises(NotFound):
            statement_import.assign(session, forged, p1.number, now=NOW)
    assert ledger.balance(session, o.id) == 0 and len(statement_import.review_list(session)) == 1


def test_duplicate_line_in_one_file_credits_once(session, setup):
    o, _a, p1, _p2 = setup
    line = f"2026-11-26,1200000,{TAX},оплата {p1.number}"
    report = statement_import.import_statement(session, _csv(line, line), now=NOW)
    assert [r.status for r in report.lines] == ["imported", "duplicate"]
    assert ledger.balance(session, o.id) == Decimal("1200000.00")


def test_reimporting_the_same_file_changes_nothing_even_reordered(session, setup):
    o, _a, p1, p2 = setup
    lines = [f"2026-11-26,300000,{TAX},{p1.number}", f"2026-11-26,500000,{TAX},{p2.number}",
             "2026-11-26,100,123,без номера", "oops,1,2,3"]
    statement_import.import_statement(session, _csv(*lines), now=NOW)
    before = _state(session, o.id)
    again = statement_import.import_statement(session, _csv(*lines), now=NOW)
    assert [r.status for r in again.lines] == ["duplicate", "duplicate", "duplicate", "error"]
    assert _state(session, o.id) == before
    # the same lines in another order, in a file with a different header, are still duplicates
    moved = statement_import.import_statement(session, _csv(lines[1], lines[0], header="Дата;Сумма;ИНН;Назначение")
                                      .replace(b",", b";"), now=NOW)
    assert [r.status for r in moved.lines] == ["duplicate", "duplicate"]
    assert _state(session, o.id) == before


def test_lines_without_an_exact_match_wait_for_review_with_reasons_and_credit_nothing(session, setup):
    o, _a, p1, _p2 = setup
    report = statement_import.import_statement(session, _csv(
        f"2026-11-26,1000,{TAX},оплата без номера счёта",
        f"2026-11-26,1000,{TAX},оплата по счёту СЧ-2026-999999",
        f"2026-11-26,1200000,300000999,{p1.number}",
        f"2026-11-26,1200000,,{p1.number}",
    ), now=NOW)
    assert [(r.line_no, r.status) for r in report.review] == [(2, "review"), (3, "review"), (4, "review"),
                                                               (5, "review")]
    reasons = [r.reason for r in report.review]
    assert "no invoice number" in reasons[0]
    assert "СЧ-2026-999999 not found" in reasons[1]
    assert "300000999" in reasons[2] and "tax id" in reasons[2]
    assert ledger.balance(session, o.id) == Decimal("0.00")
    assert len(statement_import.review_list(session)) == 4


def test_a_payers_self_declared_tax_id_never_moves_money_to_another_customer(session, setup):
    """Issue 14, invoices in someone else's name: a line that names our invoice but comes from
    another payer, or names another customer's invoice with our payer's tax id, waits for an
    operator; an exact match is the only automatic credit."""
    o, _a, p1, _p2 = setup
    other = f.org(session, name="ООО «Чужая»")
    p_other = invoices.request_topup(session, f.actor(f.user(session, other, Role.OWNER), other), "1200000", now=NOW)
    report = statement_import.import_statement(session, _csv(f"2026-11-26,1200000,{TAX},{p_other.number}"), now=NOW)
    assert report.review and ledger.balance(session, other.id) == 0 and ledger.balance(session, o.id) == 0


def test_bad_lines_are_reported_and_good_ones_imported(session, setup):
    o, _a, p1, p2 = setup
    report = statement_import.import_statement(session, _csv(
        f"2026-13-45,1000,{TAX},{p1.number}",
        f"2026-11-26,abc,{TAX},{p1.number}",
        f"2026-11-26,-5000,{TAX},{p1.number}",
        f"2026-11-26,100.005,{TAX},{p1.number}",
        "2026-11-26,1000",
        f"2026-11-26,500000,{TAX},{p2.number}",
    ), now=NOW)
    assert [(r.line_no, r.status) for r in report.errors] == [(2, "error"), (3, "error"), (4, "error"), (5, "error"),
                                                               (6, "error")]
    assert [(r.line_no, r.payment_number) for r in report.imported] == [(7, p2.number)]
    assert ledger.balance(session, o.id) == Decimal("500000.00")


def test_statement_without_the_needed_columns_is_refused_whole(session, setup):
    o, _a, p1, _p2 = setup
    before = _state(session, o.id)
    with pytest.raises(InvalidInput) as err:
        statement_import.import_statement(session, _csv(f"x,1200000,{p1.number}", header="when,amount,purpose"), now=NOW)
    assert err.value.key == "error.billing.statement_header"
    with pytest.raises(InvalidInput):
        statement_import.import_statement(session, b"\xff\xfe\x00garbage\x81\x98", now=NOW)
    assert _state(session, o.id) == before


def test_operator_confirmation_and_the_statement_line_of_the_same_money_credit_once(session, setup):
    o, _a, p1, _p2 = setup
    payments.confirm_payment(session, p1.number, now=NOW)
    report = statement_import.import_statement(session, _csv(f"2026-11-26,1200000,{TAX},{p1.number}"), now=NOW)
    assert "is paid" in report.review[0].reason  # the operator's decision to make, not a second credit
    assert ledger.balance(session, o.id) == Decimal("1200000.00")
    assert session.get(Payment, p1.id).paid_amount == Decimal("1200000.00")


def test_statement_first_then_operator_confirmation_changes_nothing(session, setup):
    o, _a, p1, _p2 = setup
    statement_import.import_statement(session, _csv(f"2026-11-26,1200000,{TAX},{p1.number}"), now=NOW)
    assert not payments.confirm_payment(session, p1.number, now=NOW).changed
    assert ledger.balance(session, o.id) == Decimal("1200000.00")


def test_windows_1251_semicolon_file_from_a_path(session, setup, tmp_path):
    o, _a, _p1, p2 = setup
    path = tmp_path / "выписка.csv"
    path.write_bytes(("Дата;Сумма;ИНН плательщика;Назначение платежа\n"
                      f"26.11.2026;\"500 000,00\";{TAX};Оплата по счёту {p2.number}\n").encode("cp1251"))
    report = statement_import.import_statement(session, str(path), now=NOW)
    assert len(report.imported) == 1 and report.paid_numbers == [p2.number]
    assert ledger.balance(session, o.id) == Decimal("500000.00")


def test_two_concurrent_imports_of_one_file_credit_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        o = f.org(s, tax_id=TAX)
        u = f.user(s, o, Role.OWNER)
        p = invoices.request_topup(s, f.actor(u, o), "100000", now=NOW)
        org_id, number = o.id, p.number
    data = _csv(f"2026-11-26,100000,{TAX},{number}", f"2026-11-27,60000,{TAX},{number}")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker():
        try:
            with Session(engine, expire_on_commit=False) as s:
                barrier.wait()
                statement_import.import_statement(s, data, now=NOW)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as s:
        assert ledger.balance(s, org_id) == Decimal("100000.00")
        assert s.exec(select(func.count()).select_from(StatementLine)).one() == 2  # one credited, one for review
        paid = s.exec(select(Payment).where(Payment.number == number)).one()
        assert paid.status == "paid" and paid.paid_amount == Decimal("100000.00")
    # A loser may fail on a unique violation; it must never credit twice.
    assert len(errors) <= 1, errors


def test_a_paid_invoice_is_not_credited_again_through_the_review_list(session, setup):
    """Review finding: the operator confirmed the invoice by hand; the bank's line of the same money
    then waits for review. Assigning it to the paid invoice must not credit the money twice: it
    is refused unless the operator says it is an over payment."""
    o, _a, p1, _p2 = setup
    payments.confirm_payment(session, p1.number, now=NOW)
    statement_import.import_statement(session, _csv(f"2026-11-26,1200000,{TAX},{p1.number}"), now=NOW)
    [waiting] = statement_import.review_list(session)
    before = _state(session, o.id)
    with pytest.raises(Conflict) as exc:
        statement_import.assign(session, waiting.id, p1.number, now=NOW)
    assert exc.value.key == "error.billing.statement_invoice_settled"
    assert _state(session, o.id) == before and len(statement_import.review_list(session)) == 1
    statement_import.assign(session, waiting.id, p1.number, over_payment=True, note="paid twice", now=NOW)
    assert ledger.balance(session, o.id) == Decimal("2400000.00")


def test_an_assigned_first_payment_and_the_operators_confirmation_credit_once(session, setup):
    o, _a, p1, _p2 = setup
    statement_import.import_statement(session, _csv(f"2026-11-26,1200000,{TAX},оплата без номера"), now=NOW)
    [waiting] = statement_import.review_list(session)
    statement_import.assign(session, waiting.id, p1.number, now=NOW)
    assert not payments.confirm_payment(session, p1.number, now=NOW).changed
    assert ledger.balance(session, o.id) == Decimal("1200000.00")
    keys = session.exec(select(LedgerEntry.idempotency_key).where(LedgerEntry.payment_id == p1.id)).all()
    assert keys == [f"payment:{p1.id}"]  # the key an operator's confirmation of the same money uses


def test_a_customer_named_after_a_link_mark_does_not_stop_the_import(session):
    """Review finding: a name holding the link mark made every mail to it fail, and with it the
    whole statement import (everyone's payments)."""
    o = f.org(session, name="ООО __link_secret__", tax_id="300000009")
    u = f.user(session, o, Role.OWNER, name="__link_secret__")
    p = invoices.request_topup(session, f.actor(u, o), "1000", now=NOW)
    report = statement_import.import_statement(session, _csv(f"2026-11-26,1000,300000009,{p.number}"), now=NOW)
    assert report.paid_numbers == [p.number] and ledger.balance(session, o.id) == Decimal("1000.00")


def test_a_part_confirmed_by_hand_is_not_credited_again_from_its_statement_line(session, setup):
    """Review finding: the operator confirms 400 000 by hand, then assigns the bank's line of the
    same 400 000: refused unless the operator says it is more money."""
    o, _a, p1, _p2 = setup
    statement_import.import_statement(session, _csv(f"2026-11-26,400000,{TAX},{p1.number}"), now=NOW)
    payments.confirm_payment(session, p1.number, amount="400000", now=NOW)
    [waiting] = statement_import.review_list(session)
    before = _state(session, o.id)
    with pytest.raises(Conflict) as exc:
        statement_import.assign(session, waiting.id, p1.number, now=NOW)
    assert exc.value.key == "error.billing.part_payment_elsewhere" and _state(session, o.id) == before
    statement_import.assign(session, waiting.id, p1.number, over_payment=True, now=NOW)
    assert ledger.balance(session, o.id) == Decimal("800000.00")


def test_a_part_from_a_statement_line_is_not_confirmed_again_by_hand(session, setup):
    o, _a, p1, _p2 = setup
    statement_import.import_statement(session, _csv(f"2026-11-26,400000,{TAX},{p1.number}"), now=NOW)
    [waiting] = statement_import.review_list(session)
    statement_import.assign(session, waiting.id, p1.number, now=NOW)
    before = _state(session, o.id)
    with pytest.raises(Conflict):
        payments.confirm_payment(session, p1.number, amount="400000", now=NOW)
    assert _state(session, o.id) == before
    with pytest.raises(Conflict):  # "the rest arrived" too: maybe the line's money again
        payments.confirm_payment(session, p1.number, now=NOW)
    assert _state(session, o.id) == before
    # the operator says it is more money: the rest is credited
    assert payments.confirm_payment(session, p1.number, over_payment=True, now=NOW).credited == Decimal("800000.00")
    assert ledger.balance(session, o.id) == Decimal("1200000.00")


def test_the_rest_of_a_part_confirmed_by_hand_waits_for_the_operator_on_import(session, setup):
    """Re-review finding: half confirmed by hand, then a line of the same half that is exactly
    what is still due; it may be the same money, so it waits instead of crediting."""
    o, _a, p1, _p2 = setup
    payments.confirm_payment(session, p1.number, amount="600000", now=NOW)
    report = statement_import.import_statement(session, _csv(f"2026-11-26,600000,{TAX},{p1.number}"), now=NOW)
    assert report.review and "confirmed by hand" in report.review[0].reason
    assert ledger.balance(session, o.id) == Decimal("600000.00")
