"""The Microsoft tenant step (state: ``state.tenant.TenantStep``): link the organisation's existing
tenant by its domain or id, or ask for a new one with a domain prefix (checked for availability),
and accept the Microsoft Customer Agreement. The account page and the order dialog of the first
Microsoft order show the same form."""

from __future__ import annotations

import reflex as rx

from .forms import error_callout, hint
from .text import T

MCA_URL = "https://www.microsoft.com/licensing/docs/customeragreement"


def tenant_form(state) -> rx.Component:
    existing = rx.input(name="tenant", id="tenant-reference", placeholder="contoso.onmicrosoft.com", width="100%",
                        aria_label=T("account.tenant.reference"))
    new = rx.vstack(
        rx.hstack(
            rx.input(value=state.tenant_prefix, on_change=state.set_tenant_prefix, id="tenant-prefix",
                     aria_label=T("account.tenant.prefix"), width="100%", auto_complete="off"),
            rx.text(".onmicrosoft.com", size="2", color=rx.color("gray", 11), white_space="nowrap"),
            rx.button(T("account.tenant.check"), type="button", variant="soft", on_click=state.check_tenant_domain,
                      id="tenant-check"),
            align="center", spacing="2", width="100%",
        ),
        rx.cond(state.tenant_domain_note != "",
                rx.text(state.tenant_domain_note, size="2", id="tenant-domain-note",
                        color=rx.cond(state.tenant_domain_free, rx.color("green", 11), rx.color("gray", 11))),
                rx.fragment()),
        hint("account.tenant.prefix_hint"),
        spacing="2", width="100%",
    )
    return rx.form(
        rx.vstack(
            hint("account.tenant.hint"),
            rx.radio_group.root(
                rx.hstack(
                    rx.radio_group.item(value="existing", id="tenant-mode-existing"),
                    rx.text(T("account.tenant.mode_existing"), size="2"),
                    rx.radio_group.item(value="new", id="tenant-mode-new"),
                    rx.text(T("account.tenant.mode_new"), size="2"),
                    spacing="2", align="center", wrap="wrap",
                ),
                value=state.tenant_mode, on_change=state.set_tenant_mode, aria_label=T("account.tenant.title"),
            ),
            rx.cond(state.tenant_mode == "new", new, existing),
            rx.hstack(
                rx.checkbox(name="accepted", id="tenant-accept"),
                rx.text(T("account.tenant.accept"), " ",
                        rx.link(T("account.tenant.mca"), href=MCA_URL, is_external=True), size="2"),
                align="start", spacing="2",
            ),
            error_callout(state.tenant_error, "tenant-error"),
            rx.button(rx.cond(state.tenant_mode == "new", T("account.tenant.create"), T("account.tenant.link")),
                      type="submit", id="tenant-submit", loading=state.tenant_busy),
            spacing="3", width="100%",
        ),
        on_submit=state.submit_tenant,
        reset_on_submit=False,
        width="100%",
        id="tenant-form",
    )


def tenant_admin_note(state) -> rx.Component:
    """A created tenant's administrator account, once."""
    return rx.cond(state.tenant_admin != "",
                   rx.callout(state.tenant_admin, icon="key-round", color_scheme="green", size="1", width="100%",
                              id="tenant-admin"),
                   rx.fragment())
