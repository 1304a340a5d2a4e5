"""A plan's payment model: how its price is paid, as one short code.

``payment_model(plan)`` is the one rule: pay-as-you-go by hour or by day, or licences by the month,
by the year paid upfront, or by the year billed in monthly instalments. The analytics filters and
shares use these codes (and their groups); the subscription lists use the coarser ``short`` codes,
where a trial plan is shown as a trial and pay-as-you-go is not split by granularity.
"""

from __future__ import annotations

from noventiq_panel.models import Plan
from noventiq_panel.services.core import proration

PAYMENT_MODELS = ("month", "year_upfront", "year_monthly", "payg_hour", "payg_day")
PAYMENT_MODEL_GROUPS = {"payg": ("payg_hour", "payg_day"), "license": ("month", "year_upfront", "year_monthly")}
_SHORT = {"payg_hour": "payg", "payg_day": "payg", "year_upfront": "year"}


def payment_model(plan: Plan, *, short: bool = False) -> str:
    """The code of ``plan``'s payment model: one of ``PAYMENT_MODELS``; with ``short``, the code
    the subscription lists show: payg | trial | month | year | year_monthly."""
    if plan.billing_type == "payg":
        model = "payg_hour" if plan.granularity == "hour" else "payg_day"
    elif proration.is_billed_monthly(plan.term, plan.billing_frequency):
        model = "year_monthly"
    else:
        model = "year_upfront" if plan.term == "year" else "month"
    if not short:
        return model
    if model in PAYMENT_MODEL_GROUPS["license"] and plan.trial_days > 0:
        return "trial"
    return _SHORT.get(model, model)
