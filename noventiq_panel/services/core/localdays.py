"""Organisation-local days in SQL: the day buckets of the analytics and of the usage roll-up.

PostgreSQL converts with ``AT TIME ZONE``; SQLite, which knows no time zones, adds the zone's UTC
offset, split into stretches of constant offset (a DST change day gets its own stretch), so the
buckets are right in any zone. A day read back is ISO text on SQLite and a date on PostgreSQL
(``as_date`` reads either).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, literal_column
from sqlmodel import Session

from noventiq_panel.services.core import clock
from noventiq_panel.services.core.errors import InvalidInput

_TZ_NAME = re.compile(r"[A-Za-z0-9_/+\-]{1,64}")


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {tz!r}", field="timezone") from None


def _offset_seconds(instant: datetime, tz: str) -> int:
    return int(instant.astimezone(_zone(tz)).utcoffset().total_seconds())


@lru_cache(maxsize=512)
def _segments(tz: str, start: date, end: date) -> tuple[tuple[datetime, datetime, int | None, date | None], ...]:
    """Stretches of ``[start, end)`` (local days) over which the UTC offset is constant.

    Each is ``(utc_from, utc_to, offset_seconds, None)``; a day on which the offset changes is its
    own stretch ``(utc_from, utc_to, None, that_day)``.
    """
    if start >= end:
        return ()
    # Fast path: the same offset at every month start and at the end (zones without DST).
    probes = [start]
    d = clock.next_month(start)
    while d < end:
        probes.append(d)
        d = clock.next_month(d)
    probes.append(end)
    offsets = {_offset_seconds(clock.local_midnight(p, tz), tz) for p in probes}
    if len(offsets) == 1:
        return ((clock.local_midnight(start, tz), clock.local_midnight(end, tz), offsets.pop(), None),)
    out: list[tuple[datetime, datetime, int | None, date | None]] = []
    run_start = start
    day = start
    mid = clock.local_midnight(day, tz)
    off = _offset_seconds(mid, tz)
    while day < end:
        nxt = day + timedelta(days=1)
        nmid = clock.local_midnight(nxt, tz)
        noff = _offset_seconds(nmid, tz)
        if noff != off:
            if run_start < day:
                out.append((clock.local_midnight(run_start, tz), mid, off, None))
            out.append((mid, nmid, None, day))
            run_start = nxt
        day, mid, off = nxt, nmid, noff
    if run_start < end:
        out.append((clock.local_midnight(run_start, tz), clock.local_midnight(end, tz), off, None))
    return tuple(out)


def day_parts(session: Session, column, tz: str, start: date, end: date):
    """[(utc_from, utc_to, SQL expression of the local date of ``column``)] covering [start, end)."""
    # Inline literals (validated), not bind parameters: PostgreSQL must see the GROUP BY expression
    # as the very same expression as the selected one.
    _zone(tz)
    if not _TZ_NAME.fullmatch(tz):
        raise InvalidInput(f"unsupported time zone name {tz!r}", field="timezone")
    if session.get_bind().dialect.name == "postgresql":
        return [(clock.local_midnight(start, tz), clock.local_midnight(end, tz),
                 func.date(func.timezone(literal_column(f"'{tz}'"), column)))]
    parts = []
    for a, b, off, day in _segments(tz, start, end):
        if day is not None:
            expr = literal_column(f"'{day.isoformat()}'")
        else:
            expr = func.date(column, literal_column(f"'{int(off):+d} seconds'"))
        parts.append((a, b, expr))
    return parts


def as_date(value) -> date:
    """A day as the database returns it (a date, or ISO text on SQLite) as a date."""
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])
