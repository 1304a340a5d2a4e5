"""Running the registered jobs (``jobs.definitions``, each declared with ``jobs.job.job``).

A job is safe to run twice, concurrently or again after a crash (each service it calls is); the
registry adds the bookkeeping: ``run_job`` records the finish in ``JobRun`` (``last_run_at``,
``last_result``), which catch-up reads after downtime. A failed run keeps the previous
``last_run_at`` (so catch-up retries it) and stores the error as ``last_result``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from noventiq_panel.models import JobRun
from noventiq_panel.services.core import clock

from . import definitions  # noqa: F401 - registers the jobs
from .job import JOBS, Job

log = logging.getLogger("jobs")

def all_jobs() -> dict[str, Job]:
    return dict(JOBS)


def get(name: str) -> Job:
    jobs = all_jobs()
    if name not in jobs:
        raise KeyError(f"unknown job {name!r}; known: {', '.join(sorted(jobs))}")
    return jobs[name]


def _session() -> Session:
    from noventiq_panel.db import get_engine

    return Session(get_engine(), expire_on_commit=False)


def last_run(name: str) -> JobRun | None:
    with _session() as s:
        row = s.get(JobRun, name)
        s.commit()  # ends the read (SQLite's lock); expire_on_commit=False keeps the row readable
        return row


def record(name: str, *, at: datetime | None, result: str) -> None:
    """Store the outcome of a run; ``at=None`` (a failure) keeps ``last_run_at``. Two runs finishing
    at once: the later ``last_run_at`` stays."""
    for _attempt in range(3):
        with _session() as s:
            row = s.get(JobRun, name)
            if row is None:
                # never run: a failure leaves an old starting point so that catch-up retries it
                s.add(JobRun(name=name, last_run_at=at or clock.utcnow() - timedelta(days=3650),
                             last_result=result[:1000]))
                try:
                    s.commit()
                    return
                except IntegrityError:  # another run of the job recorded first: update that row
                    s.rollback()
                    continue
            if at is not None and at >= row.last_run_at:
                row.last_run_at = at
            row.last_result = result[:1000]
            s.add(row)
            s.commit()
            return


def run_job(name: str, now: datetime | None = None) -> str:
    """Run one job once for ``now`` (default: the current time) and record it. Returns its summary.

    Exceptions propagate after being recorded as the job's last result.
    """
    j = get(name)
    now = clock.aware(now) if now else clock.utcnow()
    started = time.perf_counter()
    log.info("job %s started (now=%s)", name, now.isoformat())
    try:
        summary = j.func(now)
    except Exception as exc:
        log.exception("job %s failed", name)
        try:
            record(name, at=None, result=f"error: {type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - the database may be the problem
            log.exception("job %s: could not record the failure", name)
        raise
    summary = summary or "done"
    record(name, at=now, result=summary)
    log.info("job %s finished in %.1fs: %s", name, time.perf_counter() - started, summary)
    return summary


def missed(j: Job, last_run_at: datetime | None, now: datetime) -> bool:
    """Whether a scheduled run of ``j`` fell in (last_run_at, now] — i.e. it should run once now."""
    trigger = j.trigger()
    if trigger is None:
        return False
    if last_run_at is None:
        return j.run_when_new
    if j.schedule.get("trigger") == "interval":
        every = timedelta(**{k: v for k, v in j.schedule.items()
                             if k in ("weeks", "days", "hours", "minutes", "seconds")})
        return last_run_at + every <= now
    after = last_run_at + timedelta(seconds=1)
    fire = trigger.get_next_fire_time(None, after)
    return fire is not None and fire <= now
