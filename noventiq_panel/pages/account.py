"""/account — the organisation's details, the Users tab and the Activity tab (the audit trail).

Read-only roles see the same tabs with disabled fields and no action buttons; the handlers and
the services refuse their changes anyway.
"""

from __future__ import annotations

import reflex as rx

from ..components import (
    Column, T, button_row, close_button, confirm_dialog, data_table, date_input, error_callout, field_label, hint,
    labelled,
    page_header, panel_page, read_only_note, section_card, step_dialog, tab_panel, table_box, when_loaded,
)
from ..components.tenant import tenant_admin_note, tenant_form
from ..state.account import ROLES, AccountState
from ..state.activity import CATEGORIES as ACTIVITY_CATEGORIES
from ..state.activity import ActivityState


def detail_input(label_key: str, name: str, *, textarea: bool = False, hint_key: str | None = None) -> rx.Component:
    common = dict(
        name=name,
        id=f"org-{name}",
        default_value=AccountState.details[name],
        read_only=~AccountState.can_write,
        disabled=~AccountState.can_write,
        width="100%",
    )
    control = rx.text_area(rows="3", **common) if textarea else rx.input(size="2", **common)
    return labelled(label_key, control, f"org-{name}", hint_key=hint_key)


def info_row(label_key: str, value) -> rx.Component:
    return rx.hstack(
        rx.text(T(label_key), size="2", color=rx.color("gray", 11)),
        rx.text(value, size="2", weight="medium", text_align="right", style={"font_variant_numeric": "tabular-nums"}),
        justify="between",
        width="100%",
        gap="3",
    )


def details_tab() -> rx.Component:
    form = rx.form(
        rx.vstack(
            detail_input("account.field.name", "name"),
            rx.grid(
                detail_input("account.field.tax_id", "tax_id", hint_key="account.field.tax_id_hint"),
                detail_input("account.field.phone", "phone"),
                columns=rx.breakpoints(initial="1", sm="2"),
                spacing="4",
                width="100%",
            ),
            detail_input("account.field.address", "address", textarea=True),
            detail_input("account.field.bank_details", "bank_details", textarea=True),
            rx.heading(T("account.esf_title"), size="3", as_="h2"),
            hint("account.esf_hint"),
            rx.grid(
                detail_input("account.field.vat_reg_code", "vat_reg_code"),
                detail_input("account.field.oked", "oked"),
                detail_input("account.field.bank_mfo", "bank_mfo"),
                detail_input("account.field.bank_account", "bank_account"),
                columns=rx.breakpoints(initial="1", sm="2"),
                spacing="4",
                width="100%",
            ),
            detail_input("account.field.director", "director"),
            rx.cond(
                AccountState.can_write,
                rx.button(T("common.save"), type="submit", loading=AccountState.saving, id="save-details"),
                read_only_note("account.read_only", id="read-only-note"),
            ),
            spacing="4",
            width="100%",
        ),
        on_submit=AccountState.save_details,
        reset_on_submit=False,
        width="100%",
        id="details-form",
        key=AccountState.details["name"] + AccountState.details["tax_id"],
    )
    terms = section_card(
        "account.terms",
        info_row("account.field.billing_mode", AccountState.details["billing_mode"]),
        info_row("account.field.currency", AccountState.details["currency"]),
        rx.cond(
            AccountState.details["postpaid"] != "",
            info_row("account.field.credit_limit", AccountState.details["credit_limit"]),
            rx.fragment(),
        ),
        info_row("account.field.low_balance_threshold", AccountState.details["low_balance_threshold"]),
        info_row("account.field.timezone", AccountState.details["timezone"]),
        info_row("account.field.created_at", AccountState.details["created_at"]),
        info_row("account.field.contract", AccountState.details["contract"]),
        hint("account.terms_hint"),
    )
    return rx.grid(
        rx.card(form, width="100%", grid_column=rx.breakpoints(initial="span 1", md="span 2")),
        rx.vstack(terms, tenant_card(), spacing="4", width="100%"),
        columns=rx.breakpoints(initial="1", md="3"),
        spacing="4",
        width="100%",
        align_items="start",
    )


def tenant_card() -> rx.Component:
    """The organisation's Microsoft tenant and who accepted the Microsoft Customer Agreement; an
    Owner or Administrator links an existing one or asks for a new one here (the other roles read
    it)."""
    linked = rx.vstack(
        info_row("account.tenant.reference", AccountState.tenant["reference"]),
        rx.text(AccountState.tenant["accepted"], size="2", color=rx.color("gray", 11), id="tenant-accepted"),
        rx.cond(AccountState.tenant["verified"] == "",
                rx.callout(rx.cond(AccountState.tenant["pending_new"] != "", T("account.tenant.pending_new"),
                                   T("account.tenant.unverified")),
                           icon="info", size="1", color_scheme="amber", width="100%", id="tenant-unverified"),
                rx.text(T("account.tenant.verified"), size="2", color=rx.color("green", 11), id="tenant-verified")),
        tenant_admin_note(AccountState),
        spacing="2", width="100%", id="tenant-linked",
    )
    form = tenant_form(AccountState)
    return section_card(
        "account.tenant.title",
        rx.cond(AccountState.tenant.contains("reference"), linked,
                rx.cond(AccountState.can_write, form,
                        rx.text(T("account.tenant.none"), size="2", color=rx.color("gray", 11), id="tenant-none"))),
        card_id="tenant-card",
    )


def role_cell(row) -> rx.Component:
    label = row["role_label"]
    editable = AccountState.can_write & (row["is_self"] == "") & (row["active"] != "")
    return rx.cond(
        editable,
        rx.select.root(
            rx.select.trigger(variant="ghost", class_name="role-select", aria_label=T("account.col.role")),
            rx.select.content(*[rx.select.item(T(f"users.role.{r}"), value=r) for r in ROLES]),
            value=row["role"],
            on_change=lambda value: AccountState.change_role(row["id"], value),
            size="2",
        ),
        rx.text(label, size="2"),
    )


def member_actions(row) -> rx.Component:
    deactivate = confirm_dialog(
        rx.button(T("account.deactivate"), size="1", variant="soft", color_scheme="red", class_name="deactivate"),
        title_key="account.deactivate_title",
        body=T("account.deactivate_body", name=row["name"], email=row["email"]),
        confirm_key="account.deactivate",
        on_confirm=AccountState.deactivate(row["id"]),
        confirm_id="confirm-deactivate",
    )
    reactivate = rx.button(T("account.reactivate"), size="1", variant="soft", class_name="reactivate",
                           on_click=AccountState.reactivate(row["id"]))
    return rx.cond(
        AccountState.can_write & (row["is_self"] == ""),
        rx.cond(row["active"] != "", deactivate, reactivate),
        rx.fragment(),
    )


def member_name(row, *more: rx.Component, **props) -> rx.Component:
    """The member's name, "you" for the signed-in user."""
    return rx.hstack(
        rx.text(row["name"], weight="medium", size="2"),
        rx.cond(row["is_self"] != "", rx.badge(T("account.you"), variant="outline", size="1"), rx.fragment()),
        *more,
        spacing="2",
        align="center",
        **props,
    )


def status_badge(row) -> rx.Component:
    return rx.badge(row["status_label"], color_scheme=row["status_color"], variant="soft")


def member_card(row) -> rx.Component:
    """One member at phone width (the table needs more room than a phone has)."""
    return rx.card(
        rx.vstack(
            member_name(row, rx.spacer(), status_badge(row), width="100%"),
            rx.text(row["email"], size="1", color=rx.color("gray", 11)),
            rx.hstack(role_cell(row), rx.spacer(), member_actions(row), align="center", width="100%"),
            spacing="2",
            width="100%",
        ),
        width="100%",
        class_name="member-card",
    )


def members_table() -> rx.Component:
    def render(row) -> rx.Component:
        return rx.table.row(
            rx.table.cell(
                rx.vstack(
                    member_name(row),
                    rx.text(row["email"], size="1", color=rx.color("gray", 11)),
                    spacing="0",
                ),
            ),
            rx.table.cell(role_cell(row)),
            rx.table.cell(status_badge(row)),
            rx.table.cell(rx.text(row["last_login"], size="2", white_space="nowrap"),
                          display=rx.breakpoints(initial="none", md="table-cell")),
            rx.table.cell(member_actions(row), text_align="right"),
            class_name="member-row",
            data_email=row["email"],
        )

    headers = [
        rx.table.column_header_cell(T("account.col.user")),
        rx.table.column_header_cell(T("account.col.role")),
        rx.table.column_header_cell(T("account.col.status")),
        rx.table.column_header_cell(T("account.col.last_login"),
                                    display=rx.breakpoints(initial="none", md="table-cell")),
        rx.table.column_header_cell(""),
    ]
    return table_box(headers, AccountState.members, render, size=None, table_id="members-table",
                     display=rx.breakpoints(initial="none", sm="block"))


def members_list() -> rx.Component:
    return rx.fragment(
        members_table(),
        rx.vstack(rx.foreach(AccountState.members, member_card), spacing="2", width="100%",
                  display=rx.breakpoints(initial="flex", sm="none"), id="members-cards"),
    )


def invite_dialog() -> rx.Component:
    form = rx.form(
        rx.vstack(
            error_callout(AccountState.invite_error, "invite-error"),
            field_label("signin.email", "invite-email"),
            rx.input(name="email", id="invite-email", type="email", required=True, width="100%"),
            field_label("signin.name", "invite-name"),
            rx.input(name="name", id="invite-name", required=True, width="100%"),
            field_label("account.col.role"),
            rx.select.root(
                rx.select.trigger(width="100%", id="invite-role", aria_label=T("account.col.role")),
                rx.select.content(*[rx.select.item(T(f"users.role.{r}"), value=r) for r in ROLES]),
                name="role",
                default_value="admin",
            ),
            hint("account.role_hint"),
            button_row(close_button(type="button"),
                       rx.button(T("account.invite_send"), type="submit", id="invite-submit")),
            spacing="2",
            width="100%",
        ),
        on_submit=AccountState.invite,
        reset_on_submit=False,
        width="100%",
    )
    return step_dialog(
        T("account.invite_title"),
        rx.fragment(rx.dialog.description(T("account.invite_body"), size="2", margin_bottom="1rem"), form),
        trigger=rx.button(rx.icon("user-plus", size=16), T("account.invite"), id="invite-open"),
        open=AccountState.invite_open,
        on_open_change=AccountState.set_invite_open,
    )


def users_tab() -> rx.Component:
    return rx.vstack(
        rx.flex(
            rx.text(T("account.users_intro"), size="2", color=rx.color("gray", 11), max_width="40rem"),
            rx.cond(AccountState.can_write, invite_dialog(), rx.fragment()),
            justify="between",
            align=rx.breakpoints(initial="start", sm="center"),
            gap="3",
            width="100%",
            direction=rx.breakpoints(initial="column", sm="row"),
        ),
        members_list(),
        rx.cond(
            AccountState.is_owner,
            rx.card(rx.vstack(
                rx.hstack(rx.switch(checked=AccountState.require_two_factor,
                                    on_change=AccountState.set_require_two_factor, id="require-two-factor",
                                    aria_label=T("two_factor.require")),
                          rx.text(T("two_factor.require"), size="2", weight="medium"), spacing="2", align="center"),
                rx.text(T("two_factor.require_hint"), size="1", color=rx.color("gray", 11)),
                spacing="2"), width="100%"),
            rx.fragment(),
        ),
        rx.cond(AccountState.can_write, rx.fragment(), read_only_note("account.read_only", width="100%")),
        spacing="4",
        width="100%",
    )


def activity_tab() -> rx.Component:
    """The organisation's audit trail: who did what, when, from which address."""
    S = ActivityState
    filters = rx.form(
        rx.flex(
            labelled("billing.tx.from", date_input("start", "act-start", S.start_shown),
                     "act-start", width="auto"),
            labelled("billing.tx.to", date_input("end", "act-end", S.end_shown),
                     "act-end", width="auto"),
            labelled("activity.category", rx.select.root(
                rx.select.trigger(id="act-category", min_width="10rem", aria_label=T("activity.category")),
                rx.select.content(*[rx.select.item(T(f"activity.category.{c}"), value=c) for c in ACTIVITY_CATEGORIES]),
                name="category", default_value="all"), width="auto"),
            labelled("activity.member", rx.select.root(
                rx.select.trigger(id="act-user", min_width="10rem", aria_label=T("activity.member")),
                rx.select.content(rx.select.item(T("activity.category.all"), value="all"),
                                  rx.foreach(S.people, lambda p: rx.select.item(p["name"], value=p["id"]))),
                name="user", default_value="all"), width="auto"),
            rx.hstack(rx.button(T("billing.apply"), type="submit", id="act-apply"),
                      rx.button(T("billing.reset"), type="reset", variant="soft", color_scheme="gray",
                                on_click=S.reset_filters), spacing="2"),
            gap="3", wrap="wrap", align="end", width="100%",
        ),
        on_submit=S.apply, reset_on_submit=False, width="100%",
    )
    columns = [
        Column("at", "activity.col.at", numeric=True),
        Column("who", "activity.col.who"),
        Column("what", "activity.col.what"),
        Column("details", "activity.col.details", hide_on_phone=True),
        Column("ip", "activity.col.ip", hide_on_phone=True),
    ]
    return rx.vstack(
        filters,
        rx.flex(
            rx.text(T("activity.intro"), size="2", color=rx.color("gray", 11)),
            rx.spacer(),
            rx.button(rx.icon("file-text", size=16), T("billing.tx.export_csv"), variant="soft",
                      on_click=S.export("csv"), loading=S.exporting, id="act-export-csv"),
            rx.button(rx.icon("sheet", size=16), T("billing.tx.export_xlsx"), variant="soft",
                      on_click=S.export("xlsx"), loading=S.exporting, id="act-export-xlsx"),
            gap="2", align="center", wrap="wrap", width="100%",
        ),
        data_table(columns, S.rows, page=S.page, pages=S.pages, on_page=S.go_page, total=S.total,
                   empty_key="activity.empty", table_id="activity-table"),
        spacing="4", width="100%",
    )


@panel_page("/account", title_key="account.title", on_load=[AccountState.load, ActivityState.load])
def account_page() -> rx.Component:
    return rx.vstack(
        page_header("account.title", subtitle=AccountState.org_name),
        when_loaded(
            AccountState.loaded,
            rx.tabs.root(
                rx.tabs.list(
                    rx.tabs.trigger(T("account.tab.details"), value="details", id="tab-details"),
                    rx.tabs.trigger(T("account.tab.users"), value="users", id="tab-users"),
                    rx.tabs.trigger(T("activity.tab"), value="activity", id="tab-activity"),
                ),
                tab_panel("details", details_tab()),
                tab_panel("users", users_tab()),
                tab_panel("activity", activity_tab()),
                value=AccountState.tab,
                on_change=AccountState.set_tab,
                activation_mode="manual",  # one click, one event (focus does not switch too)
                width="100%",
            ),
        ),
        spacing="0",
        width="100%",
    )
