"""The Microsoft tenant step as a Reflex state mixin (``components.tenant.tenant_form``): link the
organisation's existing tenant or ask for a new one, accepting the Microsoft Customer Agreement.
Used by the account page and by the order dialog of the first Microsoft order; the page state
says what follows a saved tenant in ``_tenant_saved``. The rules are
``services/identity/microsoft_tenant.py``."""

from __future__ import annotations

import reflex as rx

from noventiq_panel.services.core.errors import DomainError
from noventiq_panel.services.identity import microsoft_tenant
from .base import BaseState
from .inputs import clean_text, form_text


class TenantStep(BaseState, mixin=True):
    tenant_mode: str = "existing"  # existing | new
    tenant_prefix: str = ""
    tenant_domain_note: str = ""  # what the availability check answered
    tenant_domain_free: bool = False
    tenant_error: str = ""
    tenant_admin: str = ""  # a created tenant's administrator account, shown once
    tenant_busy: bool = False

    async def _tenant_saved(self):
        """What follows a saved tenant on this page: nothing here; the account page reloads, the
        order dialog previews the order again (they override it). May return an event."""
        return None

    @rx.event
    def set_tenant_mode(self, mode: str):
        self.tenant_mode = "new" if mode == "new" else "existing"
        self.tenant_error = self.tenant_domain_note = ""

    @rx.event
    def set_tenant_prefix(self, value: str):
        self.tenant_prefix = clean_text(value, 80)
        self.tenant_domain_note, self.tenant_domain_free = "", False

    @rx.event
    async def check_tenant_domain(self):
        """Is the new tenant's domain free? (Partner Center; else the operator checks it.)"""
        try:
            answer = await self._act(microsoft_tenant.domain_status, self.tenant_prefix)
            domain = f"{microsoft_tenant.parse_prefix(self.tenant_prefix)}.{microsoft_tenant.INITIAL_DOMAIN}"
        except DomainError as exc:
            self.tenant_error, self.tenant_domain_note = self._error_text(exc), ""
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.tenant_error = ""
        self.tenant_domain_free = answer == "available"
        self.tenant_domain_note = self._t(f"account.tenant.{answer}", domain=domain)

    @rx.event
    async def submit_tenant(self, form: dict):
        """Link the existing tenant, or ask for a new one; the agreement accepted either way."""
        if self.tenant_busy:
            return
        self.tenant_busy = True
        yield
        accepted = form.get("accepted") == "on" if isinstance(form, dict) else False
        try:
            if self.tenant_mode == "new":
                created = await self._act(microsoft_tenant.create, self.tenant_prefix, accepted=accepted)
                self.tenant_admin = (self._t("account.tenant.admin", user=created.admin_user,
                                             password=created.admin_password) if created.admin_user else "")
                done = "account.tenant.created" if created.tenant.verified else "account.tenant.requested"
            else:
                await self._act(microsoft_tenant.link, form_text(form, "tenant", 255), accepted=accepted)
                done = "account.tenant.linked"
        except DomainError as exc:
            self.tenant_busy = False
            self.tenant_error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            self.tenant_busy = False
            yield self._fail(exc)
            return
        self.tenant_busy = False
        self.tenant_error = self.tenant_domain_note = ""
        event = await self._tenant_saved()
        if event is not None:
            yield event
        yield self._ok(done)
