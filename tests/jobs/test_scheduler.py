"""The scheduler: exactly one of several schedulers runs the jobs (a lease in the database), the
other takes over when the holder stops, catch-up runs a missed job once, the Reflex lifespan."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

from sqlmodel import Session, select

from jobs import registry, scheduler
from jobs.job import JOBS, Job
from noventiq_panel.config import reset_settings
from noventiq_panel.models import JobLease, JobRun

NOW = datetime(2026, 11, 10, 4, 0, tzinfo=timezone.utc)


def test_the_lease_goes_to_one_holder_and_moves_only_when_expired(engine):
    ttl = timedelta(seconds=60)
    assert scheduler.acquire_lease("a", ttl, NOW)
    assert not scheduler.acquire_lease("b", ttl, NOW + timedelta(seconds=30))
    assert scheduler.acquire_lease("a", ttl, NOW + timedelta(seconds=40))  # renewed to +100 s
    assert not scheduler.acquire_lease("b", ttl, NOW + timedelta(seconds=99))
    assert scheduler.acquire_lease("b", ttl, NOW + timedelta(seconds=101))  # expired: taken over
    assert not scheduler.acquire_lease("a", ttl, NOW + timedelta(seconds=102))
    scheduler.release_lease("a")  # not the holder: changes nothing
    assert scheduler.lease_holder().holder == "b"
    scheduler.release_lease("b")
    assert scheduler.lease_holder() is None


def test_two_processes_asking_at_once_get_one_lease(engine):
    barrier = threading.Barrier(4)
    won = []

    def worker(name):
        barrier.wait()
        won.append((name, scheduler.acquire_lease(name, timedelta(seconds=60), NOW)))

    threads = [threading.Thread(target=worker, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(ok for _, ok in won) == 1
    with Session(engine) as s:
        assert len(s.exec(select(JobLease)).all()) == 1


def _probe(monkeypatch, calls):
    def probe(now):
        calls.append(now)
        return "probe ran"

    job = Job("probe", probe, {"trigger": "interval", "seconds": 1})
    monkeypatch.setitem(JOBS, "probe", job)
    return {"probe": job}


async def test_two_schedulers_one_runs_and_the_other_takes_over(engine, monkeypatch):
    calls = []
    jobs = _probe(monkeypatch, calls)
    a = scheduler.Scheduler(holder="A", lease_seconds=1.5, renew_seconds=0.3, jobs=jobs)
    b = scheduler.Scheduler(holder="B", lease_seconds=1.5, renew_seconds=0.3, jobs=jobs)
    await a.start()
    await asyncio.sleep(0.5)
    await b.start()
    await asyncio.sleep(2.5)
    assert a.leader and not b.leader
    assert a.runs and not b.runs and all(name == "probe" for name, _ in a.runs)
    ran_by_a = len(a.runs)
    await a.stop()  # releases the lease: B takes over at its next check
    await asyncio.sleep(2.5)
    assert b.leader and b.runs
    assert len(a.runs) == ran_by_a
    await b.stop()
    assert scheduler.lease_holder() is None
    assert registry.last_run("probe").last_result == "probe ran"


async def test_a_holder_that_loses_its_lease_stops_running_jobs(engine, monkeypatch):
    calls = []
    jobs = _probe(monkeypatch, calls)
    a = scheduler.Scheduler(holder="A", lease_seconds=30, renew_seconds=0.3, jobs=jobs)
    await a.start()
    await asyncio.sleep(0.6)
    assert a.leader
    with Session(engine) as s:  # someone else took it (e.g. A's clock ran slow and the lease expired)
        lease = s.get(JobLease, scheduler.LEASE_NAME)
        lease.holder, lease.expires_at = "B", datetime.now(timezone.utc) + timedelta(minutes=5)
        s.add(lease)
        s.commit()
    await asyncio.sleep(0.8)
    assert not a.leader
    before = len(a.runs)
    await asyncio.sleep(1.5)
    assert len(a.runs) == before
    await a.stop()


async def test_catch_up_runs_a_missed_job_once_at_start(engine, monkeypatch):
    calls = []

    def daily(now):
        calls.append(now)
        return "daily ran"

    job = Job("daily", daily, {"trigger": "cron", "hour": 9, "minute": 0})
    monthly = Job("monthly", daily, {"trigger": "cron", "day": 1, "hour": 3}, run_when_new=False)
    monkeypatch.setitem(JOBS, "daily", job)
    monkeypatch.setitem(JOBS, "monthly", monthly)
    registry.record("daily", at=datetime.now(timezone.utc) - timedelta(hours=26), result="before the downtime")
    s = scheduler.Scheduler(holder="A", lease_seconds=5, renew_seconds=0.3, jobs={"daily": job, "monthly": monthly})
    await s.start()
    await asyncio.sleep(1.5)
    await s.stop()
    assert len(calls) == 1  # 26 hours down: one daily run, not two
    assert [name for name, _ in s.runs] == ["daily"]
    with Session(engine) as sess:  # a monthly job never run before only gets a starting point
        assert sess.get(JobRun, "monthly").last_result.startswith("starting point")


async def test_lifespan_starts_and_stops_the_scheduler_unless_disabled(engine, monkeypatch):
    calls = []
    jobs = _probe(monkeypatch, calls)
    monkeypatch.setattr(registry, "all_jobs", lambda: jobs)
    monkeypatch.setenv("PANEL_SCHEDULER", "0")
    reset_settings()
    async with scheduler.lifespan():
        assert scheduler._current is None
    monkeypatch.setenv("PANEL_SCHEDULER", "1")
    reset_settings()
    async with scheduler.lifespan():
        assert scheduler._current is not None
        await asyncio.sleep(1.5)
        assert scheduler._current.leader
    assert scheduler._current is None
    assert scheduler.lease_holder() is None
    assert calls


def test_due_for_catch_up_lists_the_jobs_missed_in_a_gap(engine):
    now = datetime.now(timezone.utc)
    for name in registry.all_jobs():
        registry.record(name, at=now - timedelta(hours=26), result="")
    due = scheduler.due_for_catch_up(now)
    assert {"rating", "renewals", "reminders", "rates", "mailer"} <= set(due)
    assert "budgets" not in due  # runs after rating, no schedule of its own
