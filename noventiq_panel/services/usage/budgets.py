"""Budgets on pay-as-you-go subscriptions (modelled on Azure's cost budgets). A budget only warns.

- ``amount``: a monthly amount in the organisation's billing currency, > 0, money rules
  (:func:`money.parse_amount`).
- ``thresholds``: one to five ``{"percent": "80", "type": "actual" | "forecast"}``; a percent is a
  number above 0 and at most 1000 with at most two decimals, stored normalised as text ("80",
  "80.5"); the pairs are unique. Default: 50, 80, 100 % actual and 100 % forecast.
- Recipients: users of the organisation (active members, checked) and extra e-mail addresses
  (checked, lower-cased, at most 20); at least one recipient in all.

Anyone in the organisation may read a budget; only an Owner or Administrator may set or remove it.
Alerts themselves (once per threshold and budget month) are sent by the budget job.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, select

from noventiq_panel.models import (
    Budget,
    BudgetAlert,
    Membership,
    Organisation,
    Subscription,
    SubscriptionStatus,
    User,
)
from noventiq_panel.services.core import audit, authz, clock
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core.authz import Access, Actor
from noventiq_panel.services.core.errors import Conflict, InvalidInput
from noventiq_panel.services.core.money import parse_amount, to_decimal

MAX_THRESHOLDS = 5
MAX_EXTRA_EMAILS = 20
THRESHOLD_TYPES = ("actual", "forecast")
DEFAULT_THRESHOLDS: tuple[dict, ...] = (
    {"percent": "50", "type": "actual"},
    {"percent": "80", "type": "actual"},
    {"percent": "100", "type": "actual"},
    {"percent": "100", "type": "forecast"},
)
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def default_thresholds() -> list[dict]:
    return [dict(t) for t in DEFAULT_THRESHOLDS]


def parse_percent(value, *, field: str = "percent") -> str:
    """A threshold percent: > 0, <= 1000, at most two decimals; returned normalised ("80", "80.5")."""
    number = to_decimal(value, field=field)
    if number != number.quantize(Decimal("0.01")):
        raise InvalidInput(f"{field}: at most 2 decimal places", field=field, key="error.budget_percent_decimals")
    if number <= 0 or number > 1000:
        raise InvalidInput(f"{field}: above 0 and at most 1000", field=field, key="error.budget_percent_range")
    text = format(number.normalize(), "f")
    return text


def parse_thresholds(value) -> list[dict]:
    """Validate a list of ``{"percent": ..., "type": ...}`` (see the module docstring)."""
    if value is None:
        return default_thresholds()
    if not isinstance(value, (list, tuple)):
        raise InvalidInput("thresholds must be a list", field="thresholds", key="error.budget_thresholds_invalid")
    if not value:
        raise InvalidInput("at least one threshold", field="thresholds", key="error.budget_thresholds_empty")
    if len(value) > MAX_THRESHOLDS:
        raise InvalidInput(f"at most {MAX_THRESHOLDS} thresholds", field="thresholds",
                           key="error.budget_thresholds_too_many", maximum=MAX_THRESHOLDS)
    result: list[dict] = []
    seen: set[tuple[Decimal, str]] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput("a threshold is {percent, type}", field=f"thresholds.{i}",
                               key="error.budget_thresholds_invalid")
        percent = parse_percent(item.get("percent"), field=f"thresholds.{i}.percent")
        kind = item.get("type", "actual")
        if kind not in THRESHOLD_TYPES:
            raise InvalidInput("type: actual or forecast", field=f"thresholds.{i}.type",
                               key="error.budget_threshold_type")
        marker = (Decimal(percent), kind)
        if marker in seen:
            raise InvalidInput("thresholds must differ", field=f"thresholds.{i}", key="error.budget_thresholds_duplicate",
                               percent=percent, type=kind)
        seen.add(marker)
        result.append({"percent": percent, "type": kind})
    return result


def parse_emails(value) -> list[str]:
    """Extra addresses: a list or a text separated by commas, semicolons, spaces or new lines."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = [p for p in re.split(r"[\s,;]+", value) if p]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise InvalidInput("e-mail addresses expected", field="extra_emails", key="error.budget_email_invalid")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput("e-mail addresses expected", field="extra_emails", key="error.budget_email_invalid")
        email = item.strip().lower()
        if not email:
            continue
        if len(email) > 254 or not _EMAIL.match(email):
            raise InvalidInput(f"not an e-mail address: {item!r}", field="extra_emails",
                               key="error.budget_email_invalid", email=item[:254])
        if email not in result:
            result.append(email)
    if len(result) > MAX_EXTRA_EMAILS:
        raise InvalidInput(f"at most {MAX_EXTRA_EMAILS} addresses", field="extra_emails",
                           key="error.budget_too_many_emails", maximum=MAX_EXTRA_EMAILS)
    return result


def _members(session: Session, org_id: int) -> list[User]:
    return list(session.exec(
        select(User).join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, Membership.in_force(), User.is_active == True)  # noqa: E712
        .order_by(User.name, User.id)
    ).all())


def _parse_recipients(session: Session, org_id: int, value) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidInput("recipients must be a list of users", field="recipient_user_ids",
                           key="error.budget_recipient_invalid")
    members = {u.id for u in _members(session, org_id)}
    result: list[int] = []
    for item in value:
        if isinstance(item, bool):
            raise InvalidInput("not a user", field="recipient_user_ids", key="error.budget_recipient_invalid")
        try:
            uid = int(str(item).strip())
        except (TypeError, ValueError):
            raise InvalidInput("not a user", field="recipient_user_ids", key="error.budget_recipient_invalid") from None
        if uid not in members:
            raise InvalidInput("not a user of this organisation", field="recipient_user_ids",
                               key="error.budget_recipient_not_member")
        if uid not in result:
            result.append(uid)
    return result


def _payg_sub(session: Session, access: Access, sub_id) -> Subscription:
    """The organisation's pay-as-you-go subscription ``sub_id`` (NotFound for a malformed, missing
    or foreign id; Conflict for another kind of plan)."""
    sub = authz.load_owned(session, access, Subscription, sub_id, "subscription", key="error.subscription_not_found")
    plan = catalog.get_plan(session, sub.plan_id, active_only=False).plan
    if plan.billing_type != "payg":
        raise Conflict("budgets are for pay-as-you-go subscriptions", key="error.not_payg")
    return sub


def _view(session: Session, budget: Budget, org_id: int) -> dict:
    users = {u.id: u for u in _members(session, org_id)}
    return {
        "id": budget.id,
        "subscription_id": budget.subscription_id,
        "amount": budget.amount,
        "currency": budget.currency,
        "thresholds": [dict(t) for t in budget.thresholds],
        "recipient_user_ids": list(budget.recipient_user_ids),
        "recipients": [{"id": uid, "name": users[uid].name, "email": users[uid].email}
                       for uid in budget.recipient_user_ids if uid in users],
        "extra_emails": list(budget.extra_emails),
        "updated_at": budget.updated_at,
    }


def get_budget(session: Session, actor: Actor | None, sub_id) -> dict | None:
    """The subscription's budget as a dict, or None when it has none (any member may read)."""
    access = authz.can_read(session, actor)
    sub = _payg_sub(session, access, sub_id)
    budget = session.exec(select(Budget).where(Budget.subscription_id == sub.id)).first()
    return _view(session, budget, access.org_id) if budget else None


def budget_form(session: Session, actor: Actor | None, sub_id) -> dict:
    """What the "Set budget" dialog needs: the current budget (or the defaults), the currency and
    the organisation's users to choose recipients from."""
    access = authz.can_read(session, actor)
    sub = _payg_sub(session, access, sub_id)
    org = session.get(Organisation, access.org_id)
    budget = session.exec(select(Budget).where(Budget.subscription_id == sub.id)).first()
    return {
        "budget": _view(session, budget, access.org_id) if budget else None,
        "currency": org.billing_currency,
        "default_thresholds": default_thresholds(),
        "members": [{"id": u.id, "name": u.name, "email": u.email} for u in _members(session, access.org_id)],
        "max_thresholds": MAX_THRESHOLDS,
        "can_write": access.can_write,
    }


def set_budget(session: Session, actor: Actor | None, sub_id, *, amount, thresholds=None, recipient_user_ids=None,
               extra_emails=None, now: datetime | None = None) -> dict:
    """Create or replace the subscription's budget (Owner/Admin). Commits; nothing changes on error."""
    now = clock.aware(now) if now else clock.utcnow()
    try:
        access = authz.can_write(session, actor)
        sub = _payg_sub(session, access, sub_id)
        if sub.status in (SubscriptionStatus.CANCELLED, SubscriptionStatus.EXPIRED):
            raise Conflict("the subscription has ended", key="error.subscription_not_active", status=sub.status)
        org = session.get(Organisation, access.org_id)
        value = parse_amount(amount, org.billing_currency, field="amount")
        parsed_thresholds = parse_thresholds(thresholds)
        users = _parse_recipients(session, org.id, recipient_user_ids)
        emails = parse_emails(extra_emails)
        if not users and not emails:
            raise InvalidInput("at least one recipient", field="recipient_user_ids", key="error.budget_no_recipients")
        budget = session.exec(select(Budget).where(Budget.subscription_id == sub.id)).first()
        created = budget is None
        if created:
            budget = Budget(org_id=org.id, subscription_id=sub.id, amount=value, created_at=now)
        budget.amount, budget.currency = value, org.billing_currency
        budget.thresholds, budget.recipient_user_ids, budget.extra_emails = parsed_thresholds, users, emails
        budget.updated_at = now
        session.add(budget)
        audit.record(session, access.actor, "budget.created" if created else "budget.updated", subscription_id=sub.id,
                     amount=str(value), currency=org.billing_currency,
                     thresholds=[f"{t['percent']}% {t['type']}" for t in parsed_thresholds])
        session.flush()
        view = _view(session, budget, org.id)
        session.commit()
        return view
    except BaseException:
        session.rollback()
        raise


def remove_budget(session: Session, actor: Actor | None, sub_id, *, now: datetime | None = None) -> bool:
    """Delete the subscription's budget and its alert history (Owner/Admin). False if there was none."""
    try:
        access = authz.can_write(session, actor)
        sub = _payg_sub(session, access, sub_id)
        budget = session.exec(select(Budget).where(Budget.subscription_id == sub.id)).first()
        if budget is None:
            session.rollback()
            return False
        for alert in session.exec(select(BudgetAlert).where(BudgetAlert.budget_id == budget.id)).all():
            session.delete(alert)
        session.flush()
        session.delete(budget)
        audit.record(session, access.actor, "budget.removed", subscription_id=sub.id)
        session.commit()
        return True
    except BaseException:
        session.rollback()
        raise
