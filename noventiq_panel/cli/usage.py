"""Operator commands of pay-as-you-go usage: import vendor exports, export FOCUS, rebuild the roll-up.

    noventiq-panel usage import FILE [--format focus|azure]
    noventiq-panel usage import-folder [DIR]          (default: PANEL_USAGE_IMPORT_DIR)
    noventiq-panel usage export --org 3 --from 2025-01-01 --to 2025-01-31 [-o usage.csv]
    noventiq-panel usage rollup [--org 3]             rebuild the analytics daily roll-up
"""

from __future__ import annotations

import sys
from datetime import date, timedelta

import click

from ..services.core.errors import DomainError


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _date(value: str, hint: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO date: {value!r}", param_hint=hint) from None


def _echo_report(report, max_bad: int = 50) -> None:
    if report.error:
        click.echo(f"{report.source}: FAILED: {report.error}", err=True)
        return
    click.echo(report.summary())
    for line, reason in report.bad[:max_bad]:
        click.echo(f"  line {line}: {reason}")
    if report.bad_count > max_bad:
        click.echo(f"  ... and {report.bad_count - max_bad} more bad lines")
    for ref, n in sorted(report.unmatched_refs.items(), key=lambda x: -x[1])[:20]:
        click.echo(f"  unmatched subscription {ref}: {n} rows")


@click.group("usage")
def usage() -> None:
    """Pay-as-you-go usage: import vendor exports (FOCUS, Azure cost exports), export as FOCUS."""


@usage.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["focus", "azure"]), default=None,
              help="The file's format (detected from the header by default).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100000))
def import_cmd(file: str, fmt: str | None, batch_size: int) -> None:
    """Import one usage CSV (.csv or .csv.gz); a second import of the same file adds nothing."""
    from ..db import session_scope
    from noventiq_panel.services.usage import usage_import

    with session_scope() as session:
        try:
            report = usage_import.import_file(session, file, fmt, batch_size=batch_size)
        except DomainError as exc:
            _fail(exc)
    _echo_report(report)


@usage.command("import-folder")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["focus", "azure"]), default=None)
def import_folder_cmd(folder: str | None, fmt: str | None) -> None:
    """Import every CSV in FOLDER (default PANEL_USAGE_IMPORT_DIR); move them to done/ or failed/."""
    from ..db import session_scope
    from noventiq_panel.services.usage import folder_import

    with session_scope() as session:
        try:
            reports = folder_import.import_folder(session, folder, fmt=fmt)
        except DomainError as exc:
            _fail(exc)
    if not reports:
        click.echo("nothing to import")
    for report in reports:
        _echo_report(report, max_bad=10)


@usage.command("export")
@click.option("--org", "org_id", required=True, type=int, help="Organisation id.")
@click.option("--from", "start", required=True, help="First day (ISO date, organisation time zone).")
@click.option("--to", "last", required=True, help="Last day, inclusive (ISO date).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: standard output); its FOCUS metadata goes to FILE.metadata.json.")
def export_cmd(org_id: int, start: str, last: str, output: str | None) -> None:
    """Export an organisation's rated usage of a period as FOCUS 1.2 CSV (customer prices, billing
    currency). Usage not rated yet is left out and counted on standard error."""
    import json

    from ..db import session_scope
    from noventiq_panel.services.usage import focus_export
    from ..services.core.authz import Actor

    first, to = _date(start, "--from"), _date(last, "--to")
    actor = Actor.system(org_id)
    with session_scope() as session:
        try:
            chunks = focus_export.export_focus(session, actor, first, to + timedelta(days=1))
            if output:
                with open(output, "wb") as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                meta = focus_export.focus_metadata(session, actor)
                with open(f"{output}.metadata.json", "w", encoding="utf-8") as fh:
                    json.dump(meta, fh, ensure_ascii=False, indent=2)
                click.echo(f"written {output} (FOCUS {focus_export.FOCUS_VERSION}) and {output}.metadata.json",
                           err=True)
            else:
                for chunk in chunks:
                    sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            waiting = focus_export.unrated_count(session, actor, first, to + timedelta(days=1))
            if waiting:
                click.echo(f"{waiting} usage records of the period are not rated yet and were left out "
                           "(run the rating job, then export again)", err=True)
        except DomainError as exc:
            _fail(exc)


@usage.command("rollup")
@click.option("--org", "org_id", type=int, default=None, help="Only this organisation.")
def rollup_cmd(org_id: int | None) -> None:
    """Rebuild the analytics daily roll-up from the usage records (after a repair or a crash)."""
    from ..db import session_scope
    from noventiq_panel.services.usage import rollup

    with session_scope() as session:
        try:
            written = rollup.rebuild_rollup(session, org_id)
        except DomainError as exc:
            _fail(exc)
    click.echo(f"roll-up rows written: {written}")
