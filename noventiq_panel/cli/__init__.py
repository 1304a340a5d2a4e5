"""The command-line tool ``noventiq-panel`` (installed with the package).

    noventiq-panel init                      migrate the database to the newest schema
    noventiq-panel demo                      load the demo data (idempotent), print the logins
    noventiq-panel create-customer ...       a customer organisation and its owner
    noventiq-panel import-catalog FILE       vendors, products and plans from YAML or JSON
    noventiq-panel rates set USD 2026-11-24 12171.03
    noventiq-panel outbox list               mail in the outbox (read set-password links there)
    noventiq-panel provisioning list|show|complete|reject   the queue of a vendor without an API
    noventiq-panel tenants list|confirm                     Microsoft tenants to confirm
    noventiq-panel db current|upgrade|check|revision

The database is the panel's (``REFLEX_DB_URL``, else the embedded SQLite file ``data/panel.db``).
Each area of the panel keeps its commands in its own module here.
"""

from __future__ import annotations

import logging

import click

from . import billing, core, jobs, ledger, provisioning, usage


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="noventiq-panel", prog_name="noventiq-panel")
@click.option("-v", "--verbose", is_flag=True, help="Log what the services do.")
def main(verbose: bool) -> None:
    """Operator commands of the Noventiq customer panel."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


for _command in core.COMMANDS:
    main.add_command(_command)
main.add_command(billing.payments)
main.add_command(billing.documents)
main.add_command(usage.usage)
main.add_command(ledger.ledger)
main.add_command(provisioning.provisioning)
main.add_command(provisioning.tenants)
main.add_command(jobs.jobs)  # importing jobs also adds `rates fetch` to core's `rates` group
from . import gateways  # noqa: E402,F401 - adds `payments reconcile` to billing's `payments` group
