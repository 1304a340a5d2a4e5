"""Operator commands of billing: confirm payments, import bank statements, list invoices, generate
closing documents.

    noventiq-panel payments confirm СЧ-2026-000123 [--amount 500000.00]
    noventiq-panel payments import-statement statement.csv
    noventiq-panel payments list [--status pending] [--org 3]
    noventiq-panel payments mark-overdue
    noventiq-panel payments postpaid 2026-10
    noventiq-panel documents generate 2026-10
    noventiq-panel documents check --month 2026-10
    noventiq-panel documents esf --document АКТ-2026-000042 [--kind esf|act] [--out file.json]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
from sqlmodel import Session

from ..services.core.errors import DomainError


def _now(value: str | None) -> datetime | None:
    if not value:
        return None
    from ..services.core.clock import aware

    return aware(datetime.fromisoformat(value))


@contextmanager
def _session() -> Iterator[Session]:
    """A session for one command; a domain error ends the command with its message."""
    from ..db import session_scope

    with session_scope() as session:
        try:
            yield session
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None


def _complete_waiting_actions() -> None:
    """Money confirmed here may complete an order or licence increase that waits for it: the
    subscriptions area registers that with ``payments.on_payment_confirmed`` when imported; and it
    may bring an overdrawn balance back (credit control, ``payments.on_payment_received``)."""
    import noventiq_panel.services.subscriptions.credit_control  # noqa: F401
    import noventiq_panel.services.subscriptions.pending_actions  # noqa: F401


@click.group("payments")
def payments() -> None:
    """Payments and invoices to pay."""


@payments.command("confirm")
@click.argument("number")
@click.option("--amount", default=None, help="Amount received (default: the rest of the invoice).")
@click.option("--over-payment", is_flag=True,
              help="A statement line credited a part already and this is more money: credit it all the same.")
@click.option("--now", default=None, help="ISO date-time (UTC) to record instead of now.")
def confirm(number: str, amount: str | None, over_payment: bool, now: str | None) -> None:
    """Confirm that money for invoice NUMBER arrived."""
    from noventiq_panel.services.billing import payments as svc

    _complete_waiting_actions()
    with _session() as session:
        result = svc.confirm_payment(session, number, amount=amount, now=_now(now), source="operator",
                                     over_payment=over_payment)
        p = result.payment
        if result.changed:
            click.echo(f"{p.number}: credited {result.credited} {p.currency}; paid {p.paid_amount} of {p.amount}; "
                       f"status {p.status}")
        else:
            click.echo(f"{p.number}: already {p.status} ({p.paid_amount} of {p.amount} {p.currency}); nothing changed")
        if result.action_status:
            click.echo(f"waiting action: {result.action_status}")


@payments.command("import-statement")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--now", default=None, help="ISO date-time (UTC) to record instead of now.")
def import_statement(file: str, now: str | None) -> None:
    """Import a bank statement CSV (date, amount, payer tax id, purpose)."""
    from noventiq_panel.services.billing import statement_import

    _complete_waiting_actions()
    with _session() as session:
        report = statement_import.import_statement(session, file, now=_now(now))
    for line in report.lines:
        details = " ".join(x for x in (line.payment_number or "", f"{line.amount}" if line.amount else "",
                                       line.reason) if x)
        click.echo(f"line {line.line_no}: {line.status} {details}".rstrip())
    click.echo(report.summary())
    if report.paid_numbers:
        click.echo("paid: " + ", ".join(report.paid_numbers))


@payments.command("review")
@click.option("--status", type=click.Choice(["review", "assigned", "rejected", "credited"]), default="review",
              show_default=True)
@click.option("--limit", type=int, default=100)
def review(status: str, limit: int) -> None:
    """Bank statement lines that wait for an operator (no exact match of invoice, payer and amount)."""
    from noventiq_panel.services.billing import statement_import

    with _session() as session:
        lines = statement_import.review_list(session, status=status, limit=limit)
    if not lines:
        click.echo("Nothing waits for review." if status == "review" else f"No {status} lines.")
    for line in lines:
        click.echo(f"#{line.id}  {line.value_date}  {line.amount}  payer {line.payer_tax_id or '(none)'}  "
                   f"«{line.purpose}»")
        click.echo(f"      {line.reason}")


@payments.command("assign")
@click.argument("line_id", type=int)
@click.argument("number")
@click.option("--note", default="", help="Why (kept with the line).")
@click.option("--over-payment", is_flag=True,
              help="The invoice is paid (or cancelled), or a part was confirmed by hand, and this line is more "
                   "money: credit it all the same.")
@click.option("--now", default=None, help="ISO date-time (UTC) to record instead of now.")
def assign(line_id: int, number: str, note: str, over_payment: bool, now: str | None) -> None:
    """Credit statement line LINE_ID to invoice NUMBER (its organisation's balance)."""
    from noventiq_panel.services.billing import statement_import

    _complete_waiting_actions()
    with _session() as session:
        result = statement_import.assign(session, line_id, number, note=note, over_payment=over_payment,
                                         now=_now(now))
    click.echo(f"line #{line_id}: {result.credited} credited to invoice {result.payment_number}.")


@payments.command("reject")
@click.argument("line_id", type=int)
@click.option("--note", required=True, help="Why it is not a customer's payment (returned, not ours...).")
def reject(line_id: int, note: str) -> None:
    """Set statement line LINE_ID aside: nobody's balance changes."""
    from noventiq_panel.services.billing import statement_import

    with _session() as session:
        statement_import.reject(session, line_id, note=note)
    click.echo(f"line #{line_id}: rejected.")


@payments.command("list")
@click.option("--status", default=None, help="pending | paid | overdue | cancelled | failed")
@click.option("--org", "org_id", type=int, default=None, help="Only this organisation.")
@click.option("--limit", type=int, default=50)
def list_(status: str | None, org_id: int | None, limit: int) -> None:
    """List invoices to pay, newest first."""
    from noventiq_panel.services.billing import invoices

    with _session() as session:
        rows = invoices.operator_list(session, status=status, org_id=org_id, limit=limit)
        for oid, r in rows:
            click.echo(f"{r.number}\torg {oid}\t{r.created_at:%Y-%m-%d}\t{r.amount} {r.currency}\t"
                       f"paid {r.paid_amount}\tdue {r.due_date or '-'}\t{r.status}\t{r.kind}")
        if not rows:
            click.echo("no payments")


@payments.command("mark-overdue")
@click.option("--now", default=None)
def mark_overdue(now: str | None) -> None:
    """Mark pending invoices past their due date as overdue."""
    from noventiq_panel.services.billing import postpaid

    with _session() as session:
        changed = postpaid.mark_overdue(session, now=_now(now))
        for p in changed:
            click.echo(f"{p.number}: overdue (due {p.due_date})")
        click.echo(f"{len(changed)} newly overdue")


@payments.command("postpaid")
@click.argument("month")
@click.option("--now", default=None)
def postpaid(month: str, now: str | None) -> None:
    """Issue the monthly invoices of postpaid organisations for MONTH (YYYY-MM)."""
    from noventiq_panel.services.billing import postpaid as svc
    from ..services.billing.documents import parse_month

    with _session() as session:
        created = svc.issue_postpaid_invoices(session, parse_month(month), now=_now(now))
        for p in created:
            click.echo(f"{p.number}: org {p.org_id}, {p.amount} {p.currency}, due {p.due_date}")
        click.echo(f"{len(created)} invoices issued")


@click.group("documents")
def documents() -> None:
    """Closing documents (act of completed work + счёт-фактура)."""


@documents.command("generate")
@click.argument("month")
@click.option("--now", default=None, help="ISO date-time (UTC) to use instead of now.")
def generate(month: str, now: str | None) -> None:
    """Generate the closing documents of MONTH (YYYY-MM) for every organisation charged in it."""
    from noventiq_panel.services.billing import documents as svc

    with _session() as session:
        _echo_check(session, month)
        created = svc.generate_month(session, month, now=_now(now))
        for doc in created:
            click.echo(f"{svc.act_number(doc.year, doc.number)}: org {doc.org_id}, {doc.period:%Y-%m}, "
                       f"{doc.total} {doc.currency} (VAT {doc.vat})")
        click.echo(f"{len(created)} documents generated")



def _echo_check(session: Session, month: str) -> bool:
    """Print what the electronic invoices (ЭСФ) of MONTH lack; True when nothing is missing."""
    from noventiq_panel.services.billing import esf

    check = esf.check_month(session, month)
    if check.ok:
        click.echo(f"ЭСФ of {check.month:%Y-%m}: complete for {check.organisations} organisations")
        return True
    click.echo(f"ЭСФ of {check.month:%Y-%m}: {len(check.missing)} missing (the acts are made all the same; "
               f"their ЭСФ files wait until this is fixed):")
    for line in check.lines():
        click.echo(f"  - {line}")
    return False


@documents.command("check")
@click.option("--month", required=True, help="YYYY-MM (the current month too: what it lacks so far).")
def check(month: str) -> None:
    """List what the electronic invoices (ЭСФ) of a month lack: the seller's requisites, an
    organisation's VAT code or bank, a product's ИКПУ code... Exit code 1 when something is missing."""
    with _session() as session:
        complete = _echo_check(session, month)
    if not complete:
        raise SystemExit(1)


@documents.command("esf")
@click.option("--document", "reference", required=True, help="The closing document's id or number (АКТ-2026-000042).")
@click.option("--kind", type=click.Choice(["esf", "act"]), default="esf", show_default=True,
              help="esf: счёт-фактура (Didox type 002); act: акт выполненных работ (type 005).")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the JSON to this file (default: print it).")
def esf_file(reference: str, kind: str, out: str | None) -> None:
    """The JSON of a closing document's ЭСФ or act, for the accountant to import and sign in Didox."""
    from noventiq_panel.services.billing import esf

    with _session() as session:
        made = esf.operator_export(session, reference, kind)
    name, data = made.filename, made.content
    if made.notes():
        click.echo(f"note: {made.notes()}", err=True)
    if out:
        with open(out, "wb") as handle:
            handle.write(data)
        click.echo(f"{name}: written to {out}")
    else:
        click.echo(data.decode("utf-8"))
