"""Operator commands of the card gateways. Importing this module adds them to billing's
``payments`` group:

    noventiq-panel payments reconcile payme statement.json [--from 2026-11-01 --to 2026-12-01]
    noventiq-panel payments reconcile click export.csv

``payme``: FILE is the answer of Payme's GetStatement (as the merchant cabinet or a GetStatement
call gives it). ``click``: FILE is a CSV export of Click payments (README "Card payments" lists the
columns read). Each is compared with our transactions and the ledger; every difference is listed
(missing on either side, another state or amount, money posted or missing in the ledger). The exit
code is 1 when there is any difference.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import click

from . import billing


def _when(value: str) -> datetime:
    from ..services.core.clock import aware

    try:
        return aware(datetime.fromisoformat(value))
    except ValueError:
        raise click.BadParameter(f"not an ISO date-time: {value!r}") from None


def _ms(value: str | None) -> int | None:
    if not value:
        return None
    from ..services.billing import payme
    from ..services.core.clock import aware

    return payme.to_ms(aware(datetime.fromisoformat(value)))


@click.command("reconcile")
@click.argument("provider", type=click.Choice(["payme", "click"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "start", default=None, help="Period start, ISO date-time UTC (Payme: default the "
                                                    "statement's first transaction; Click: required).")
@click.option("--to", "end", default=None, help="Period end, ISO date-time UTC (Payme: default its last; "
                                                "Click: required).")
def reconcile(provider: str, file: Path, start: str | None, end: str | None) -> None:
    """Compare a provider's statement FILE with our transactions and the ledger."""
    from ..services.billing import click as click_svc
    from ..services.billing import payme

    text = file.read_text(encoding="utf-8-sig")
    with billing._session() as session:
        try:
            if provider == "payme":
                found = payme.reconcile(session, json.loads(text), start_ms=_ms(start), end_ms=_ms(end))
            else:
                if not (start and end):
                    raise click.UsageError("a Click export needs the period it covers: --from and --to")
                found = click_svc.reconcile(session, click_svc.read_export(text), _when(start), _when(end))
        except (ValueError, RecursionError, csv.Error) as exc:
            raise click.ClickException(f"{file}: {exc}") from None
    if not found:
        click.echo(f"{provider}: no differences")
        return
    for item in found:
        click.echo(f"{item.reference}\t{item.problem}\t{item.detail}")
    click.echo(f"{provider}: {len(found)} difference(s)", err=True)
    raise SystemExit(1)


billing.payments.add_command(reconcile)
