"""State of the home page: the dashboard figures, formatted for the UI language."""

from __future__ import annotations

import reflex as rx

from ..i18n import format as fmt
from noventiq_panel.services.reporting import dashboard
from noventiq_panel.services.identity import users
from ..services.core.errors import NotFound
from .base import BaseState
from .formatting import fmt_date, fmt_money, text_date
from .parts import BalanceFigures, SupportContacts

ALERT_COLORS = {
    "negative_balance": "red",
    "credit_exhausted": "red",
    "low_balance": "orange",
    "budget": "orange",
    "payment_overdue": "red",
    "cost_anomaly": "orange",
}


class HomeState(BalanceFigures, SupportContacts, BaseState):
    loaded: bool = False
    month_label: str = ""
    month_to_date: str = ""
    forecast: str = ""
    soon: list[dict[str, str]] = []
    rates: list[dict[str, str]] = []
    rates_date: str = ""
    alerts: list[dict[str, str]] = []
    invitations: list[dict[str, str]] = []  # invitations to other organisations waiting for an answer

    @rx.event
    async def load(self):
        try:
            d, invitations = await self._view(_home)
        except Exception as exc:  # noqa: BLE001 - a domain error or a generic message (logged)
            return self._fail(exc)
        self._show(d)
        self._show_invitations(invitations)

    async def _load_invitations(self) -> None:
        self._show_invitations(await self._view(_my_invitations))

    def _show_invitations(self, rows) -> None:
        self.invitations = [
            {"id": str(i.membership_id), "org": i.org_name,
             "text": self._t("users.invitation.text", org=i.org_name, role=self._t(f"users.role.{i.role}"))}
            for i in rows
        ]

    @rx.event
    async def accept_invitation(self, membership_id: str):
        """Join the organisation that invited this user (the service checks it is theirs)."""
        return await self._answer(users.accept_invitation, membership_id, "users.invitation.accepted")

    @rx.event
    async def decline_invitation(self, membership_id: str):
        return await self._answer(users.decline_invitation, membership_id, "users.invitation.declined")

    async def _answer(self, fn, membership_id, ok_key: str):
        invitation = next((i for i in self.invitations if i["id"] == str(membership_id)), None)
        try:
            target = int(str(membership_id))
            await self._act(_for_me, fn, target)
            await self._load_invitations()
        except (TypeError, ValueError):
            return self._fail(NotFound("invitation not found", key="users.invitation_not_found"))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return self._fail(exc)
        return self._ok(ok_key, org=invitation["org"] if invitation else "")

    def _show(self, d: dashboard.Dashboard) -> None:
        lang, tz, cur = self._lang, d.timezone, d.currency
        self._show_balance(currency=cur, balance=d.balance, credit_limit=d.credit_limit, available=d.available,
                           billing_mode=d.billing_mode)
        self.month_label = fmt.format_month(d.month, lang)
        self.month_to_date = fmt_money(d.month_to_date, cur, lang)
        self.forecast = fmt_money(d.forecast, cur, lang)
        self.soon = [
            {
                "id": str(i.subscription_id),
                "name": i.name,
                "href": f"/subscriptions/{i.subscription_id}",
                "event": self._t(f"home.soon.{i.event}"),
                "date": fmt_date(i.when, lang, tz),
                "color": {"renews": "green", "expires": "orange", "trial_ends": "blue"}.get(i.event, "gray"),
            }
            for i in d.soon[:8]
        ]
        self.rates = [
            {"label": self._t("home.rates.line", currency=r.currency), "rate": fmt_money(r.rate, "UZS", lang)}
            for r in d.rates
        ]
        self.rates_date = fmt_date(d.rates_date, lang) if d.rates_date else ""
        self.alerts = [self._alert_view(a) for a in d.alerts]
        self._show_support()
        self.loaded = True

    def _alert_view(self, a: dashboard.Alert) -> dict[str, str]:
        lang = self._lang
        params = dict(a.params)
        cur = params.get("currency", "UZS")
        for name in ("balance", "threshold", "amount", "spent", "available", "actual", "expected", "low", "high"):
            if name in params:
                params[name] = fmt_money(params[name], cur, lang)
        if params.get("due_date") is not None:
            params["due_date"] = fmt_date(params["due_date"], lang)
        if params.get("day") is not None:
            params["day"] = text_date(params["day"], lang)
        if "percent" in params:
            params["percent"] = fmt.format_percent(params["percent"], lang)
        if "type" in params:
            params["type"] = self._t(f"home.alert.budget_type.{params['type']}")
        return {
            "kind": a.kind,
            "text": self._t(a.text_key or f"home.alert.{a.kind}", **params),
            "href": a.link,
            "color": ALERT_COLORS.get(a.kind, "orange"),
        }


def _home(session, actor):
    """The dashboard and the user's open invitations: one unit of work for the page load."""
    return dashboard.get_dashboard(session, actor), _my_invitations(session, actor)


def _my_invitations(session, actor) -> list[users.Invitation]:
    return users.pending_invitations(session, actor.user_id)


def _for_me(session, actor, fn, membership_id: int):
    """Invitations belong to the signed-in user, whatever organisation they are working in."""
    return fn(session, actor.user_id, membership_id)
