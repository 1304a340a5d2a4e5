"""The ledger reconciliation (``ledger_check.check`` and ``noventiq-panel ledger check``).

Hazards: a world the services made that the check calls wrong (it would cry wolf every night and be
ignored); a corrupted row it does not see — an entry of an unknown kind, in another currency, of
the wrong sign, not recomputable from its source amount and rate, a refund larger than what the
period was charged, seats held that nobody paid for, a usage entry missing, altered or doubled,
usage charged at another rate; a CLI that exits 0 while something is wrong.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from noventiq_panel.cli import main
from noventiq_panel.models import LedgerEntry, RatingWatermark, Subscription, UsageRecord
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import NotFound
from noventiq_panel.services.reporting import ledger_check
from noventiq_panel.services.subscriptions import (
    cancellation,
    licence_count,
    ordering,
    plan_change,
    renewals,
    spans,
)
from noventiq_panel.services.usage import rating

from tests.services.subs_world import NOW, World, make_world, tashkent
from tests.services.usage_world import add_usage, payg_sub, set_rates

H = timedelta(hours=1)
D = timedelta(days=1)
LATER = tashkent(2026, 4, 20, 15)  # after the first renewals


def at(w: World, moment: datetime) -> datetime:
    spans.stamp(w.session, moment)
    return moment


def confirm_order(w: World, code: str, qty: int, now: datetime) -> int:
    quote = ordering.quote_order(w.session, w.a_owner, w.plan(code).id, qty, now=at(w, now))
    return ordering.order(w.session, w.a_owner, w.plan(code).id, qty, quote_id=quote.quote_id,
                          amount=quote.amount_due, now=now).subscription_id


def confirm_quantity(w: World, sub_id: int, qty: int, now: datetime) -> None:
    quote = licence_count.quote_quantity_change(w.session, w.a_owner, sub_id, qty, now=at(w, now))
    licence_count.change_quantity(w.session, w.a_owner, sub_id, qty, quote_id=quote.quote_id,
                                  amount=quote.amount_due, now=now)


def confirm_plan(w: World, sub_id: int, code: str, now: datetime) -> None:
    quote = plan_change.quote_plan_change(w.session, w.a_owner, sub_id, code, now=at(w, now))
    plan_change.change_plan(w.session, w.a_owner, sub_id, code, quote_id=quote.quote_id, amount=quote.amount_due,
                            now=now)


def confirm_cancel(w: World, sub_id: int, now: datetime) -> None:
    quote = cancellation.quote_cancel(w.session, w.a_owner, sub_id, now=at(w, now))
    cancellation.cancel(w.session, w.a_owner, sub_id, quote_id=quote.quote_id, amount=quote.amount_due, now=now)


def jobs(w: World, now: datetime) -> None:
    at(w, now)
    renewals.renew_due(w.session, now=now)
    renewals.bill_instalments_due(w.session, now=now)
    renewals.end_trials(w.session, now=now)


def build(w: World) -> dict[str, int]:
    """What a customer does in six weeks: orders of every billing variant, more seats, fewer seats
    inside the window, an upgrade, a cancellation with a refund, a renewal, an instalment, a trial,
    pay-as-you-go usage rated per hour and per local day, in UZS and in USD."""
    w.topup("50000000")
    set_rates(w.session, date(2026, 3, 1), 60)
    subs = {
        "month": confirm_order(w, "basic-m", 3, NOW),
        "year_monthly": confirm_order(w, "basic-ym", 2, NOW + H),
        "year": confirm_order(w, "basic-y", 1, NOW + 2 * H),
        "usd": confirm_order(w, "std-usd", 2, NOW + 3 * H),
        "cancelled": confirm_order(w, "basic-m", 2, NOW + 4 * H),
    }
    ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 5, trial_convert=True, now=at(w, NOW + 5 * H))
    confirm_quantity(w, subs["month"], 5, NOW + D)
    confirm_quantity(w, subs["month"], 4, NOW + 2 * D)  # inside the window: refunded at once
    confirm_quantity(w, subs["year_monthly"], 4, NOW + 3 * D + 7 * H)
    confirm_quantity(w, subs["usd"], 3, NOW + 4 * D)
    confirm_plan(w, subs["month"], "std-m", NOW + 5 * D)  # an upgrade: the pro rata difference
    confirm_cancel(w, subs["cancelled"], NOW + 6 * D)
    for payg_code in ("azure-h", "azure-d"):
        sub = payg_sub(w.session, w.org, w.plan(payg_code), term_start=NOW)
        subs[payg_code] = sub.id
        add_usage(w.session, sub, NOW + H, 30, services=3)
    rating.rate_usage(w.session, now=NOW + 2 * D)
    add_usage(w.session, w.session.get(Subscription, subs["azure-d"]), NOW + 5 * H, 3, services=2)  # late records
    rating.rate_usage(w.session, now=NOW + 3 * D)
    for day in (tashkent(2026, 4, 9, 0), tashkent(2026, 4, 10, 0), tashkent(2026, 4, 11, 0)):
        jobs(w, day)
    return subs


@pytest.fixture
def w(session) -> World:
    world = make_world(session)
    return world


def kinds(report: ledger_check.Report) -> list[str]:
    return sorted(d.check for d in report.differences)


def corrupt(w: World, **fields) -> LedgerEntry:
    """Insert a bad entry directly, as a broken restore or a hand-made SQL fix would."""
    row = dict(org_id=w.org.id, kind="charge", amount=Decimal("-1.00"), currency="UZS",
               idempotency_key=f"corrupt:{len(fields)}:{sorted(fields.items())!r}"[:200], occurred_at=NOW)
    row.update(fields)
    entry = LedgerEntry(**row)
    w.session.add(entry)
    w.session.commit()
    return entry


def test_a_world_the_services_made_is_clean(w):
    subs = build(w)
    report = ledger_check.check(w.session, now=LATER)
    assert report.differences == [], "\n".join(map(str, report.differences))
    assert report.organisations == 2 and report.subscriptions >= 5 and report.usage_records == 3 * 30 * 2 + 6
    # what it looked at is really there: renewed terms, an instalment, a refund, usage
    w.session.rollback()
    actions = {e.meta.get("action") for e in w.session.exec(select(LedgerEntry)).all()}
    assert {"order", "renewal", "instalment", "increase", "decrease", "plan_upgrade", "cancel"} <= actions
    assert w.session.get(Subscription, subs["cancelled"]).status == "cancelled"
    assert ledger_check.check(w.session, org_id=w.other_org.id, now=LATER).ok


def test_the_demo_data_is_clean_today_and_three_days_later(sqlite_engine):
    """The demo (histories of renewals, instalments, refunds, Azure usage rated per day) written in
    one go: its spans start when it is loaded; its money must reconcile."""
    from noventiq_panel.services.demo import demo

    demo_now = datetime(2026, 11, 25, 8, 30, tzinfo=NOW.tzinfo)
    with Session(sqlite_engine, expire_on_commit=False) as session:
        spans.stamp(session, demo_now)
        demo.load(session, now=demo_now)
        for moment in (demo_now, demo_now + 3 * D):
            report = ledger_check.check(session, now=moment)
            assert report.ok, "\n".join(map(str, report.differences))
            assert report.organisations == 2 and report.subscriptions > 10 and report.usage_records > 10000


def test_the_check_writes_nothing_and_ends_its_own_transaction(w):
    build(w)
    w.session.rollback()
    before = ledger.balance(w.session, w.org.id)
    w.session.rollback()
    ledger_check.check(w.session, now=LATER)
    assert not w.session.in_transaction()
    assert ledger.balance(w.session, w.org.id) == before


def test_an_unknown_organisation_is_not_found(w):
    with pytest.raises(NotFound):
        ledger_check.check(w.session, org_id=999999)


def test_an_entry_of_an_unknown_kind_breaks_the_balance_by_kind(w):
    w.topup("1000")
    corrupt(w, kind="bonus", amount=Decimal("500.00"))
    report = ledger_check.check(w.session, now=NOW)
    assert kinds(report) == ["balance", "entries"]
    balance = next(d for d in report.differences if d.check == "balance")
    assert (balance.expected, balance.actual) == (Decimal("1000.00"), Decimal("1500.00"))


def test_an_entry_in_another_currency_is_reported(w):
    corrupt(w, kind="topup", amount=Decimal("10.00"), currency="USD")
    report = ledger_check.check(w.session, now=NOW)
    assert kinds(report) == ["currency"]


@pytest.mark.parametrize("kind,amount", [("charge", "5.00"), ("usage", "0.01"), ("refund", "-3.00"),
                                         ("topup", "-100.00")])
def test_an_entry_of_the_wrong_sign_is_reported(w, kind, amount):
    w.topup("1000")
    entry = corrupt(w, kind=kind, amount=Decimal(amount))
    report = ledger_check.check(w.session, now=NOW)
    assert kinds(report) == ["sign"] and report.differences[0].entry_id == entry.id


def test_an_amount_that_is_not_source_times_rate_is_reported_unless_capped(w):
    w.topup("1000000")
    entry = corrupt(w, kind="charge", amount=Decimal("-150000.01"), source_amount=Decimal("12.50"),
                    source_currency="USD", fx_rate=Decimal("12000"))
    corrupt(w, kind="refund", amount=Decimal("100.00"), source_amount=Decimal("12.50"), source_currency="USD",
            fx_rate=Decimal("12000"), meta={"capped": True})
    report = ledger_check.check(w.session, now=NOW)
    [fx] = [d for d in report.differences if d.check == "fx"]
    assert (fx.entry_id, fx.expected, fx.actual) == (entry.id, Decimal("150000.00"), Decimal("150000.01"))


def test_a_refund_larger_than_the_periods_charges_is_reported(w):
    w.topup("1000000")
    sub_id = confirm_order(w, "basic-m", 1, NOW)
    [charge] = w.session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub_id)).all()
    corrupt(w, kind="refund", amount=Decimal("30000.01"), subscription_id=sub_id, period_start=charge.period_start,
            period_end=charge.period_end, source_amount=Decimal("30000.01"), source_currency="UZS",
            fx_rate=Decimal(1))
    report = ledger_check.check(w.session, now=NOW)
    assert "refund" in kinds(report)
    [refund] = [d for d in report.differences if d.check == "refund"]
    assert (refund.subscription_id, refund.expected, refund.actual) == (sub_id, Decimal("30000.00"),
                                                                        Decimal("30000.01"))


def test_seats_added_without_a_charge_are_unpaid_seat_days(w):
    w.topup("1000000")
    sub_id = confirm_order(w, "basic-m", 2, NOW)
    end = tashkent(2026, 4, 9, 12)  # the last day of the term
    assert ledger_check.check(w.session, now=end).ok
    at(w, NOW + 10 * D)
    sub = w.session.get(Subscription, sub_id)
    sub.quantity = 3  # a hand-made fix: one seat more, nothing charged
    w.session.add(sub)
    w.session.commit()
    report = ledger_check.check(w.session, now=end)
    total, period = report.differences  # in all, and in its billing period (here: the term)
    for seat in (total, period):
        assert (seat.check, seat.subscription_id, seat.actual) == ("seat_days", sub_id, Decimal("60000.000000"))
        # a 31-day term: 10 days of 2 seats, then 21 days of 3 seats (20 March held 3 at its end)
        assert seat.expected == (Decimal(30000) * (10 * 2 + 21 * 3) / 31).quantize(Decimal("0.01"))
    assert "billing period ending 2026-04-10" in period.message
    # while the term runs, what was paid ahead still covers the extra seat
    assert ledger_check.check(w.session, now=NOW + 12 * D).ok


def test_a_deficit_of_an_earlier_term_is_not_hidden_by_the_next_terms_prepayment(w):
    w.topup("1000000")
    sub_id = confirm_order(w, "basic-m", 1, NOW)
    at(w, NOW + D)
    sub = w.session.get(Subscription, sub_id)
    sub.quantity = 4  # three seats more for 30 of the 31 days, nothing charged
    w.session.add(sub)
    w.session.commit()
    jobs(w, tashkent(2026, 4, 10, 0))  # the renewal prepays the next term for the four seats
    report = ledger_check.check(w.session, now=tashkent(2026, 4, 10, 12))
    [period] = report.differences  # in all, the next term's prepayment covers it
    assert "billing period ending 2026-04-10" in period.message
    assert period.expected - period.actual == (Decimal(30000) * 3 * 30 / 31).quantize(Decimal("0.01"))


def test_a_term_started_without_its_charge_is_unpaid(w):
    """The fault of issue 13: a new term (here: a renewal whose charge went missing) is held unpaid."""
    w.topup("1000000")
    sub_id = confirm_order(w, "basic-m", 1, NOW)
    jobs(w, tashkent(2026, 4, 10, 0))
    w.session.rollback()
    renewal = w.session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub_id,
                                                       LedgerEntry.idempotency_key.like("renewal:%"))).one()
    w.session.delete(renewal)
    w.session.commit()
    report = ledger_check.check(w.session, now=tashkent(2026, 4, 12, 12))
    assert kinds(report) == ["seat_days", "seat_days"]
    assert any("billing period ending 2026-05-10" in d.message for d in report.differences)


def test_suspended_and_trial_days_are_not_counted(w):
    w.topup("1000000")
    sub_id = confirm_order(w, "basic-m", 2, NOW)
    ordering.order(w.session, w.a_owner, w.plan("basic-trial").id, 5, now=at(w, NOW))
    from noventiq_panel.services.subscriptions import lifecycle

    lifecycle.suspend(w.session, w.a_owner, sub_id, now=at(w, NOW + D))
    # a refund of the suspended days would still leave what the active day was worth
    w.session.rollback()
    [charge] = w.session.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub_id)).all()
    corrupt(w, kind="refund", amount=Decimal("55000.00"), subscription_id=sub_id, period_start=charge.period_start,
            period_end=charge.period_end, source_amount=Decimal("55000.00"), source_currency="UZS", fx_rate=Decimal(1))
    assert ledger_check.check(w.session, now=NOW + 20 * D).ok
    # the refund leaves 5 000 for 2 seats: less than 2 days of 2 seats (3 871) would be fine, 3 days not
    at(w, NOW + 2 * D)
    lifecycle.resume(w.session, w.a_owner, sub_id, now=NOW + 2 * D)
    assert kinds(ledger_check.check(w.session, now=NOW + 3 * D)) == ["seat_days", "seat_days"]


def _usage_world(w: World) -> Subscription:
    w.topup("1000000")
    set_rates(w.session, date(2026, 3, 1), 10)
    sub = payg_sub(w.session, w.org, w.plan("azure-d"), term_start=NOW)
    add_usage(w.session, sub, NOW + H, 30, services=3)
    rating.rate_usage(w.session, now=NOW + 2 * D)
    assert ledger_check.check(w.session, now=NOW + 2 * D).ok
    return sub


def test_a_usage_entry_gone_leaves_its_records_uncovered(w):
    sub = _usage_world(w)
    w.session.rollback()
    entry = w.session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage")).first()
    w.session.delete(entry)
    w.session.commit()
    report = ledger_check.check(w.session, now=NOW + 2 * D)
    [usage] = report.differences
    assert (usage.check, usage.subscription_id) == ("usage", sub.id)
    assert f"{entry.meta['records']} usage record(s) below the rating watermark" in usage.message


def test_records_below_the_watermark_that_were_never_rated_are_uncovered(w):
    sub = _usage_world(w)
    [late] = add_usage(w.session, sub, NOW + 40 * H, 1, services=1)
    mark = w.session.get(RatingWatermark, sub.id)
    mark.last_record_id = late  # the watermark moved past a record no entry charged
    w.session.add(mark)
    w.session.commit()
    report = ledger_check.check(w.session, now=NOW + 2 * D)
    assert kinds(report) == ["usage"] and "1 usage record(s)" in report.differences[0].message


def test_a_doubled_or_altered_usage_entry_is_reported_for_its_day(w):
    sub = _usage_world(w)
    w.session.rollback()
    first = w.session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage").order_by(LedgerEntry.id)).first()
    copy = {c: getattr(first, c) for c in LedgerEntry.model_fields if c not in ("id", "idempotency_key")}
    corrupt(w, **{**copy, "idempotency_key": first.idempotency_key + ":copy"})
    report = ledger_check.check(w.session, now=NOW + 2 * D)
    [day] = report.differences
    assert (day.check, day.subscription_id) == ("usage", sub.id)
    assert day.actual - day.expected == first.amount


def test_usage_at_another_rate_than_the_days_fixed_one_is_reported(w):
    _usage_world(w)
    w.session.rollback()
    first = w.session.exec(select(LedgerEntry).where(LedgerEntry.kind == "usage").order_by(LedgerEntry.id)).first()
    first.fx_rate += 1
    first.amount = -(first.source_amount * first.fx_rate).quantize(Decimal("0.01"))
    w.session.add(first)
    w.session.commit()
    messages = [d.message for d in ledger_check.check(w.session, now=NOW + 2 * D).differences]
    assert any("fixed usage rate" in m for m in messages) and any("differ from the records" in m for m in messages)


def test_usage_records_a_marked_up_price_cannot_explain_are_reported(w):
    sub = _usage_world(w)
    w.session.rollback()
    record = w.session.exec(select(UsageRecord).where(UsageRecord.subscription_id == sub.id)).first()
    record.cost += Decimal("1")  # records are never updated: a restore from another day would do this
    w.session.add(record)
    w.session.commit()
    assert "usage" in kinds(ledger_check.check(w.session, now=NOW + 2 * D))


# --- the command -----------------------------------------------------------------------------

def test_the_command_exits_0_with_a_summary_when_clean_and_1_listing_every_difference(w):
    w.topup("1000")
    clean = CliRunner().invoke(main, ["ledger", "check"], catch_exceptions=False)
    assert clean.exit_code == 0, clean.output
    assert "clean" in clean.output and len(clean.output.strip().splitlines()) == 1
    corrupt(w, kind="charge", amount=Decimal("5.00"))
    corrupt(w, kind="topup", amount=Decimal("1.00"), currency="USD", org_id=w.other_org.id)
    bad = CliRunner().invoke(main, ["ledger", "check"], catch_exceptions=False)
    assert bad.exit_code == 1
    assert "[sign]" in bad.output and "[currency]" in bad.output and "2 difference(s)" in bad.output
    only = CliRunner().invoke(main, ["ledger", "check", "--org", str(w.org.id)], catch_exceptions=False)
    assert only.exit_code == 1 and "[sign]" in only.output and "[currency]" not in only.output
    other = CliRunner().invoke(main, ["ledger", "check", "--org", "999999"])
    assert other.exit_code != 0 and "not found" in other.output


def test_the_spans_of_a_session_without_a_stamp_do_not_disturb_the_check(session: Session):
    """Operations called as the pages call them (no ``now``): the clock stamps the spans."""
    w = make_world(session)
    w.topup("1000000")
    ordering.order(session, w.a_owner, w.plan("basic-m").id, 2)
    assert ledger_check.check(session).ok
