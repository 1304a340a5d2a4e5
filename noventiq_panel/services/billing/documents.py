"""Closing documents: after a month closes, one act of completed work with its счёт-фактура per
organisation that was charged in that month.

- The month is the organisation's local month, half-open ``[first midnight, next first midnight)``;
  its charges are the ledger entries of kinds charge, usage and refund in it. The act's total is
  exactly minus their sum (to the tiyin); prices include VAT and the VAT part is shown per line.
- Numbers form an unbroken sequence per year of the period (``Sequence`` row ``act-<year>``). For
  each organisation, one transaction: lock the counter (``FOR UPDATE`` on PostgreSQL, the write
  lock on SQLite), check that no document exists for the organisation and month, take the next
  number, store the document with its PDF, queue the e-mails, commit. A second generator waits for
  the lock and then finds the document: it skips without taking a number. The unique constraints
  (org, period, kind) and (year, number, kind) back this up; a violation is treated as "already
  done" and its transaction is rolled back, so no number is lost.
- A month that has not closed yet is refused (or, for an organisation whose time zone has not
  reached the next month, skipped until a later run).
- **No act for a credit.** A month whose consumption nets to zero or less (the vendor's credits,
  refunds of cancelled licences outweighing the charges) has no act: an act of completed work with
  a negative total is not a document anybody can sign or file. Its net is carried into the next
  act as one line, "recalculation of earlier periods" (:func:`carried_months`); that act records
  the first month it settles (``carried_from``), so every tiyin of consumption is in exactly one
  act or still waiting for one. While the carried credit outweighs the new charges, the months
  keep waiting. Which months are carried is decided from the ledger alone, the same way on every
  run: after the organisation's last act, the months whose running net (restarted after any
  month that owed an act of its own) stays at or below zero.
- **Closed months** (:func:`closed_through`, the one rule; rating asks it too). Generating a month
  records that it ran (``ClosingRun``, before any organisation is looked at). From then on the
  month is closed for every organisation whose local month had ended: its act, or its credit
  carried, is decided, and its consumption never changes again — rating dates late usage of a
  closed month when it rates it, so it goes into the next act as that act's own lines. A month up
  to an organisation's latest act is closed as well. Without this a month that netted to a credit
  had no act, so rating kept dating its late usage into it, and usage that made it owe money
  restarted the walk above: the next act skipped the month as one "with an act of its own" that it
  never had, and its consumption was in no act. A month that owes an act of its own in the walk is
  therefore one whose documents were never generated; it gets its act when they are.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import (
    ClosingDocument,
    ClosingRun,
    LedgerEntry,
    Organisation,
    Plan,
    Product,
    Role,
    Subscription,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import esf_record
from noventiq_panel.services.billing.invoice_document import parties, vat_part
from noventiq_panel.services.core import clock, numbering
from noventiq_panel.services.core.authz import Actor, can_read, load_owned
from noventiq_panel.services.core.clock import local_midnight, month_bounds, month_start, next_month
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.notify import notifications

log = logging.getLogger(__name__)

KIND = "act"
RECIPIENT_ROLES = (Role.OWNER.value, Role.FINANCE.value)
EARLIEST_ZONE = "Etc/GMT-14"  # the first time zone to enter a new month


@dataclass(frozen=True)
class DocumentRow:
    id: int
    period: date
    year: int
    number: int
    act_number: str
    invoice_number: str
    total: Decimal
    vat: Decimal
    currency: str
    created_at: datetime
    filename: str


def act_number(year: int, number: int) -> str:
    return f"АКТ-{year}-{number:06d}"


def invoice_number(year: int, number: int) -> str:
    return f"СФ-{year}-{number:06d}"


def filename(doc: ClosingDocument) -> str:
    return f"act-{doc.year}-{doc.number:06d}-{doc.period:%Y-%m}.pdf"


def counter_name(year: int) -> str:
    return f"act-{year}"


def _to_row(doc: ClosingDocument) -> DocumentRow:
    return DocumentRow(id=doc.id, period=doc.period, year=doc.year, number=doc.number,
                       act_number=act_number(doc.year, doc.number), invoice_number=invoice_number(doc.year, doc.number),
                       total=doc.total, vat=doc.vat, currency=doc.currency, created_at=doc.created_at,
                       filename=filename(doc))


def parse_month(value) -> date:
    """``2026-10`` / ``2026-10-01`` / a date → the first day of that month."""
    if isinstance(value, datetime):
        return month_start(value.date())
    if isinstance(value, date):
        return month_start(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 7:
                return date(int(text[:4]), int(text[5:7]), 1) if text[4] == "-" else _bad_month(value)
            return month_start(date.fromisoformat(text))
        except (ValueError, IndexError):
            pass
    return _bad_month(value)


def _bad_month(value) -> date:
    raise InvalidInput(f"not a month (YYYY-MM): {value!r}", field="month", key="error.billing.bad_month")


# ---------------------------------------------------------------- the lines of a month

def _labels(session: Session, subscription_ids: set[int]) -> dict[int, str]:
    if not subscription_ids:
        return {}
    rows = session.exec(
        select(Subscription.id, Subscription.name, Product.name, Plan.name)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .where(col(Subscription.id).in_(subscription_ids))
    ).all()
    labels = {}
    for sub_id, sub_name, product_name, plan_name in rows:
        labels[sub_id] = sub_name or f"{product_name} ({plan_name})"
    return labels


def month_lines(session: Session, org: Organisation, month: date) -> tuple[list, Decimal, Decimal]:
    """(lines, total, VAT) of the organisation's charges in ``month`` (its local month).

    Licence charges and refunds: one line each (quantity and unit price as charged). Pay-as-you-go
    usage: one line per subscription. Lines are grouped by subscription.
    """
    lines, _subscriptions, total, vat = month_lines_with_subscriptions(session, org, month)
    return lines, total, vat


def month_lines_with_subscriptions(session: Session, org: Organisation, month: date, *,
                                   rate: Decimal | None = None) -> tuple[list, list[int | None], Decimal, Decimal]:
    """:func:`month_lines` with, for each line, the subscription it bills (None: none), so the
    electronic invoice (``esf``) finds each line's product and its ИКПУ code. ``rate``: the VAT rate
    (default ``PANEL_VAT_RATE``)."""
    from noventiq_panel.services.billing import pdf

    rate = get_settings().vat_rate if rate is None else rate
    start, end = month_bounds(month, org.timezone)
    entries = session.exec(
        select(LedgerEntry).where(
            LedgerEntry.org_id == org.id, col(LedgerEntry.kind).in_(ledger.CONSUMPTION_KINDS),
            LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)
        .order_by(col(LedgerEntry.occurred_at), col(LedgerEntry.id))
    ).all()
    labels = _labels(session, {e.subscription_id for e in entries if e.subscription_id})
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for e in entries:
        if e.kind == "usage":
            key = (e.subscription_id or 0, "usage", 0)
        else:
            key = (e.subscription_id or 0, "entry", e.id)
        groups.setdefault(key, []).append(e)
    ordered = sorted(groups.items(), key=lambda kv: (labels.get(kv[0][0], ""), kv[0][0], kv[0][1] == "usage",
                                                     kv[1][0].occurred_at))
    lines = []
    subscriptions: list[int | None] = []
    for (sub_id, what, _), group in ordered:
        label = labels.get(sub_id, "")
        amount = -sum((e.amount for e in group), Decimal("0.00"))
        if what == "usage":
            description = f"{label}: потребление облачных услуг" if label else "Потребление облачных услуг"
            quantity, unit = Decimal(1), "усл."
            unit_price = amount
        else:
            e = group[0]
            text = e.description or ("Возврат" if e.kind == "refund" else "Лицензии")
            description = f"{label}: {text}" if label and label not in text else text
            if e.quantity:
                quantity = abs(Decimal(e.quantity)).normalize()
                unit = "лиц."
            else:
                quantity, unit = Decimal(1), "усл."
            unit_price = (amount / quantity).quantize(Decimal("0.01")) if quantity else amount
            if unit_price < 0:
                unit_price = -unit_price
        lines.append(pdf.Line(description=description[:300], quantity=quantity, unit=unit, unit_price=unit_price,
                              amount=amount, vat=vat_part(amount, rate)))
        subscriptions.append(sub_id or None)
    total = sum((line.amount for line in lines), Decimal("0.00"))
    vat = sum((line.vat for line in lines), Decimal("0.00"))
    return lines, subscriptions, total, vat


CARRY_TEXT = "Перерасчёт за {first:%m.%Y}–{last:%m.%Y}: возвраты и кредиты превысили начисления"


def _month_net(session: Session, org: Organisation, month: date) -> Decimal:
    """What the organisation owes for the consumption of ``month`` (its local month; < 0: a credit)."""
    start, end = month_bounds(month, org.timezone)
    total = session.exec(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.org_id == org.id, col(LedgerEntry.kind).in_(ledger.CONSUMPTION_KINDS),
            LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)).one()
    return -Decimal(total)


def carried_months(session: Session, org: Organisation, month: date) -> tuple[date | None, Decimal]:
    """(the first earlier month whose consumption the act of ``month`` also settles, the amount
    carried (<= 0)); (None, 0) when nothing is carried.

    The months after the organisation's last act before ``month`` (from its first consumption
    when it has none) are walked in order with a running net: a month that brings it above zero
    owed an act of its own (it is not carried; the walk starts again after it); the months from the
    first one with consumption after that are carried (their running net is <= 0 throughout).
    A closed month (:func:`closed_through`) never changes after its act or credit was decided, so
    a month that owes an act of its own here is one whose documents were not generated yet.
    """
    last = session.exec(select(func.max(ClosingDocument.period)).where(
        ClosingDocument.org_id == org.id, ClosingDocument.kind == KIND, ClosingDocument.period < month)).one()
    if last is not None:
        m = next_month(last)
    else:
        first_at = session.exec(select(func.min(LedgerEntry.occurred_at)).where(
            LedgerEntry.org_id == org.id, col(LedgerEntry.kind).in_(ledger.CONSUMPTION_KINDS))).one()
        if first_at is None:
            return None, Decimal("0.00")
        m = month_start(clock.local_date(first_at, org.timezone))
    start, running = None, Decimal("0.00")
    while m < month:
        net = _month_net(session, org, m)
        running += net
        if running > 0:  # this month owed an act of its own: nothing before it is carried
            start, running = None, Decimal("0.00")
        elif start is None and net != 0:
            start = m
        m = next_month(m)
    return (start, running) if start is not None else (None, Decimal("0.00"))


def closed_through(session: Session, zones: dict[int, str]) -> dict[int, date]:
    """Organisation id → its last closed month (``zones``: organisation id → its time zone); an
    organisation with none is left out. Every month up to it is closed: its act, or its credit
    carried into a later act, is decided and its consumption must not change (rating dates late
    usage of it when it is rated); the months after it are open. The later of the organisation's
    latest act and the latest month whose documents were generated once the organisation's local
    month had ended (``ClosingRun``)."""
    if not zones:
        return {}
    closed = {org_id: period for org_id, period in session.exec(
        select(ClosingDocument.org_id, func.max(ClosingDocument.period))
        .where(col(ClosingDocument.org_id).in_(sorted(zones)), ClosingDocument.kind == KIND)
        .group_by(ClosingDocument.org_id)).all()}
    runs = session.exec(select(ClosingRun.period, ClosingRun.run_at).order_by(col(ClosingRun.period).desc())).all()
    for org_id, zone in zones.items():
        for period, run_at in runs:  # newest first: the first one that had reached the zone
            if closed.get(org_id) is not None and closed[org_id] >= period:
                break
            if run_at >= month_bounds(period, zone)[1]:
                closed[org_id] = period
                break
    return closed


def _record_run(session: Session, month: date, now: datetime) -> None:
    """Record that the documents of ``month`` are generated as of ``now`` (the latest such moment
    is kept) and commit. On PostgreSQL the write lock on ``closingdocument`` waits for a rating
    batch in flight (it holds that table in SHARE mode) and makes the next one wait for this
    commit, so no batch that has not seen the run dates usage into the month after it."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("LOCK TABLE closingdocument IN ROW EXCLUSIVE MODE")
        insert = pg_insert
    else:
        insert = sqlite_insert
    stmt = insert(ClosingRun).values(period=month, run_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["period"], set_={"run_at": stmt.excluded.run_at},
                                               where=ClosingRun.run_at < stmt.excluded.run_at))
    session.commit()


def act_lines(session: Session, org: Organisation, month: date, *, rate: Decimal | None = None
              ) -> tuple[list, list[int | None], Decimal, Decimal, date | None]:
    """The lines the act of ``month`` has if issued now: :func:`month_lines_with_subscriptions`
    and, when earlier credits are carried into it (:func:`carried_months`), the recalculation line
    (no subscription); with the totals and the first month carried (None: none)."""
    from noventiq_panel.services.billing import pdf

    rate = get_settings().vat_rate if rate is None else rate
    lines, subscriptions, total, vat = month_lines_with_subscriptions(session, org, month, rate=rate)
    carried_from, carried = carried_months(session, org, month)
    if carried != 0:
        lines.append(pdf.Line(description=CARRY_TEXT.format(first=carried_from, last=month - timedelta(days=1)),
                              quantity=Decimal(1), unit="усл.", unit_price=carried, amount=carried,
                              vat=vat_part(carried, rate)))
        subscriptions.append(None)
        total, vat = total + carried, vat + lines[-1].vat
    return lines, subscriptions, total, vat, carried_from


def render_pdf(session: Session, org: Organisation, month: date, year: int, number: int,
               lines: list, total: Decimal, vat: Decimal, *, rate: Decimal | None = None) -> bytes:
    from noventiq_panel.services.billing import pdf

    settings = get_settings()
    rate = settings.vat_rate if rate is None else rate
    last_day = next_month(month) - timedelta(days=1)
    seller, buyer = parties(org)
    data = pdf.ClosingData(
        act_number=act_number(year, number),
        invoice_number=invoice_number(year, number),
        doc_date=last_day,
        period_start=month,
        period_end=last_day,
        seller=seller,
        buyer=buyer,
        currency=org.billing_currency,
        vat_rate=rate,
        lines=lines,
        total=total,
        vat=vat,
    )
    return pdf.render_closing(data)


# ---------------------------------------------------------------- generation

def _orgs_charged(session: Session, month: date) -> list[int]:
    # The widest window any time zone can give the month; each organisation is then checked in its own.
    start = local_midnight(month, EARLIEST_ZONE)
    end = local_midnight(next_month(month), "Etc/GMT+12")
    return list(session.exec(
        select(LedgerEntry.org_id).where(col(LedgerEntry.kind).in_(ledger.CONSUMPTION_KINDS), LedgerEntry.occurred_at >= start,
                                         LedgerEntry.occurred_at < end)
        .distinct().order_by(LedgerEntry.org_id)
    ).all())


def orgs_charged(session: Session, month: date) -> list[int]:
    """The ids of the organisations with charges in ``month`` (in any time zone's reading of it)."""
    return _orgs_charged(session, month)


def generate_month(session: Session, month, now: datetime | None = None) -> list[ClosingDocument]:
    """Generate the closing documents of ``month`` (a date in it, or ``"YYYY-MM"``) for every
    organisation charged in it, and record that it ran (the month is closed from then on for the
    organisations whose local month had ended, :func:`closed_through`). Returns the documents
    created by this call; already generated ones are skipped without consuming a number. Refuses a
    month that has not closed yet."""
    now = now or utcnow()
    month = parse_month(month)
    if now < local_midnight(next_month(month), EARLIEST_ZONE):
        raise InvalidInput(f"{month:%Y-%m} has not closed yet", field="month", key="error.billing.month_not_closed",
                           month=f"{month:%Y-%m}")
    _record_run(session, month, now)  # closed from here on (closed_through): nothing is dated into it any more
    org_ids = _orgs_charged(session, month)
    session.rollback()
    created = []
    for org_id in org_ids:
        doc = _generate_for_org(session, org_id, month, now)
        if doc is not None:
            created.append(doc)
    return created


def _generate_for_org(session: Session, org_id: int, month: date, now: datetime) -> ClosingDocument | None:
    try:
        org = session.get(Organisation, org_id)
        if org is None or now < month_bounds(month, org.timezone)[1]:
            session.rollback()
            return None  # not closed in this organisation's time zone yet: a later run makes it
        numbering.lock(session, counter_name(month.year))
        exists = session.exec(
            select(ClosingDocument.id).where(ClosingDocument.org_id == org_id, ClosingDocument.period == month,
                                             ClosingDocument.kind == KIND)
        ).first()
        if exists is not None:
            session.rollback()
            return None
        rate = get_settings().vat_rate
        lines, subscriptions, total, vat, carried_from = act_lines(session, org, month, rate=rate)
        if not lines or total <= 0:  # nothing, or a credit: carried into a later act
            session.rollback()
            return None
        number = numbering.next_value(session, counter_name(month.year))
        pdf_bytes = render_pdf(session, org, month, month.year, number, lines, total, vat, rate=rate)
        # what its ЭСФ needs, as the act shows it now (the parties, the lines and their product codes)
        record = esf_record.take(session, org, lines, subscriptions, vat_rate=rate, now=now)
        doc = ClosingDocument(org_id=org.id, kind=KIND, period=month, year=month.year, number=number, total=total,
                              vat=vat, currency=org.billing_currency, pdf=pdf_bytes, created_at=now,
                              esf_record=record, carried_from=carried_from)
        session.add(doc)
        session.flush()
        notifications.notify_org_roles(
            session, org.id, RECIPIENT_ROLES, "closing_documents",
            {"month": month, "document_number": act_number(doc.year, doc.number), "amount": total,
             "currency": doc.currency},
            attachments=[(filename(doc), "application/pdf", pdf_bytes)],
            dedupe_key=f"closing_documents:{doc.id}", now=now)
        session.commit()
        return doc
    except IntegrityError:
        session.rollback()
        log.info("closing document of org %s for %s already generated concurrently", org_id, month)
        return None
    except Exception:
        session.rollback()
        raise


# ---------------------------------------------------------------- reading

def list_documents(session: Session, actor: Actor, *, year: int | None = None, start=None, end=None,
                   offset: int = 0, limit: int = 100) -> tuple[list[DocumentRow], int]:
    """The organisation's closing documents, newest period first (optionally of one year or a
    range of periods), and how many there are."""
    access = can_read(session, actor)
    conditions = [ClosingDocument.org_id == access.org_id]
    if year not in (None, ""):
        try:
            year = int(year)
        except (TypeError, ValueError):
            raise InvalidInput("year must be a number", field="year", key="error.billing.not_integer") from None
        conditions.append(ClosingDocument.year == year)
    if start not in (None, ""):
        conditions.append(ClosingDocument.period >= parse_month(start))
    if end not in (None, ""):
        conditions.append(ClosingDocument.period <= parse_month(end))
    try:
        offset, limit = max(0, int(offset)), max(1, min(int(limit), 500))
    except (TypeError, ValueError):
        raise InvalidInput("offset and limit must be whole numbers", key="error.billing.paging") from None
    total = session.exec(select(func.count()).select_from(ClosingDocument).where(*conditions)).one()
    rows = session.exec(
        select(ClosingDocument).where(*conditions).options(defer(ClosingDocument.pdf))
        .order_by(col(ClosingDocument.period).desc(), col(ClosingDocument.id).desc()).offset(offset).limit(limit)
    ).all()
    return [_to_row(d) for d in rows], int(total)


def document_pdf(session: Session, actor: Actor, doc_id) -> tuple[str, bytes]:
    """(file name, PDF) of one of the organisation's documents; NotFound for a foreign or missing id."""
    access = can_read(session, actor)
    doc = load_owned(session, access, ClosingDocument, doc_id, "document", key="error.billing.document_not_found")
    return filename(doc), bytes(doc.pdf)


def list_years(session: Session, actor: Actor) -> list[int]:
    """The years the organisation has closing documents for, newest first."""
    access = can_read(session, actor)
    rows = session.exec(
        select(ClosingDocument.year).where(ClosingDocument.org_id == access.org_id).distinct()
        .order_by(col(ClosingDocument.year).desc())
    ).all()
    return [int(y) for y in rows]
