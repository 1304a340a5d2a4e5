"""What a job is: a name, a plain function ``run(now: datetime) -> str`` and its schedule, declared
with the ``job`` decorator (``jobs.definitions``) and run by ``jobs.registry``.

Schedules are APScheduler 3 trigger arguments: ``{"trigger": "cron", "minute": 5}`` or
``{"trigger": "interval", "minutes": 1}``; cron fields are read in ``SCHEDULE_TZ`` (Tashkent), the
reseller's own day. ``schedule=None``: run only by another job or by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

SCHEDULE_TZ = "Asia/Tashkent"


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[datetime], str]
    schedule: dict[str, Any] | None
    description: str = ""
    # Run once at start when no run was recorded yet (frequent jobs); monthly jobs only record a
    # starting point instead, so a first start on the 15th does not send last month's reports.
    run_when_new: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def trigger(self):
        """The APScheduler trigger of the schedule (None when unscheduled)."""
        if not self.schedule:
            return None
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        args = dict(self.schedule)
        kind = args.pop("trigger", "cron")
        if kind == "interval":
            return IntervalTrigger(timezone=SCHEDULE_TZ, **args)
        return CronTrigger(timezone=SCHEDULE_TZ, **args)

    def describe_schedule(self) -> str:
        if not self.schedule:
            return "after another job / by hand"
        args = dict(self.schedule)
        kind = args.pop("trigger", "cron")
        return f"{kind} " + " ".join(f"{k}={v}" for k, v in args.items()) + (f" ({SCHEDULE_TZ})" if kind == "cron" else "")


JOBS: dict[str, Job] = {}


def job(name: str, *, schedule: dict[str, Any] | None, description: str = "", run_when_new: bool = True):
    """Decorator: register ``func(now) -> str`` under ``name``."""

    def register(func: Callable[[datetime], str]) -> Callable[[datetime], str]:
        JOBS[name] = Job(name=name, func=func, schedule=schedule, description=description or (func.__doc__ or "").strip(),
                         run_when_new=run_when_new)
        return func

    return register
