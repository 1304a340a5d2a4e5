"""Operator commands of the ledger: the reconciliation.

    noventiq-panel ledger check [--org ID] [--now 2026-11-25T08:30]

``check`` prints every difference between the ledger and itself, the seats held and the usage
charged (``services/reporting/ledger_check``) and exits 1 when there is one; when all is well it
prints a one-line summary and exits 0, so it can run after a restore or from cron.
"""

from __future__ import annotations

import sys

import click

from ..services.core.errors import DomainError
from .core import _now


@click.group("ledger")
def ledger() -> None:
    """The ledger: reconcile it with itself, the seats held and the usage charged."""


@ledger.command("check")
@click.option("--org", "org_id", type=int, default=None, help="Only this organisation (its id).")
@click.option("--now", "now", default=None, help="Check as of this ISO date-time (UTC); default: now.")
def check_cmd(org_id: int | None, now: str | None) -> None:
    """Print every difference and exit 1 if there is one; else a summary and exit 0."""
    from ..db import session_scope
    from ..services.reporting import ledger_check

    with session_scope() as session:
        try:
            report = ledger_check.check(session, org_id=org_id, now=_now(now))
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None
    for difference in report.differences:
        click.echo(str(difference))
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)
