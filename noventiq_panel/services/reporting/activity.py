"""Account → Activity: the organisation's audit trail — who did what, when, from which address.

Every member reads it (Owners, Administrators and the Financial manager; the organisation's own
events only). Filters: a period (the organisation's local days), a category of actions, a member;
newest first, paged. The export (CSV or XLSX) is the same list, every cell neutralised
(``core.spreadsheet``). The address is known for sign-ins (``user.signed_in``, written by
``auth.sign_in``); other events are the services' and carry none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from noventiq_panel.models import AuditEvent, Organisation, User
from noventiq_panel.services.core import authz, clock, spreadsheet
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import InvalidInput

# A category: the action prefixes it holds.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "sign_in": ("user.signed_in",),
    "subscriptions": ("subscription.",),
    "payments": ("payment.",),
    "users": ("user.invit", "user.role_changed", "user.deactivated", "user.reactivated", "user.email_verified",
              "user.two_factor"),
    "organisation": ("organisation.", "budget.", "microsoft."),
}
MAX_EXPORT_ROWS = 50_000
MAX_DAYS = 400


@dataclass(frozen=True)
class ActivityRow:
    id: int
    at: datetime
    user_id: int | None
    user_name: str  # "" for the panel itself (jobs, payments arriving)
    user_email: str
    action: str
    subscription_id: int | None
    details: dict[str, Any]
    ip: str


def _parse_day(value, field: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidInput("a date is expected", field=field, key="error.billing.bad_date") from None


def _conditions(org: Organisation, start, end, category, user_id) -> list:
    conditions = [AuditEvent.org_id == org.id]
    first, last = _parse_day(start, "start"), _parse_day(end, "end")
    if first and last and (last < first or (last - first).days > MAX_DAYS):
        raise InvalidInput("the period is not valid", field="end", key="error.period_invalid")
    if first:
        conditions.append(AuditEvent.created_at >= clock.local_midnight(first, org.timezone))
    if last:
        conditions.append(AuditEvent.created_at < clock.local_midnight(last + timedelta(days=1), org.timezone))
    if category not in (None, ""):
        prefixes = CATEGORIES.get(category)
        if prefixes is None:
            raise InvalidInput("unknown category", field="category", key="error.activity_category")
        conditions.append(or_(*[col(AuditEvent.action).startswith(p) for p in prefixes]))
    if user_id not in (None, ""):
        conditions.append(AuditEvent.user_id == authz.parse_id(user_id, "member", key="error.not_found"))
    return conditions


def _rows(session: Session, conditions: list, offset: int, limit: int) -> list[ActivityRow]:
    query = (select(AuditEvent, User).outerjoin(User, User.id == AuditEvent.user_id).where(*conditions)
             .order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc()).offset(offset).limit(limit))
    return [ActivityRow(e.id, e.created_at, e.user_id, u.name if u else "", u.email if u else "", e.action,
                        e.subscription_id, dict(e.details or {}), str((e.details or {}).get("ip", "")))
            for e, u in session.exec(query).all()]


def list_activity(session: Session, actor: Actor | None, *, start=None, end=None, category=None, user_id=None,
                  offset: int = 0, limit: int = 50) -> tuple[list[ActivityRow], int]:
    """One page of the organisation's events, newest first, and how many match."""
    access = authz.can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    conditions = _conditions(org, start, end, category, user_id)
    if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or not 0 < limit <= 200:
        raise InvalidInput("paging out of range", field="offset", key="error.billing.paging")
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*conditions)).one()
    rows = _rows(session, conditions, offset, limit)
    session.rollback()
    return rows, int(total)


def members(session: Session, actor: Actor | None) -> list[tuple[int, str]]:
    """(user id, name or e-mail) of everyone who appears in the organisation's trail, for the filter."""
    access = authz.can_read(session, actor)
    rows = session.exec(select(User.id, User.name, User.email).join(AuditEvent, AuditEvent.user_id == User.id)
                        .where(AuditEvent.org_id == access.org_id).distinct()).all()
    session.rollback()
    return sorted(((uid, name or email) for uid, name, email in rows), key=lambda r: r[1].lower())


def export_activity(session: Session, actor: Actor | None, fmt: str, describe, *, start=None, end=None, category=None,
                    user_id=None, now: datetime | None = None) -> tuple[str, bytes]:
    """The filtered trail as CSV or XLSX: (file name, bytes). ``describe(row) -> (action text,
    details text)`` puts it in the reader's language (the page's, from the i18n catalog)."""
    access = authz.can_read(session, actor)
    if fmt not in ("csv", "xlsx"):
        raise InvalidInput("csv or xlsx", field="fmt", key="error.billing.export_format")
    org = session.get(Organisation, access.org_id)
    rows = _rows(session, _conditions(org, start, end, category, user_id), 0, MAX_EXPORT_ROWS)
    session.rollback()
    stamp = clock.local_date(now or clock.utcnow(), org.timezone)
    headers = ["time", "user", "e-mail", "action", "details", "address"]
    table = [[r.at.astimezone(ZoneInfo(org.timezone)).replace(tzinfo=None), r.user_name, r.user_email,
              *describe(r), r.ip] for r in rows]
    name = f"activity-{stamp:%Y%m%d}.{fmt}"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = spreadsheet.writer(buffer, lineterminator="\r\n")
        writer.writerow(headers)
        for row in table:
            writer.writerow([row[0].strftime("%Y-%m-%d %H:%M:%S"), *row[1:]])
        return name, ("\ufeff" + buffer.getvalue()).encode("utf-8")
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(headers)
    for row in table:
        ws.append(spreadsheet.safe_row(row))
    for cell in ws["A"][1:]:
        cell.number_format = "DD.MM.YYYY HH:MM:SS"
    out = io.BytesIO()
    wb.save(out)
    return name, out.getvalue()
