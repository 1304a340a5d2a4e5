"""Operator commands of the periodic jobs and of the CBU rates feed.

    noventiq-panel jobs list                        the jobs, their schedule, last run and result
    noventiq-panel jobs run NAME [--now ISO-TIME]   run one job once (``--now`` travels in time)
    noventiq-panel jobs serve                       run the scheduler as its own process
    noventiq-panel rates fetch [--date YYYY-MM-DD]  fetch the Central Bank of Uzbekistan's rates

``rates fetch`` joins the ``rates`` group of ``cli/core.py`` (next to ``rates set`` / ``rates list``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime

import click

from . import core


def _now(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO date-time: {value!r} (e.g. 2026-11-01T00:05+05:00)",
                                 param_hint="--now") from None
    from ..services.core.clock import aware

    return aware(moment)  # a time without an offset is UTC


@click.group()
def jobs() -> None:
    """Periodic jobs: rating, renewals, reminders, rates, documents, reports, the outbox."""


@jobs.command("list")
def jobs_list() -> None:
    """The jobs with their schedules and last runs."""
    from jobs import registry

    for name, j in sorted(registry.all_jobs().items()):
        last = registry.last_run(name)
        when = last.last_run_at.isoformat(timespec="seconds") if last else "never"
        click.echo(f"{name:18} {j.describe_schedule()}")
        click.echo(f"{'':18} {j.description}")
        click.echo(f"{'':18} last run: {when}" + (f" — {last.last_result}" if last and last.last_result else ""))


@jobs.command("run")
@click.argument("name")
@click.option("--now", "now_text", default=None, metavar="ISO-TIME",
              help="Run as if it were this moment (UTC unless an offset is given).")
def jobs_run(name: str, now_text: str | None) -> None:
    """Run the job NAME once, now (or at --now), and record the run."""
    from jobs import registry

    if name not in registry.all_jobs():
        raise click.BadParameter(f"unknown job; known: {', '.join(sorted(registry.all_jobs()))}",
                                 param_hint="NAME")
    try:
        click.echo(registry.run_job(name, _now(now_text)))
    except Exception as exc:  # noqa: BLE001 - recorded by run_job; shown here
        raise click.ClickException(f"{name} failed: {type(exc).__name__}: {exc}") from exc


@jobs.command("serve")
def jobs_serve() -> None:
    """Run the scheduler in this process until interrupted (use with PANEL_SCHEDULER=0 in the app).

    Several copies may run: a lease in the database lets exactly one of them run the jobs."""
    from jobs import scheduler

    logging.getLogger().setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo("scheduler running; Ctrl+C to stop")
    asyncio.run(scheduler.serve())


@core.rates.command("fetch")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD",
              help="The rates of this day (default: today's feed).")
def rates_fetch(day: str | None) -> None:
    """Fetch the Central Bank of Uzbekistan's rates and store every currency (source: cbu)."""
    from noventiq_panel.services.core import cbu_rates

    rate_day = None
    if day:
        try:
            rate_day = date.fromisoformat(day)
        except ValueError:
            raise click.BadParameter(f"not a date (YYYY-MM-DD): {day!r}", param_hint="--date") from None
    with core._session() as session:
        result = cbu_rates.fetch_rates(session, rate_day)
    if not result.ok:
        raise click.ClickException(str(result))
    click.echo(str(result))
    for ccy in ("USD", "EUR", "RUB"):
        if ccy in result.stored:
            click.echo(f"  {ccy}: {result.stored[ccy].normalize():f} UZS")


rates_group = core.rates

__all__ = ["jobs", "rates_fetch", "rates_group"]
