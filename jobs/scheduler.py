"""APScheduler 3 (AsyncIOScheduler) running the jobs of ``jobs.definitions`` — in exactly one process.

Every process that starts a :class:`Scheduler` (each Reflex worker through :func:`lifespan`, or
``noventiq-panel jobs serve``) competes for one lease row (``JobLease`` named ``scheduler``):

- ``acquire``: insert the row, or take it over when it is ours or has expired
  (``UPDATE … WHERE name = 'scheduler' AND (holder = me OR expires_at < now)``, atomic on SQLite
  and PostgreSQL alike); the lease lasts ``lease_seconds`` (60) and is renewed every
  ``renew_seconds`` (20);
- the holder adds the job schedules; the others only retry the lease, so when the holder dies its
  lease expires and another process takes over within a minute;
- a holder that fails to renew (database down, clock trouble, taken over) removes its job
  schedules at once, and each job checks the lease again right before it runs.

Jobs run in APScheduler's thread pool (a slow job never blocks the web workers' event loop),
one instance of each at a time, missed runs coalesced into one.

Catch-up: when a process takes the lease it compares each job's schedule with ``JobRun.last_run_at``;
a job whose scheduled run fell inside the downtime runs once, now (rating then bills every hour
still unrated, reminders compute from now, the monthly jobs make last month's documents and
reports). A monthly job never run before only records a starting point.

``settings.scheduler_enabled`` (``PANEL_SCHEDULER=0``) turns off the in-process scheduler of the
web app; ``noventiq-panel jobs serve`` then runs it as its own process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from noventiq_panel.config import get_settings
from noventiq_panel.models import JobLease
from noventiq_panel.services.core import clock

from . import registry
from .job import SCHEDULE_TZ, Job

log = logging.getLogger("jobs.scheduler")

LEASE_NAME = "scheduler"


def _engine():
    from noventiq_panel.db import get_engine

    return get_engine()


def acquire_lease(holder: str, ttl: timedelta, now: datetime | None = None, name: str = LEASE_NAME,
                  engine=None) -> bool:
    """Take or renew the lease; True when ``holder`` holds it until ``now + ttl``."""
    now = now or clock.utcnow()
    engine = engine or _engine()
    with Session(engine) as s:
        try:
            s.add(JobLease(name=name, holder=holder, expires_at=now + ttl))
            s.commit()
            return True
        except IntegrityError:
            s.rollback()
        result = s.execute(
            update(JobLease)
            .where(JobLease.name == name, or_(JobLease.holder == holder, JobLease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        s.commit()
        return result.rowcount == 1


def release_lease(holder: str, name: str = LEASE_NAME, engine=None) -> None:
    with Session(engine or _engine()) as s:
        s.execute(delete(JobLease).where(JobLease.name == name, JobLease.holder == holder))
        s.commit()


def lease_holder(name: str = LEASE_NAME, engine=None) -> JobLease | None:
    with Session(engine or _engine(), expire_on_commit=False) as s:
        row = s.get(JobLease, name)
        s.commit()
        return row


def due_for_catch_up(now: datetime | None = None) -> list[str]:
    """Names of the scheduled jobs whose run fell in the time since their last recorded run."""
    now = now or clock.utcnow()
    out = []
    for name, j in sorted(registry.all_jobs().items()):
        last = registry.last_run(name)
        if registry.missed(j, last.last_run_at if last else None, now):
            out.append(name)
    return out


class Scheduler:
    """One process's scheduler; runs the jobs only while it holds the lease."""

    def __init__(self, *, holder: str | None = None, lease_seconds: float = 60, renew_seconds: float = 20,
                 jobs: dict[str, Job] | None = None, catch_up: bool = True):
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl = timedelta(seconds=lease_seconds)
        self.renew_seconds = renew_seconds
        self._jobs = jobs
        self.catch_up = catch_up
        self.scheduler = None
        self.leader = False
        self.lease_until: datetime | None = None
        self.runs: list[tuple[str, str]] = []  # (job, summary) of this process, for tests and logs

    @property
    def jobs(self) -> dict[str, Job]:
        if self._jobs is None:
            self._jobs = registry.all_jobs()
        return self._jobs

    # -- life cycle --
    async def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        if self.scheduler is not None:
            return
        self.scheduler = AsyncIOScheduler(
            timezone=SCHEDULE_TZ,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self.scheduler.start()
        self.scheduler.add_job(self._keep_lease, "interval", seconds=self.renew_seconds, id="_lease",
                               next_run_time=datetime.now(self.scheduler.timezone))
        log.info("scheduler %s started; waiting for the lease", self.holder)

    async def stop(self) -> None:
        if self.scheduler is None:
            return
        sched, self.scheduler = self.scheduler, None
        sched.shutdown(wait=False)
        if self.leader:
            self.leader = False
            try:
                await asyncio.to_thread(release_lease, self.holder)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.exception("could not release the scheduler lease")
        log.info("scheduler %s stopped", self.holder)

    # -- the lease --
    async def _keep_lease(self) -> None:
        now = clock.utcnow()
        try:
            held = await asyncio.to_thread(acquire_lease, self.holder, self.ttl, now)
        except Exception:  # noqa: BLE001 - database trouble: step down until it answers
            log.exception("scheduler lease check failed")
            held = False
        if held:
            self.lease_until = now + self.ttl
            if not self.leader:
                self.leader = True
                log.info("scheduler %s holds the lease: scheduling %d jobs", self.holder, len(self.jobs))
                await self._schedule_jobs(now)
        elif self.leader:
            log.warning("scheduler %s lost the lease: jobs stopped here", self.holder)
            self.leader = False
            self.lease_until = None
            self._unschedule_jobs()

    def holds_lease(self) -> bool:
        return self.leader and self.lease_until is not None and clock.utcnow() < self.lease_until

    async def _schedule_jobs(self, now: datetime) -> None:
        if self.scheduler is None:
            return
        missed: set[str] = set()
        if self.catch_up:
            for name, j in self.jobs.items():
                if j.schedule is None:
                    continue
                last = await asyncio.to_thread(registry.last_run, name)
                if last is None and not j.run_when_new:
                    await asyncio.to_thread(registry.record, name, at=now, result="starting point (first start)")
                elif registry.missed(j, last.last_run_at if last else None, now):
                    missed.add(name)
        for name, j in self.jobs.items():
            trigger = j.trigger()
            if trigger is None:
                continue
            kwargs = {}
            if name in missed:
                kwargs["next_run_time"] = datetime.now(self.scheduler.timezone)  # once now, then on schedule
                log.info("job %s missed a run while no scheduler ran: running it now", name)
            self.scheduler.add_job(self._run, trigger, args=[name], id=name, name=name, replace_existing=True,
                                   **kwargs)

    def _unschedule_jobs(self) -> None:
        if self.scheduler is None:
            return
        for name in self.jobs:
            try:
                self.scheduler.remove_job(name)
            except Exception:  # noqa: BLE001 - not scheduled
                pass

    def _run(self, name: str) -> str | None:
        """Executed in the thread pool by APScheduler."""
        if not self.holds_lease():
            log.warning("job %s skipped: this process does not hold the scheduler lease", name)
            return None
        try:
            summary = registry.run_job(name, clock.utcnow())
        except Exception as exc:  # noqa: BLE001 - logged and recorded by run_job; the next run retries
            summary = f"error: {exc}"
        self.runs.append((name, summary))
        return summary


_current: Scheduler | None = None


async def start(**kwargs) -> Scheduler:
    """Start this process's scheduler (idempotent). Call from a running event loop."""
    global _current
    if _current is None:
        _current = Scheduler(**kwargs)
        await _current.start()
    return _current


async def stop() -> None:
    global _current
    if _current is not None:
        sched, _current = _current, None
        await sched.stop()


@asynccontextmanager
async def lifespan():
    """For Reflex: ``app.register_lifespan_task(lifespan)`` — starts the scheduler in every worker
    (only the lease holder runs jobs) unless ``PANEL_SCHEDULER=0``; stops it on shutdown."""
    if not get_settings().scheduler_enabled:
        log.info("in-process scheduler disabled (PANEL_SCHEDULER=0)")
        yield
        return
    await start()
    try:
        yield
    finally:
        await stop()


async def serve(stop_event: asyncio.Event | None = None) -> None:
    """Run the scheduler until ``stop_event`` is set or the process gets SIGINT/SIGTERM."""
    import signal

    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop_event.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread / Windows
            pass
    await start()
    try:
        await stop_event.wait()
    finally:
        await stop()


__all__ = ["Scheduler", "acquire_lease", "due_for_catch_up", "lease_holder", "lifespan", "release_lease", "serve",
           "start", "stop"]
