"""The jobs as the scheduler and the CLI run them: catch-up after a 26-hour gap across Tashkent's
midnight, money jobs run twice and from two threads, the monthly IaaS report and closing
documents, the CLI."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from io import BytesIO

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlmodel import Session, select

from jobs import registry
from jobs.job import JOBS, Job
from noventiq_panel.models import ClosingDocument, JobRun, LedgerEntry, Notification, NotificationAttachment, Subscription
from noventiq_panel.services.usage import rating

from tests import factories as f
from tests.services.usage_world import (
    add_usage,
    assert_entries_match_records,
    payg_sub,
    payg_world,
    set_rates,
    tashkent,
    unrated,
)


def test_catch_up_after_a_26_hour_gap_across_tashkent_midnight(engine):
    t0 = tashkent(2026, 11, 10, 20)
    with Session(engine, expire_on_commit=False) as s:
        org, plans, _ = payg_world(s)
        set_rates(s, date(2026, 11, 9), 4, step="3.3")
        hourly = payg_sub(s, org, plans["azure-h"])
        daily = payg_sub(s, org, plans["azure-d"])
        for sub in (hourly, daily):
            add_usage(s, sub, t0 - timedelta(hours=3), 3)
    assert "rated 18 records" in registry.run_job("rating", t0 + timedelta(minutes=5))
    # the app is down for 26 hours while usage keeps arriving (Tashkent midnight in between)
    with Session(engine, expire_on_commit=False) as s:
        for sub in (hourly, daily):
            add_usage(s, sub, t0, 26)
    later = t0 + timedelta(hours=26, minutes=5)
    j = registry.get("rating")
    assert registry.missed(j, registry.last_run("rating").last_run_at, later)
    assert registry.missed(registry.get("reminders"), t0, later)  # 09:00 fell inside the gap
    assert not registry.missed(registry.get("documents"), t0, later)  # no 1st of a month in it
    summary = registry.run_job("rating", later)
    assert "rated 156 records" in summary
    assert registry.run_job("rating", later + timedelta(hours=1)).startswith("rated 0 records")
    with Session(engine) as s:
        assert_entries_match_records(s)
        # Rating posts one entry per subscription, local day and currency per run, hourly plans too
        # (issue 17). The first run (17:00..19:00 Tashkent, 10 Nov) posted one entry of 10 Nov; the
        # catch-up's 26 hours (20:00 10 Nov .. 21:00 11 Nov Tashkent) fall in two local days — the
        # day is cut at Tashkent's midnight (19:00 UTC), not UTC's — so it posts two more: 10 Nov
        # again (its records rated late get their own entry, a higher max record id) and 11 Nov.
        # Hourly buckets would have been 3 + 26 = 29 entries.
        for sub in (daily, hourly):
            entries = s.exec(select(LedgerEntry).where(LedgerEntry.subscription_id == sub.id)
                             .order_by(LedgerEntry.period_start, LedgerEntry.id)).all()
            assert [e.period_start for e in entries] == [tashkent(2026, 11, 10)] * 2 + [tashkent(2026, 11, 11)]
            assert [e.meta["records"] for e in entries] == [3 * 3, 4 * 3, 22 * 3]
            assert len({e.idempotency_key for e in entries}) == 3
        run = s.get(JobRun, "rating")
        assert run.last_run_at == later + timedelta(hours=1)


def test_a_failed_job_keeps_its_last_run_so_catch_up_retries_it(engine, monkeypatch):
    now = datetime(2026, 11, 10, 4, 0, tzinfo=timezone.utc)
    registry.run_job("budgets", now)

    def broken(_now):
        raise RuntimeError("database on fire")

    monkeypatch.setitem(JOBS, "budgets", Job("budgets", broken, None))
    with pytest.raises(RuntimeError):
        registry.run_job("budgets", now + timedelta(hours=1))
    run = registry.last_run("budgets")
    assert run.last_run_at == now and "database on fire" in run.last_result


def test_rating_job_twice_and_from_two_threads_charges_once(engine):
    now = tashkent(2026, 11, 11, 1)
    with Session(engine, expire_on_commit=False) as s:
        org, plans, _ = payg_world(s)
        set_rates(s, date(2026, 11, 9), 3)
        for i in range(4):
            add_usage(s, payg_sub(s, org, plans["azure-h" if i % 2 else "azure-d"]), tashkent(2026, 11, 10, 12), 12)
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait()
            registry.run_job("rating", now)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    registry.run_job("rating", now + timedelta(hours=1))
    assert errors == []
    with Session(engine) as s:
        assert_entries_match_records(s)


def test_rating_job_killed_half_way_then_run_again_skips_nothing(engine, monkeypatch):
    now = tashkent(2026, 11, 11, 1)
    with Session(engine, expire_on_commit=False) as s:
        org, plans, _ = payg_world(s)
        set_rates(s, date(2026, 11, 9), 3)
        for i in range(4):
            add_usage(s, payg_sub(s, org, plans["azure-h"]), tashkent(2026, 11, 10, 12), 6)
    real = rating.rate_usage
    monkeypatch.setattr(rating, "rate_usage", lambda session, now=None, batch_subscriptions=500: real(
        session, now=now, batch_subscriptions=2))
    real_insert = rating._Batch.post_entries
    calls = {"n": 0}

    def die_in_second_batch(*args, **kwargs):
        calls["n"] += 1
        result = real_insert(*args, **kwargs)
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")  # not an Exception: like a kill, nothing handles it
        return result

    monkeypatch.setattr(rating._Batch, "post_entries", die_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        registry.run_job("rating", now)
    with Session(engine) as s:
        assert unrated(s) == 2 * 6 * 3
    monkeypatch.setattr(rating._Batch, "post_entries", real_insert)
    registry.run_job("rating", now)
    with Session(engine) as s:
        assert_entries_match_records(s)


def _licences_due(s, n: int, when: datetime):
    org = f.org(s)
    plans = f.catalog(s)
    f.user(s, org)
    f.topup(s, org, "100000000")
    for _ in range(n):
        s.add(Subscription(org_id=org.id, plan_id=plans["basic-m"].id, status="active", quantity=2,
                           term_start=when - timedelta(days=30), term_end=when - timedelta(hours=1),
                           activated_at=when - timedelta(days=30), auto_renew=True))
    s.commit()
    return org


def test_renewals_job_twice_and_from_two_threads_charges_each_renewal_once(engine):
    now = tashkent(2026, 11, 10, 12)
    with Session(engine, expire_on_commit=False) as s:
        org = _licences_due(s, 6, now)
    barrier = threading.Barrier(2)
    errors = []
    outputs = []

    def worker():
        try:
            barrier.wait()
            outputs.append(registry.run_job("renewals", now))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs.append(registry.run_job("renewals", now + timedelta(hours=1)))
    assert errors == [], outputs
    with Session(engine) as s:
        charges = s.exec(select(LedgerEntry).where(LedgerEntry.kind == "charge")).all()
        assert len(charges) == 6 and len({c.idempotency_key for c in charges}) == 6
        assert sum(c.amount for c in charges) == Decimal("-360000.00")
        assert all(sub.term_end > now for sub in s.exec(select(Subscription)).all())
    _ = org


def _october_usage(s, tz="Asia/Tashkent"):
    org, plans, owner = payg_world(s, tz=tz)
    finance = f.user(s, org, role="finance")
    set_rates(s, date(2026, 10, 1), 40)
    sub = payg_sub(s, org, plans["azure-d"], name="Azure prod")
    add_usage(s, sub, tashkent(2026, 10, 30), 24 * 3, services=2)  # 30 Oct .. 1 Nov
    rating.rate_usage(s, now=tashkent(2026, 11, 2))
    return org, sub, owner, finance


def test_monthly_iaas_report_mails_an_xlsx_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        org, sub, owner, finance = _october_usage(s)
        ny_org, ny_sub, ny_owner, _ = _october_usage(s, tz="America/New_York")
    at = tashkent(2026, 11, 1, 6)
    out = registry.run_job("iaas_report", at)
    assert "2 mails" in out and "1 subscriptions wait" in out  # New York's October has not ended yet
    registry.run_job("iaas_report", at)
    with Session(engine) as s:
        rows = s.exec(select(Notification).where(Notification.kind == "iaas_monthly_report")).all()
        assert sorted(n.to_email for n in rows) == sorted([owner.email, finance.email])
        att = s.exec(select(NotificationAttachment).where(NotificationAttachment.notification_id == rows[0].id)).one()
        assert att.filename.endswith(".xlsx")
        wb = load_workbook(BytesIO(att.data))
        assert len(wb.sheetnames) == 2
        october = -sum(e.amount for e in s.exec(select(LedgerEntry).where(
            LedgerEntry.subscription_id == sub.id, LedgerEntry.period_start < tashkent(2026, 11, 1))).all())
        assert october > 0
    out = registry.run_job("iaas_report", tashkent(2026, 11, 1, 18))
    assert "2 mails" in out  # New York's turn
    with Session(engine) as s:
        assert len(s.exec(select(Notification).where(Notification.kind == "iaas_monthly_report")).all()) == 4


def test_closing_documents_job_makes_last_months_act_once(engine):
    with Session(engine, expire_on_commit=False) as s:
        org, *_ = _october_usage(s)
    registry.run_job("documents", tashkent(2026, 11, 1, 2, 30))
    registry.run_job("documents", tashkent(2026, 11, 1, 14, 30))
    with Session(engine) as s:
        docs = s.exec(select(ClosingDocument)).all()
        assert [(d.org_id, d.period) for d in docs] == [(org.id, date(2026, 10, 1))]


def test_cli_lists_and_runs_jobs_with_now(engine):
    from noventiq_panel.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["jobs", "list"])
    assert listed.exit_code == 0, listed.output
    for name in ("rating", "renewals", "reminders", "rates", "documents", "iaas_report", "mailer"):
        assert name in listed.output
    ran = runner.invoke(main, ["jobs", "run", "reminders", "--now", "2026-11-10T09:00:00+05:00"])
    assert ran.exit_code == 0 and "reminders:" in ran.output, ran.output
    assert registry.last_run("reminders").last_run_at == datetime(2026, 11, 10, 4, 0, tzinfo=timezone.utc)
    bad = runner.invoke(main, ["jobs", "run", "nope"])
    assert bad.exit_code != 0 and "unknown job" in bad.output
    bad_time = runner.invoke(main, ["jobs", "run", "rating", "--now", "yesterday"])
    assert bad_time.exit_code != 0 and "ISO" in bad_time.output


def test_cli_rates_fetch(engine, monkeypatch):
    import httpx

    from noventiq_panel.cli import main
    from noventiq_panel.services.core import cbu_rates

    from tests.services.core.test_cbu_rates import FEED

    real_client = httpx.Client

    def client(**kwargs):
        return real_client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=FEED)))

    monkeypatch.setattr(cbu_rates.httpx, "Client", client)
    out = CliRunner().invoke(main, ["rates", "fetch", "--date", "2026-11-24"])
    assert out.exit_code == 0, out.output
    assert "USD: 12171.03 UZS" in out.output
