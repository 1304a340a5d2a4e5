"""State of /account: the organisation's details and its users.

Owner and Administrator edit; a Financial manager sees the same data with nothing editable. The
controls are hidden for read-only roles, but the guard is the service (``can_write``), called by
every handler here with the caller resolved again from the session secret.
"""

from __future__ import annotations

from datetime import datetime

import reflex as rx
from babel.dates import get_timezone, get_timezone_gmt, get_timezone_location

from noventiq_panel.services.identity import microsoft_tenant, organisations, two_factor, users
from ..services.core.errors import DomainError, InvalidInput
from .base import BaseState
from .tenant import TenantStep
from .formatting import flag, fmt_date, fmt_datetime, fmt_money
from .inputs import form_text, parse_id

ROLES = ("owner", "admin", "finance")
DETAIL_FIELDS = {"name": 255, "tax_id": 32, "address": 500, "phone": 64, "bank_details": 500,
                 # what the electronic invoices (ЭСФ) need; the contract is set by support
                 "vat_reg_code": 32, "bank_mfo": 16, "bank_account": 32, "oked": 16, "director": 255}


def _zone_label(zone: str, locale: str) -> str:
    """'Ташкент (GMT+05:00)' rather than the raw IANA id."""
    try:
        tz = get_timezone(zone)
        city = get_timezone_location(tz, locale=locale, return_city=True)
        return f"{city} ({get_timezone_gmt(datetime.now(tz), locale=locale, width='long')})"
    except Exception:  # noqa: BLE001 - an unknown zone is shown as stored
        return zone


def _load(session, actor):
    return (organisations.get_details(session, actor), users.list_members(session, actor),
            microsoft_tenant.tenant_of(session, actor))


def _set_two_factor(session, actor, value: bool) -> bool:
    return two_factor.set_required(session, actor, value)


class AccountState(TenantStep, BaseState):
    loaded: bool = False
    tab: str = "details"
    details: dict[str, str] = {}
    members: list[dict[str, str]] = []
    invite_open: bool = False
    invite_error: str = ""
    saving: bool = False
    require_two_factor: bool = False
    tenant: dict[str, str] = {}  # the linked Microsoft tenant ({} when none)

    @rx.event
    def set_tab(self, tab: str):
        self.tab = tab if tab in ("details", "users", "activity") else "details"

    @rx.event
    def set_invite_open(self, value: bool):
        self.invite_open = bool(value) and self.can_write
        self.invite_error = ""

    @rx.event
    async def load(self):
        tab = self.router.url.query_parameters.get("tab")
        if tab in ("details", "users", "activity"):
            self.tab = tab
        self.tenant_admin = ""  # a new tenant's administrator password is shown once, never again
        try:
            details, members, tenant = await self._view(_load)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self._show(details, members, tenant)

    def _show(self, d: organisations.OrgDetails, members: list[users.MemberView],
              tenant: microsoft_tenant.TenantView | None) -> None:
        lang = self._lang
        self.tenant = {} if tenant is None else {
            "reference": tenant.domain or tenant.tenant_id,
            "verified": flag(tenant.verified),
            "pending_new": flag(tenant.is_new and not tenant.verified),  # the operator creates it
            "accepted": self._t("account.tenant.accepted_by", name=tenant.agreement_name,
                                email=tenant.agreement_email,
                                at=fmt_datetime(tenant.agreement_accepted_at, lang, d.timezone, format="short")),
        }
        self.details = {
            "name": d.name,
            "tax_id": d.tax_id,
            "address": d.address,
            "phone": d.phone,
            "bank_details": d.bank_details,
            "vat_reg_code": d.vat_reg_code,
            "bank_mfo": d.bank_mfo,
            "bank_account": d.bank_account,
            "oked": d.oked,
            "director": d.director,
            "contract": (self._t("account.contract_value", number=d.contract_no, date=fmt_date(d.contract_date, lang))
                         if d.contract_no and d.contract_date else d.contract_no or self._t("account.contract_offer")),
            "currency": d.billing_currency,
            "timezone": _zone_label(d.timezone, lang),
            "billing_mode": self._t(f"account.billing_mode.{d.billing_mode}"),
            "postpaid": flag(d.billing_mode == "postpaid"),
            "credit_limit": fmt_money(d.credit_limit, d.billing_currency, lang),
            "low_balance_threshold": (fmt_money(d.low_balance_threshold, d.billing_currency, lang)
                                      if d.low_balance_threshold is not None else self._t("account.not_set")),
            "created_at": fmt_date(d.created_at, lang, d.timezone),
        }
        self.require_two_factor = d.require_two_factor
        rows = []
        for m in members:
            if not m.is_active:
                status, color = "inactive", "gray"
            elif m.pending:
                status, color = "pending", "amber"
            else:
                status, color = "active", "green"
            rows.append({
                "id": str(m.membership_id),
                "name": m.name or "—",
                "email": m.email,
                "role": m.role,
                "role_label": self._t(f"users.role.{m.role}"),
                "status": status,
                "status_label": self._t(f"account.status.{status}"),
                "status_color": color,
                "active": flag(m.is_active),
                "is_self": flag(m.user_id == self._user_id),
                "last_login": (fmt_datetime(m.last_login_at, lang, d.timezone, format="short")
                               if m.last_login_at else self._t("account.never")),
            })
        self.members = rows
        self.loaded = True

    @rx.event
    async def set_require_two_factor(self, value: bool):
        """An Owner requires (or stops requiring) two-factor sign-in of every member."""
        try:
            self.require_two_factor = await self._act(_set_two_factor, bool(value))
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        return self._ok("common.saved")

    async def _reload(self) -> None:
        self._show(*await self._view(_load))

    async def _tenant_saved(self):
        await self._reload()

    @rx.event
    async def save_details(self, form: dict):
        try:
            values = {name: form_text(form, name, limit) for name, limit in DETAIL_FIELDS.items()}
            self.saving = True
            await self._act(organisations.update_details, **values)
            await self._reload()
        except Exception as exc:  # noqa: BLE001
            self.saving = False
            return self._fail(exc)
        self.saving = False
        return self._ok("common.saved")

    @rx.event
    async def invite(self, form: dict):
        try:
            email = form_text(form, "email", 254)
            name = form_text(form, "name", 255)
            role = form_text(form, "role", 16) or "admin"
            if role not in ROLES:
                raise InvalidInput("unknown role", field="role", key="users.role_invalid")
            await self._act(users.invite, email=email, name=name, role=role, locale=self._lang)
            await self._reload()
        except DomainError as exc:
            if isinstance(exc, InvalidInput) or exc.key.startswith(("users.", "auth.")):
                self.invite_error = self._error_text(exc)
                return
            return self._fail(exc)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.invite_open = False
        self.invite_error = ""
        self.tab = "users"
        return self._ok("users.invited", email=email.lower())

    @rx.event
    async def change_role(self, membership_id: str, role: str):
        try:
            target = parse_id(membership_id)
            if role not in ROLES:
                raise InvalidInput("unknown role", field="role", key="users.role_invalid")
            await self._act(users.change_role, target, role)
            await self._reload()
        except Exception as exc:  # noqa: BLE001
            try:
                await self._reload()  # put the select back to the stored role
            except Exception:  # noqa: BLE001
                pass
            return self._fail(exc)
        return self._ok("account.role_changed")

    @rx.event
    async def deactivate(self, membership_id: str):
        return await self._member_action(users.deactivate, membership_id, "account.deactivated")

    @rx.event
    async def reactivate(self, membership_id: str):
        return await self._member_action(users.reactivate, membership_id, "account.reactivated")

    async def _member_action(self, fn, membership_id: str, ok_key: str):
        """``fn(session, actor, membership_id)`` on one member, then the list again."""
        try:
            await self._act(fn, parse_id(membership_id))
            await self._reload()
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        return self._ok(ok_key)
