"""Seat spans: the billable history of every subscription, written wherever a subscription changes.

A ``SeatSpan`` is an interval ``[start, end)`` in which a subscription kept one billable state: the
same plan, seat count, status and term (``term_start``/``term_end``; the term itself is not stored
in the span, a new term only opens a new span). The open span (``end`` NULL) is the current state.
``noventiq-panel ledger check`` (``services/reporting/ledger_check``) values the seat-days of the
active spans and compares them with what the ledger charged.

:func:`split` is the one place spans are written: for each subscription whose billable state
changed at ``at``, it closes the open span there and opens one with the new state. It is called
so that no change can forget it:

- by a ``Session`` ``after_flush`` listener (registered when this module is imported: ``context``
  and ``chunks`` import it) for every new subscription and every dirty one whose billable columns
  changed (attribute history). ``after_flush`` rather than ``before_flush``: a new subscription has
  its id only once the flush has inserted it; the history is still that of the flush then;
- by :meth:`chunks.Chunk.write` for the rows the renewal jobs change with Core UPDATEs (they compare
  each row with what they loaded; those statements pass no ORM object to a listener).

The moment of a change: the jobs pass their ``now``. The ORM operations do not hand theirs to the
session, so the listener takes ``session.info[NOW]`` when the caller put one there (tests and tools
that travel in time: :func:`stamp`), else the clock at the transaction's first change — what the
operations use when called with ``now=None``, as the pages call them. The flushes of one
transaction share that moment, and a span that would last no time at all (an order is flushed
``pending`` and then activated in one transaction) is replaced rather than kept. Subscriptions that changed before migration 0005 have no history: the
migration opened one span per running subscription when it ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, event, inspect, update
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from noventiq_panel.db import insert_rows
from noventiq_panel.models import SeatSpan, Subscription
from noventiq_panel.services.core import clock

# The columns whose change starts a new span.
BILLABLE = ("plan_id", "quantity", "status", "term_start", "term_end")
# ``session.info`` key: the moment a caller that travels in time is working at (see :func:`stamp`).
NOW = "seat_spans.now"
_TX_MOMENT = "seat_spans.transaction_moment"
_IN = 500  # subscription ids per statement


@dataclass(frozen=True)
class State:
    """A subscription's billable state from one moment on (what a span stores)."""

    subscription_id: int
    plan_id: int
    quantity: int
    status: str


def stamp(session: Session, now: datetime | None) -> None:
    """Spans the ORM writes in ``session`` from now on start at ``now`` (None: the clock again)."""
    if now is None:
        session.info.pop(NOW, None)
    else:
        session.info[NOW] = clock.aware(now)


def split(session: Session, states: Iterable[State], at: datetime) -> int:
    """Close the open span of each subscription of ``states`` at ``at`` and open one with its new
    state from ``at`` on; returns how many were opened. Set-based (one UPDATE, one DELETE and one
    bulk insert per 500 subscriptions), in the session's transaction, nothing committed. A span
    that would end where it starts (opened at ``at`` by an earlier flush) is removed instead."""
    latest: dict[int, State] = {s.subscription_id: s for s in states}
    if not latest:
        return 0
    table = SeatSpan.__table__
    connection = session.connection()
    ids = sorted(latest)
    for i in range(0, len(ids), _IN):
        part = ids[i:i + _IN]
        open_ = and_(table.c.subscription_id.in_(part), table.c.end.is_(None))
        connection.execute(delete(table).where(open_, table.c.start == bindparam("at")), {"at": at})
        connection.execute(update(table).where(open_).values(end=bindparam("at")), {"at": at})
    return insert_rows(session, table, (
        dict(subscription_id=s.subscription_id, plan_id=s.plan_id, quantity=s.quantity, status=str(s.status),
             start=at, end=None) for s in latest.values()))


def changed(values: Sequence[str]) -> bool:
    """Whether a change of the columns ``values`` starts a new span."""
    return any(name in BILLABLE for name in values)


def _moved(sub: Subscription) -> bool:
    """Whether the flush changes one of the subscription's billable columns (an attribute set to
    the value it had is no change; a value not loaded before counts as changed)."""
    attrs = inspect(sub).attrs
    for name in BILLABLE:
        history = attrs[name].history
        if not history.added:
            continue
        if not history.deleted or history.added[0] != history.deleted[0]:
            return True
    return False


def _moment(session: OrmSession) -> datetime:
    """The stamped moment, else the clock at the transaction's first change (one transaction is one
    operation: its flushes share a moment, so an order flushed pending and then active leaves one
    span)."""
    return session.info.get(NOW) or session.info.setdefault(_TX_MOMENT, clock.utcnow())


@event.listens_for(OrmSession, "after_flush")
def _after_flush(session: OrmSession, _context) -> None:
    states = [State(sub.id, sub.plan_id, sub.quantity, str(sub.status))
              for sub in (*session.new, *session.dirty)
              if isinstance(sub, Subscription) and sub.id is not None and (sub in session.new or _moved(sub))]
    if states:
        split(session, states, _moment(session))


@event.listens_for(OrmSession, "after_transaction_end")
def _after_transaction_end(session: OrmSession, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction (not a savepoint) ended
        session.info.pop(_TX_MOMENT, None)
