"""Core operator commands: schema, demo data, customers, catalog, manual rates, the outbox."""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal

import click
from sqlalchemy.engine import make_url

from ..config import get_settings
from ..i18n import LOCALES
from ..services.core.errors import DomainError



def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _safe_url(url: str) -> str:
    """The database URL without its password (for printing)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # pragma: no cover - an unparsable URL fails later with a clear error
        return url


def _now(value: str | None) -> datetime | None:
    if not value:
        return None
    from ..services.core.clock import aware

    try:
        return aware(datetime.fromisoformat(value))
    except ValueError:
        raise click.BadParameter(f"not an ISO date-time: {value!r}", param_hint="--now") from None


def _session():
    from ..db import session_scope

    return session_scope()


# ------------------------------------------------------------------------------------------------
# init / db
# ------------------------------------------------------------------------------------------------


@click.command()
def init() -> None:
    """Create or migrate the database to the newest schema (safe to run again)."""
    from noventiq_panel.services.core import schema

    url = get_settings().db_url
    before = schema.current(url)
    after = schema.upgrade(url)
    if before == after:
        click.echo(f"Database {_safe_url(url)} is up to date (revision {after}).")
    else:
        click.echo(f"Database {_safe_url(url)} migrated: {before or 'empty'} -> {after}.")


@click.group()
def db() -> None:
    """Schema migrations (Alembic, shipped in noventiq_panel/migrations)."""


@db.command("current")
def db_current() -> None:
    """Print the revision the database is at, and the newest one."""
    from noventiq_panel.services.core import schema

    url = get_settings().db_url
    click.echo(f"database: {schema.current(url) or '(empty)'}\nhead:     {schema.head()}")


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate to REVISION (default: head)."""
    from noventiq_panel.services.core import schema

    click.echo(f"at {schema.upgrade(get_settings().db_url, revision)}")


@db.command("check")
def db_check() -> None:
    """Exit 1 when the database schema differs from the models (a migration is missing)."""
    from noventiq_panel.services.core import schema

    diff = schema.differences(get_settings().db_url)
    for item in diff:
        click.echo(f"  {item}")
    if diff:
        raise click.ClickException(f"{len(diff)} difference(s) between the database and the models")
    click.echo("The database matches the models.")


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the migration does.")
@click.option("--empty", is_flag=True, help="Write an empty script instead of autogenerating.")
def db_revision(message: str, empty: bool) -> None:
    """Write a new migration (developers). Autogenerates against a scratch SQLite database at head;
    review the script it writes."""
    import tempfile
    from pathlib import Path

    from noventiq_panel.services.core import schema

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        schema.upgrade(url)
        click.echo(schema.revision(message, autogenerate=not empty, url=url))


# ------------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------------


ROLE_NAMES = {"owner": "Owner", "admin": "Administrator", "finance": "Financial manager"}


@click.command()
@click.option("--now", default=None, help="ISO date-time (UTC) the history ends at (first run only).")
def demo(now: str | None) -> None:
    """Load the demo data (idempotent): catalog, two organisations, users, history."""
    from noventiq_panel.services.demo import demo as demo_service
    from noventiq_panel.services.core import schema

    settings = get_settings()
    if not schema.is_up_to_date(settings.db_url):
        schema.upgrade(settings.db_url)
    try:
        with _session() as session:
            result = demo_service.load(session, now=_now(now))
    except DomainError as exc:
        _fail(exc)
    if result.created_orgs:
        click.echo(f"Demo data loaded ({', '.join(result.created_orgs)}); history up to "
                   f"{result.anchor:%Y-%m-%d %H:%M} UTC.")
    else:
        click.echo("Demo data already loaded; nothing added.")
    click.echo("")
    click.echo(f"Panel:    {settings.base_url}")
    click.echo(f"Password: {demo_service.DEMO_PASSWORD} (every demo user)")
    for login in demo_service.LOGINS:
        org = demo_service.ORGS[login.org_key]["name"]
        click.echo(f"  {login.email:<24} {ROLE_NAMES.get(login.role, login.role):<18} {org}")


# ------------------------------------------------------------------------------------------------
# create-customer
# ------------------------------------------------------------------------------------------------


@click.command("create-customer")
@click.argument("org_name")
@click.argument("tax_id")
@click.argument("owner_email")
@click.argument("owner_name")
@click.option("--locale", type=click.Choice(list(LOCALES)), default="ru", show_default=True,
              help="Language of the owner's mail and panel.")
@click.option("--postpaid", is_flag=True, help="Postpaid (charged first, invoiced later) instead of prepaid.")
@click.option("--credit-limit", default="0", show_default=True, help="Credit limit of a postpaid organisation.")
@click.option("--currency", default="UZS", show_default=True, help="Billing currency.")
@click.option("--timezone", "tz", default="Asia/Tashkent", show_default=True, help="Time zone (IANA).")
def create_customer(org_name: str, tax_id: str, owner_email: str, owner_name: str, locale: str, postpaid: bool,
                    credit_limit: str, currency: str, tz: str) -> None:
    """A customer organisation and its Owner, who gets an e-mail with a set-password link.

    Without SMTP settings the mail stays in the outbox: `noventiq-panel outbox list`."""
    from ..services.identity import organisations
    from ..services.notify import notifications

    try:
        with _session() as session:
            org, user = organisations.create_customer(
                session, org_name=org_name, tax_id=tax_id, owner_email=owner_email, owner_name=owner_name,
                locale=locale, billing_mode="postpaid" if postpaid else "prepaid", credit_limit=credit_limit,
                currency=currency, timezone=tz)
            mail = next(iter(notifications.outbox(session, user_id=user.id, kind="welcome", limit=1)), None)
            org_id, org_name_saved, email = org.id, org.name, user.email
            mail_id = mail.id if mail else None
            link = notifications.link_to_send(session, mail) if mail else None
    except DomainError as exc:
        _fail(exc)
    click.echo(f"Organisation #{org_id} «{org_name_saved}» created; owner {email}.")
    if mail_id is None:
        return
    if get_settings().smtp_host:
        click.echo(f"The welcome e-mail (#{mail_id}) is queued for {email}.")
    else:
        click.echo(f"No SMTP configured: the welcome e-mail (#{mail_id}) stays in the outbox.")
        if link:
            click.echo(f"Set-password link: {link}")


@click.group("org")
def org() -> None:
    """Support's changes to a customer organisation."""


@org.command("set-requisites")
@click.argument("org_id", type=int)
@click.option("--name", default=None, help="The legal name.")
@click.option("--tax-id", default=None, help="The tax id: 9 digits (INN) or 14 (PINFL); empty to clear.")
@click.option("--vat-reg-code", default=None, help="ЭСФ: VAT registration code, 12 digits; empty to clear.")
@click.option("--bank-mfo", default=None, help="ЭСФ: the bank's МФО, 5 digits.")
@click.option("--bank-account", default=None, help="ЭСФ: settlement account, 20 digits.")
@click.option("--oked", default=None, help="ЭСФ: ОКЭД, 5 digits.")
@click.option("--director", default=None, help="ЭСФ: the director's full name.")
@click.option("--contract-no", default=None, help="ЭСФ: the contract's number (empty: the public offer).")
@click.option("--contract-date", default=None, help="ЭСФ: the contract's date, YYYY-MM-DD.")
def org_set_requisites(org_id: int, name: str | None, tax_id: str | None, **esf: str | None) -> None:
    """Change a customer's legal name or tax id, also after invoices or closing documents were
    issued (the customer cannot then); the tax id stays unique. Also the requisites of the
    electronic invoices (ЭСФ). Audited."""
    from ..services.identity import organisations

    if name is None and tax_id is None and all(v is None for v in esf.values()):
        raise click.UsageError("say what to change: --name, --tax-id or an ЭСФ requisite (see --help)")
    try:
        with _session() as session:
            details = organisations.set_requisites(session, org_id, name=name, tax_id=tax_id, **esf)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"Organisation #{details.id}: «{details.name}», tax id {details.tax_id or '(none)'}.")
    if any(v is not None for v in esf.values()):
        click.echo(f"ЭСФ: VAT code {details.vat_reg_code or '(none)'}, МФО {details.bank_mfo or '(none)'}, "
                   f"account {details.bank_account or '(none)'}, ОКЭД {details.oked or '(none)'}, "
                   f"director {details.director or '(none)'}, contract {details.contract_no or '(offer)'}"
                   f"{' of ' + details.contract_date.isoformat() if details.contract_date else ''}.")


# ------------------------------------------------------------------------------------------------
# import-catalog
# ------------------------------------------------------------------------------------------------


@click.command("import-catalog")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--check", is_flag=True, help="Only validate the file; write nothing.")
def import_catalog(file: str, check: bool) -> None:
    """Import vendors, products and plans from a YAML or JSON FILE (upsert by code).

    The file is validated first; every error names the line, the path and the field, and nothing is
    written. Importing the same file twice changes nothing."""
    from pathlib import Path

    from noventiq_panel.services.catalog import catalog_import

    try:
        with _session() as session:
            if check:
                catalog = catalog_import.validate_catalog(Path(file).read_text(encoding="utf-8"), filename=file,
                                                          session=session)
                plans = sum(len(p.plans) for p in catalog.products)
                click.echo(f"{file}: valid ({len(catalog.vendors)} vendors, {len(catalog.products)} products, "
                           f"{plans} plans).")
                return
            result = catalog_import.import_file(session, file)
    except catalog_import.CatalogError as exc:
        click.echo(f"Error: {file} is not a valid catalog; nothing was imported.", err=True)
        for issue in exc.issues:
            click.echo(f"  {issue.format(file)}", err=True)
        sys.exit(1)
    except DomainError as exc:
        _fail(exc)
    except UnicodeDecodeError as exc:
        _fail(ValueError(f"{file}: not UTF-8 text ({exc.reason})"))
    click.echo(f"Imported {file}: {result.summary()}.")


# ------------------------------------------------------------------------------------------------
# rates
# ------------------------------------------------------------------------------------------------


@click.group()
def rates() -> None:
    """Exchange rates (UZS for one unit of a currency, as the Central Bank of Uzbekistan quotes)."""


@rates.command("set")
@click.argument("currency")
@click.argument("day", metavar="DATE")
@click.argument("rate")
@click.option("--nominal", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="RATE is for this many units (e.g. 10 or 100 for some currencies).")
def rates_set(currency: str, day: str, rate: str, nominal: int) -> None:
    """Enter the rate of CURRENCY on DATE (YYYY-MM-DD) by hand, when the CBU feed is unreachable.

    It replaces any stored rate of that day (source: manual)."""
    from noventiq_panel.services.core import rates as rates_service
    from ..services.core.clock import local_date, utcnow
    from ..services.core.money import BASE_CURRENCY, to_decimal

    ccy = currency.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", ccy):
        raise click.BadParameter("a three-letter currency code, e.g. USD", param_hint="CURRENCY")
    if ccy == BASE_CURRENCY:
        raise click.BadParameter(f"{BASE_CURRENCY} is the base currency: its rate is always 1",
                                 param_hint="CURRENCY")
    try:
        rate_day = date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter(f"not a date (YYYY-MM-DD): {day!r}", param_hint="DATE") from None
    if rate_day > local_date(utcnow(), "Asia/Tashkent") + timedelta(days=1):
        raise click.BadParameter("a rate more than a day ahead is refused", param_hint="DATE")
    try:
        value = to_decimal(rate, field="rate")
    except DomainError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE") from None
    if value <= 0 or value > Decimal("100000000"):
        raise click.BadParameter("a positive rate is required", param_hint="RATE")
    unit = (value / nominal).quantize(Decimal("0.000001"))
    if unit <= 0:
        raise click.BadParameter("the rate is too small", param_hint="RATE")
    with _session() as session:
        row = rates_service.store_rate(session, ccy, rate_day, unit, source="manual")
        session.commit()
        click.echo(f"{ccy} on {rate_day.isoformat()}: {row.rate.normalize():f} UZS (manual).")


@rates.command("list")
@click.option("--days", type=click.IntRange(1, 3660), default=7, show_default=True)
@click.option("--currency", default=None, help="Only this currency.")
def rates_list(days: int, currency: str | None) -> None:
    """The stored rates of the last DAYS days."""
    from ..services.core import rates as rates_service
    from ..services.core.clock import local_date, utcnow

    since = local_date(utcnow(), "Asia/Tashkent") - timedelta(days=days)
    with _session() as session:
        rows = rates_service.stored_since(session, since, currency)
        if not rows:
            click.echo("No rates stored for that period.")
        for r in rows:
            click.echo(f"{r.rate_date.isoformat()}  {r.currency}  {r.rate.normalize():>14f}  {r.source}")


# ------------------------------------------------------------------------------------------------
# outbox
# ------------------------------------------------------------------------------------------------


@click.group()
def outbox() -> None:
    """The mail outbox (queued and sent notifications)."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["queued", "sent", "failed"]), default=None)
@click.option("--to", "to_email", default=None, help="Only mail to this address.")
@click.option("--kind", default=None, help="Only this kind (welcome, password_reset, ...).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def outbox_list(status: str | None, to_email: str | None, kind: str | None, limit: int) -> None:
    """Newest mail first, each with its own set-password, reset or verification link while it waits
    to be sent (never a link a name or other typed text carries)."""
    from ..services.notify import notifications

    with _session() as session:
        rows = notifications.outbox(session, status=status, to_email=to_email, kind=kind, limit=limit)
        if not rows:
            click.echo("The outbox is empty." if not (status or to_email or kind) else "No mail matches.")
        for n in rows:
            click.echo(f"#{n.id}  {n.created_at:%Y-%m-%d %H:%M} UTC  {n.status:<6}  {n.kind:<20}  {n.to_email}")
            click.echo(f"      {n.subject}")
            link = notifications.link_to_send(session, n)
            if link:
                click.echo(f"      {link}")


@outbox.command("show")
@click.argument("notification_id", type=int)
def outbox_show(notification_id: int) -> None:
    """Print one mail (headers and text body)."""
    from ..services.notify import notifications

    with _session() as session:
        n = notifications.outbox_mail(session, notification_id)
        if n is None:
            raise click.ClickException(f"no mail #{notification_id}")
        click.echo(f"To:      {n.to_email}\nSubject: {n.subject}\nKind:    {n.kind}\nStatus:  {n.status}"
                   f" (attempts {n.attempts}{', ' + n.last_error if n.last_error else ''})\n"
                   f"Created: {n.created_at:%Y-%m-%d %H:%M} UTC\n")
        click.echo(notifications.text_to_send(session, n))


COMMANDS = [init, db, demo, create_customer, org, import_catalog, rates, outbox]
