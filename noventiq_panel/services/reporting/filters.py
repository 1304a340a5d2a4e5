"""What the analytics show: the named periods, the filters from the URL and the organisation's
subscriptions they narrow to.

A period is ``[start, end)`` of organisation-local dates; the previous period of a whole-months
period is the same number of whole months before it, of any other period the same number of days.
``parse_filters`` turns URL query parameters into validated ``Filters`` (a malformed value is
``InvalidInput``); ``scope`` gives the subscriptions a filter keeps, where a subscription filter
must name one of the caller's own (``NotFound`` otherwise, as for any foreign id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping

from sqlalchemy import select
from sqlmodel import Session

from noventiq_panel.models import UsageDaily
from noventiq_panel.services.catalog.payment_models import PAYMENT_MODEL_GROUPS, PAYMENT_MODELS
from noventiq_panel.services.catalog.subscription_info import SubInfo, subscriptions_of
from noventiq_panel.services.core import authz, clock
from noventiq_panel.services.core.authz import Access, Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput

MAX_PERIOD_DAYS = 366 * 5 + 1
PRESETS = ("this_month", "last_month", "quarter", "year", "last_12_months", "custom")
OTHER = "other"  # key of spend not tied to a subscription / of the long tail of resources
ZERO = Decimal("0")


# --------------------------------------------------------------------------------------------
# Periods and filters


def period_presets(today: date | None = None, tz: str = "Asia/Tashkent", *, now: datetime | None = None
                   ) -> dict[str, tuple[date, date]]:
    """The named periods as ``[start, end)`` local dates around ``today`` (today in ``tz`` if None).

    ``custom`` defaults to the last 30 days including today.
    """
    if today is None:
        today = clock.local_date(now or clock.utcnow(), tz)
    first = today.replace(day=1)
    q_first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return {
        "this_month": (first, clock.next_month(first)),
        "last_month": (clock.prev_month(first), first),
        "quarter": (q_first, clock.add_months(q_first, 3)),
        "year": (date(today.year, 1, 1), date(today.year + 1, 1, 1)),
        "last_12_months": (clock.add_months(first, -11), clock.next_month(first)),
        "custom": (today - timedelta(days=29), today + timedelta(days=1)),
    }


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of the same length just before: whole months when ``[start, end)`` is whole
    months (February compares with January), else the same number of days."""
    if start.day == 1 and end.day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month
        return clock.add_months(start, -months), start
    length = end - start
    return start - length, start


def comparison_period(start: date, end: date, today: date) -> tuple[date, date, bool]:
    """What ``[start, end)`` is compared with, and whether only its elapsed part is compared.

    A period that is still running (``today`` inside it, the customer's local day) is compared
    like with like, as Azure Cost Management does: its days up to today against as many days of
    the previous period (December 1-3 against November 1-3, not against all of November). A
    period that is over is compared with the whole previous period (:func:`previous_period`)."""
    p_start, p_end = previous_period(start, end)
    elapsed = today + timedelta(days=1)
    if start < elapsed < end:
        return p_start, min(p_end, p_start + (elapsed - start)), True
    return p_start, p_end, False


@dataclass(frozen=True)
class Filters:
    """What the analytics page shows. ``service``/``resource_group`` narrow the IaaS detail only
    (the ledger knows subscriptions, not meters)."""

    start: date
    end: date
    preset: str = "custom"
    product_id: int | None = None
    vendor_id: int | None = None
    subscription_id: int | None = None
    payment_model: str | None = None
    service: str | None = None
    resource_group: str | None = None

    def validated(self) -> "Filters":
        if not isinstance(self.start, date) or not isinstance(self.end, date):
            raise InvalidInput("period: dates required", field="period", key="error.analytics_period")
        if self.end <= self.start:
            raise InvalidInput("period: the end must be after the start", field="period",
                               key="error.analytics_period")
        if (self.end - self.start).days > MAX_PERIOD_DAYS:
            raise InvalidInput("period: at most five years", field="period", key="error.analytics_period_long")
        if self.payment_model and self.payment_model not in PAYMENT_MODELS and \
                self.payment_model not in PAYMENT_MODEL_GROUPS:
            raise InvalidInput("unknown payment model", field="payment_model", key="error.analytics_filter")
        return self

    @property
    def narrowed(self) -> bool:
        """Whether a filter narrows the subscriptions (the IaaS-only filters do not)."""
        return any(v is not None and v != "" for v in (self.subscription_id, self.product_id, self.vendor_id,
                                                         self.payment_model))

    def keeps(self, info: "SubInfo") -> bool:
        """Whether the subscription ``info`` passes the subscription, product, vendor and
        payment-model filters."""
        if self.subscription_id is not None and info.id != self.subscription_id:
            return False
        if self.product_id is not None and info.product_id != self.product_id:
            return False
        if self.vendor_id is not None and info.vendor_id != self.vendor_id:
            return False
        if self.payment_model:
            return info.payment_model in PAYMENT_MODEL_GROUPS.get(self.payment_model, (self.payment_model,))
        return True

    def to_query(self) -> dict[str, str]:
        """URL query parameters (only what is set): the view can be bookmarked."""
        q: dict[str, str] = {"period": self.preset}
        if self.preset == "custom":
            q["from"] = self.start.isoformat()
            q["to"] = (self.end - timedelta(days=1)).isoformat()  # inclusive in the URL
        for name in ("product_id", "vendor_id", "subscription_id"):
            value = getattr(self, name)
            if value is not None:
                q[name.removesuffix("_id")] = str(value)
        for name, key in (("payment_model", "model"), ("service", "service"), ("resource_group", "rg")):
            value = getattr(self, name)
            if value:
                q[key] = value
        return q


def _int_param(params: Mapping[str, Any], key: str) -> int | None:
    raw = params.get(key)
    if raw in (None, "", "all"):
        return None
    raw = str(raw).strip()
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidInput(f"{key}: not an id", field=key, key="error.analytics_filter")
    return int(raw)


def _date_param(params: Mapping[str, Any], key: str) -> date | None:
    raw = params.get(key)
    if not raw:
        return None
    try:
        return date.fromisoformat(str(raw).strip()[:10])
    except ValueError:
        raise InvalidInput(f"{key}: not a date", field=key, key="error.analytics_period") from None


def parse_filters(params: Mapping[str, Any], *, today: date | None = None, tz: str = "Asia/Tashkent",
                  now: datetime | None = None) -> Filters:
    """Filters from URL query parameters (``period``, ``from``, ``to`` inclusive, ``product``,
    ``vendor``, ``subscription``, ``model``, ``service``, ``rg``), validated. Unknown or empty
    values fall back to this month; a malformed one raises ``InvalidInput``."""
    presets = period_presets(today, tz, now=now)
    preset = str(params.get("period") or "this_month")
    if preset not in presets:
        preset = "this_month"
    start, end = presets[preset]
    if preset == "custom":
        start = _date_param(params, "from") or start
        to = _date_param(params, "to")
        end = to + timedelta(days=1) if to else end
    model = params.get("model") or None
    service = str(params.get("service") or "").strip()[:128] or None
    rg = str(params.get("rg") or "").strip()[:255] or None
    return Filters(start=start, end=end, preset=preset, product_id=_int_param(params, "product"),
                   vendor_id=_int_param(params, "vendor"), subscription_id=_int_param(params, "subscription"),
                   payment_model=str(model) if model else None, service=service, resource_group=rg).validated()


# --------------------------------------------------------------------------------------------
# Subscriptions and their catalogue data


def scope(session: Session, access: Access, f: Filters) -> tuple[dict[int, SubInfo], set[int] | None]:
    """(the organisation's subscriptions, the ids the filters keep or None when they keep all).
    A subscription filter must name one of the organisation's subscriptions (NotFound otherwise)."""
    subs = subscriptions_of(session, access.org_id)
    if f.subscription_id is not None:
        authz.own(subs.get(f.subscription_id), access, "subscription")
    if not f.narrowed:
        return subs, None
    return subs, {sid for sid, info in subs.items() if f.keeps(info)}


@dataclass(frozen=True)
class FilterOptions:
    """What the filter selects offer: only values the organisation has."""

    products: list[tuple[int, str]]
    vendors: list[tuple[int, str]]
    subscriptions: list[tuple[int, str]]
    payment_models: list[str]
    payg_subscriptions: list[tuple[int, str]]
    services: list[str]
    resource_groups: list[str]


def filter_options(session: Session, actor: Actor) -> FilterOptions:
    access = can_read(session, actor)
    subs = subscriptions_of(session, access.org_id)
    services = session.execute(
        select(UsageDaily.service).where(UsageDaily.org_id == access.org_id).distinct()).scalars().all()
    groups = session.execute(
        select(UsageDaily.resource_group).where(UsageDaily.org_id == access.org_id).distinct()).scalars().all()
    return FilterOptions(
        products=sorted({(s.product_id, s.product_name) for s in subs.values()}, key=lambda x: x[1]),
        vendors=sorted({(s.vendor_id, s.vendor_name) for s in subs.values()}, key=lambda x: x[1]),
        subscriptions=sorted(((s.id, s.name) for s in subs.values()), key=lambda x: (x[1], x[0])),
        payment_models=[m for m in PAYMENT_MODELS if any(s.payment_model == m for s in subs.values())],
        payg_subscriptions=sorted(((s.id, s.name) for s in subs.values() if s.is_payg), key=lambda x: (x[1], x[0])),
        services=sorted(s for s in services if s),
        resource_groups=sorted(g for g in groups if g),
    )

