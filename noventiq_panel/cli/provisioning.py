"""Operator commands of the provisioning queue: orders and changes of a vendor without an API.

    noventiq-panel provisioning list [--all]
    noventiq-panel provisioning show TASK
    noventiq-panel provisioning complete TASK --operator NAME [--vendor-ref REF] [--tenant-id GUID]
    noventiq-panel provisioning reject TASK --operator NAME --reason TEXT

Carry the task out at the vendor first (its portal, e-mail, phone), then close it here: ``complete``
activates an order (its reserved price is charged then, once; an order needs the vendor's
reference) or records a change as done; ``reject`` cancels an order and releases its reservation,
and the customer sees the reason. The rules are ``services/subscriptions/provisioning.py``.
"""

from __future__ import annotations

import click

from ..services.core.errors import DomainError
from .core import _now


@click.group("provisioning")
def provisioning() -> None:
    """The queue of orders and changes to carry out at a vendor by hand."""


def _line(t) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(t.params.items()))
    money = f"  reserved {t.reserved} {t.currency}" if t.reserved else ""
    done = f"  {t.status} {t.done_at:%Y-%m-%d %H:%M} by {t.done_by}" if t.done_at else ""
    return (f"#{t.id}  {t.requested_at:%Y-%m-%d %H:%M} UTC  {t.action:<10} {t.vendor_code:<12} "
            f"org {t.org_id} {t.org_name!r}  subscription {t.subscription_id} {t.subscription_name!r}"
            f"{'  (' + params + ')' if params else ''}{money}{done}")


def _run(fn, *args, **kwargs):
    from ..db import session_scope

    with session_scope() as session:
        try:
            return fn(session, *args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None


@provisioning.command("list")
@click.option("--all", "everything", is_flag=True, help="Every task, newest first (default: the open ones, oldest first).")
@click.option("--limit", default=200, type=click.IntRange(1, 100000), show_default=True, help="At most this many.")
def list_cmd(everything: bool, limit: int) -> None:
    """The open tasks, oldest first."""
    from ..services.subscriptions import provisioning as queue

    status = None if everything else "open"
    tasks = _run(queue.list_tasks, status=status, limit=limit)
    for t in tasks:
        click.echo(_line(t))
    if not tasks:
        click.echo("no tasks" if everything else "no open tasks")
    total = _run(queue.count_tasks, status=status)
    if total > len(tasks):
        click.echo(f"showing {len(tasks)} of {total} tasks ({'newest' if everything else 'oldest'} first; "
                   f"--limit to see more)")


@provisioning.command("show")
@click.argument("task")
def show_cmd(task: str) -> None:
    """One task with everything it records."""
    from ..services.subscriptions import provisioning as queue

    t = _run(queue.get_task, task)
    click.echo(_line(t))
    if t.vendor_ref:
        click.echo(f"vendor reference: {t.vendor_ref}")
    if t.reason:
        click.echo(f"reason: {t.reason}")
    if t.tenant:
        click.echo(f"Microsoft tenant: {t.tenant}")


@provisioning.command("complete")
@click.argument("task")
@click.option("--operator", required=True, help="Who did it at the vendor (kept on the task and in the audit).")
@click.option("--vendor-ref", default="", help="The vendor's reference of the subscription (required for an order).")
@click.option("--tenant-id", default="", help="A Microsoft order: the customer's tenant id it was placed in "
              "(confirms the tenant the customer linked or asked for).")
@click.option("--now", "now", default=None, help="As of this ISO date-time (UTC); default: now.")
def complete_cmd(task: str, operator: str, vendor_ref: str, tenant_id: str, now: str | None) -> None:
    """The task is done at the vendor: an order becomes active and is charged its reserved price."""
    from ..services.subscriptions import provisioning as queue

    t = _run(queue.complete, task, vendor_ref=vendor_ref, operator=operator, tenant_id=tenant_id, now=_now(now))
    click.echo(f"completed: {_line(t)}")


@provisioning.command("reject")
@click.argument("task")
@click.option("--operator", required=True, help="Who is rejecting it.")
@click.option("--reason", required=True, help="Why the vendor refused (the customer sees it).")
@click.option("--now", "now", default=None, help="As of this ISO date-time (UTC); default: now.")
def reject_cmd(task: str, operator: str, reason: str, now: str | None) -> None:
    """The vendor refused: an order is cancelled and its reservation released."""
    from ..services.subscriptions import provisioning as queue

    t = _run(queue.reject, task, reason=reason, operator=operator, now=_now(now))
    click.echo(f"rejected: {_line(t)}")


@click.group("tenants")
def tenants() -> None:
    """Customers' Microsoft tenants waiting for the operator's confirmation."""


@tenants.command("list")
@click.option("--limit", default=200, type=click.IntRange(1, 100000), show_default=True, help="At most this many.")
def tenants_list_cmd(limit: int) -> None:
    """Tenants claimed or asked for and not confirmed yet, oldest first."""
    from ..services.identity import microsoft_tenant

    claims = _run(microsoft_tenant.unconfirmed, limit=limit)
    for c in claims:
        click.echo(f"org {c.org_id} {c.org_name!r}  {'NEW ' if c.is_new else ''}{c.domain or c.tenant_id}  "
                   f"since {c.linked_at:%Y-%m-%d %H:%M} UTC  agreement {c.agreement}")
    if not claims:
        click.echo("no tenants to confirm")


@tenants.command("confirm")
@click.argument("org_id")
@click.option("--tenant-id", required=True, help="The tenant's id at Microsoft (a GUID), as Partner Center shows it.")
@click.option("--operator", required=True, help="Who checked it (kept in the audit).")
def tenants_confirm_cmd(org_id: str, tenant_id: str, operator: str) -> None:
    """The organisation's tenant is our customer at Microsoft (found or created in Partner Center)."""
    from ..services.identity import microsoft_tenant

    c = _run(microsoft_tenant.confirm, org_id, tenant_id, operator=operator)
    click.echo(f"confirmed: org {c.org_id} {c.org_name!r}  {c.domain}  {c.tenant_id}")
