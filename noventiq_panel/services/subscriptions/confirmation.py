"""One intent, one operation: quotes bind a confirmation to what the customer saw.

A preview (``quote_order``, ``quote_quantity_change``, ``quote_plan_change``, ``quote_cancel``) by
someone who may change the subscription issues a :class:`~noventiq_panel.models.Quote`: a
server-made operation id with the action, its parameters and the amount that moves now (charged
> 0, refunded < 0, organisation currency). The confirmation carries that id and amount back, and
the operation:

- refuses (``error.price_changed``, nothing charged) when the quote is not this user's, has expired,
  was made in another organisation (an organisation switch in another tab), names other parameters,
  or when the amount confirmed, the amount quoted and the amount due now are not all the same (the
  rate, the plan's price or the subscription changed in between);
- answers a second confirmation of the same quote with the first one's result, charging nothing
  (a double click, a retried request, two tabs at once: the organisation's lock makes them wait
  for each other, and the second finds the quote confirmed);
- derives every ledger key of its money from the operation id (``op:<id>:...``), never from the
  calendar day: two intents never share a key, one intent never posts twice.

An operation called without a quote (the system, the CLI, a payment that completes a waiting
action) gets a fresh operation id of its own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col

from noventiq_panel.models import Quote
from noventiq_panel.services.core.authz import Access
from noventiq_panel.services.core.errors import Conflict, InvalidInput, NotFound
from noventiq_panel.services.core.money import to_decimal

QUOTE_MINUTES = 30  # how long a preview can be confirmed
_ID = re.compile(r"^[0-9a-f]{32}$")
KEEP_DAYS = 2  # unconfirmed quotes are deleted after this


@dataclass
class Operation:
    """The operation being confirmed: its id (the ledger keys' stem) and, when it was confirmed
    before, the result then (``done``)."""

    id: str
    quote: Quote | None = None
    done: dict[str, Any] | None = None

    def key(self, part: str = "") -> str:
        return f"op:{self.id}" + (f":{part}" if part else "")


def new_id() -> str:
    return secrets.token_hex(16)


def issue(session: Session, access: Access, action: str, params: dict[str, Any], amount: Decimal, currency: str,
          *, now: datetime, subscription_id: int | None = None) -> str | None:
    """Store a quote of ``action`` for the acting user and return its id (None for a role that may
    not change anything: a preview only). Flushes; the caller commits."""
    if not access.can_write or access.user_id is None:
        return None
    quote = Quote(id=new_id(), org_id=access.org_id, user_id=access.user_id, subscription_id=subscription_id,
                  action=action, params=params, amount=amount, currency=currency, created_at=now,
                  expires_at=now + timedelta(minutes=QUOTE_MINUTES))
    session.add(quote)
    session.flush()
    return quote.id


def _changed() -> Conflict:
    return Conflict("the price changed, please review", key="error.price_changed")


def confirmed_before(session: Session, access: Access, action: str, quote_id, *, subscription_id: int | None = None,
                     params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The stored result when ``quote_id`` is this user's quote of ``action`` in this organisation,
    for this subscription (or these parameters), and was confirmed already; checked first, under
    the organisation's lock, so a repeated confirmation answers the same even though the
    operation's own checks would now refuse it (the seats are already there)."""
    if not isinstance(quote_id, str) or not _ID.match(quote_id):
        return None
    quote = session.get(Quote, quote_id, populate_existing=True)
    if quote is None or quote.action != action or quote.confirmed_at is None or quote.org_id != access.org_id:
        return None
    if quote.user_id != access.user_id and access.user_id is not None:
        return None
    if (subscription_id is not None and quote.subscription_id != subscription_id) or \
            (params is not None and quote.params != params):
        return None
    return dict(quote.result)


def begin(session: Session, access: Access, action: str, quote_id, confirmed_amount, *, params: dict[str, Any],
          amount_due: Decimal, now: datetime, check_price: bool = True) -> Operation:
    """The operation of a confirmation: a fresh one without ``quote_id``; with it, the quote's, after
    the checks above. Call it under the organisation's lock (``ledger.lock_organisation``), after
    the operation's own checks and with the amount it would move now.

    ``check_price=False`` is for a payment completing a waiting action (``pending_actions``): the
    once-only rule holds (a confirmed quote answers ``done``), the price binding does not (the
    customer paid for it; every rule of the operation is checked again), and an id without a quote
    is the waiting action's own operation id."""
    if quote_id is None or quote_id == "":
        return Operation(new_id())
    if not isinstance(quote_id, str) or not _ID.match(quote_id):
        raise NotFound("quote not found", key="error.quote_not_found")
    quote = session.get(Quote, quote_id, with_for_update=True, populate_existing=True)
    if quote is None and not check_price:
        return Operation(quote_id)
    if quote is None or quote.action != action or (check_price and quote.user_id != access.user_id):
        raise NotFound("quote not found", key="error.quote_not_found")
    if quote.org_id != access.org_id or quote.params != params:
        raise _changed()
    if quote.confirmed_at is not None:
        return Operation(quote.id, quote, done=dict(quote.result))
    if not check_price:
        return Operation(quote.id, quote)
    if confirmed_amount is None:
        raise InvalidInput("the confirmed amount is missing", field="amount", key="error.price_changed")
    confirmed = to_decimal(confirmed_amount, field="amount")
    if quote.expires_at <= now or not (confirmed == quote.amount == amount_due):
        raise _changed()
    return Operation(quote.id, quote)


def finish(session: Session, operation: Operation, result: dict[str, Any], *, now: datetime) -> None:
    """Mark the quote confirmed with the operation's result (flush only)."""
    if operation.quote is not None:
        operation.quote.confirmed_at = now
        operation.quote.result = result
        session.add(operation.quote)
        session.flush()


def purge(session: Session, now: datetime) -> int:
    """Delete quotes nobody confirmed, ``KEEP_DAYS`` after they expired. Commits."""
    result = session.execute(delete(Quote).where(col(Quote.confirmed_at).is_(None),
                                                 col(Quote.expires_at) < now - timedelta(days=KEEP_DAYS)))
    session.commit()
    return result.rowcount or 0
