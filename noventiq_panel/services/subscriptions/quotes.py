"""What the subscription operations return: an :class:`Outcome` (what was done) and the quotes
(what an operation would do). Amounts are in the organisation's billing currency, positive numbers,
rounded as the ledger rounds them. A quote given to someone who may change the subscription
carries ``quote_id``: the confirmation sends it back with ``amount_due`` (see ``confirmation``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any


class _Result:
    """``as_dict``: the result as a plain dict (pages, JSON)."""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Outcome(_Result):
    """What an operation did. Amounts are in the organisation's currency, positive numbers."""

    subscription_id: int
    action: str
    currency: str
    status: str = ""
    quantity: int = 0
    charged: Decimal = Decimal("0.00")
    refunded: Decimal = Decimal("0.00")
    scheduled_change_id: int | None = None
    effective_at: datetime | None = None
    already_done: bool = False
    at_vendor: bool = False  # nothing changed yet: the vendor confirms first (provisioning.ask_*)

    def __post_init__(self):
        self.status = str(self.status)

    def stored(self) -> dict[str, Any]:
        """JSON-safe, as a confirmed quote keeps it (a repeated confirmation answers with it)."""
        return {f.name: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Decimal) else v)
                for f in fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def replayed(cls, stored: dict[str, Any]) -> "Outcome":
        """The outcome of an operation confirmed before, marked ``already_done``."""
        data = dict(stored)
        data["charged"], data["refunded"] = Decimal(data["charged"]), Decimal(data["refunded"])
        if data.get("effective_at"):
            data["effective_at"] = datetime.fromisoformat(data["effective_at"])
        data["already_done"] = True
        return cls(**data)


@dataclass
class OrderQuote(_Result):
    """The price of an order before it is placed (nothing is written)."""

    plan_id: int
    plan_code: str
    plan_name: str
    product_name: str
    vendor_name: str
    quantity: int
    currency: str  # the organisation's
    plan_currency: str
    unit_price: Decimal  # per seat per billing period, plan currency
    price_now: Decimal  # charged at once, org currency, rounded
    recurring_price: Decimal  # per billing period at this quantity, org currency
    recurring_period: str | None  # "month" | "year" | None (pay-as-you-go, trial)
    fx_rate: Decimal
    fx_date: date
    term_start: datetime
    term_end: datetime | None
    renewal_date: date | None  # local date the next term starts (the trial ends)
    next_billing_at: datetime | None
    next_charge_date: date | None  # local date of the next charge (instalment or renewal)
    is_trial: bool
    trial_ends_at: datetime | None
    converts_to: str | None
    is_payg: bool
    available: Decimal
    shortfall: Decimal  # 0 when the balance covers price_now
    quote_id: str | None = None
    manual: bool = False  # a vendor without an API: price_now is reserved until the vendor activates
    # what the order still needs from the customer (microsoft_tenant.order_status): "" nothing,
    # "missing" the Microsoft tenant, "unconfirmed" Microsoft's confirmation of it
    tenant: str = ""

    @property
    def amount_due(self) -> Decimal:
        """What moves now (charged > 0): the amount the confirmation carries back."""
        return self.price_now


@dataclass
class QuantityQuote(_Result):
    """What a licence-count change would do now and at the next renewal."""

    subscription_id: int
    old_quantity: int
    new_quantity: int
    currency: str
    charge_now: Decimal = Decimal("0.00")
    refund_now: Decimal = Decimal("0.00")
    quantity_now: int = 0  # seats right after the change
    removed_now: int = 0  # seats removed at once (inside their window)
    scheduled_quantity: int | None = None  # seats from the next renewal, when a decrease waits
    effective_at: datetime | None = None  # when the scheduled part applies
    effective_date: date | None = None  # its local date (organisation's time zone)
    remaining_days: int = 0
    total_days: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None
    recurring_price: Decimal = Decimal("0.00")  # per billing period at the final quantity
    available: Decimal = Decimal("0.00")
    shortfall: Decimal = Decimal("0.00")
    free: bool = False  # a trial: nothing is charged
    vendor_confirms: bool = False  # the seats go, refunded, once the vendor confirms (provisioning)
    quote_id: str | None = None

    @property
    def amount_due(self) -> Decimal:
        """What moves now (charged > 0, refunded < 0): the amount the confirmation carries back."""
        return self.charge_now - self.refund_now


@dataclass
class PlanChangeQuote(_Result):
    """What a plan change would do: at once (an upgrade: the pro rata difference for the rest of the
    current billing period, same term end) or at the next renewal (everything else)."""

    subscription_id: int
    from_plan: str
    to_plan: str
    to_plan_id: int
    direction: str  # "upgrade" | "downgrade" | "same_price" | "switch" (term or billing frequency)
    immediate: bool
    currency: str
    charge_now: Decimal = Decimal("0.00")
    refund_now: Decimal = Decimal("0.00")
    effective_at: datetime | None = None
    effective_date: date | None = None
    recurring_price: Decimal = Decimal("0.00")
    available: Decimal = Decimal("0.00")
    shortfall: Decimal = Decimal("0.00")
    withdraws_pending: bool = False  # back to the current plan: the scheduled change is withdrawn
    quote_id: str | None = None

    @property
    def amount_due(self) -> Decimal:
        """What moves now (charged > 0, refunded < 0): the amount the confirmation carries back."""
        return self.charge_now - self.refund_now


@dataclass
class CancelQuote(_Result):
    subscription_id: int
    immediate: bool
    currency: str
    refund_now: Decimal = Decimal("0.00")
    charge_now: Decimal = Decimal("0.00")  # the days used unpaid after a payment fell due (:mod:`lapse`)
    effective_at: datetime | None = None
    effective_date: date | None = None
    quote_id: str | None = None
    vendor_confirms: bool = False  # it ends, refunded, once the vendor confirms (provisioning)

    @property
    def amount_due(self) -> Decimal:
        """What moves now (a refund: < 0): the amount the confirmation carries back."""
        return self.charge_now - self.refund_now
