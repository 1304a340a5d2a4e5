"""/subscriptions/[id] — one subscription: Overview, Resources (licence count with a preview and a
confirmation before money moves), Options (auto-renew, suspend/resume, plan change, cancel),
Activation (Markdown), Usage with the "Set budget" dialog (pay-as-you-go) and History (audit).

A foreign or missing id shows "not found". Controls are hidden from read-only roles as a
convenience; the services refuse anyway.
"""

from __future__ import annotations

import reflex as rx

from ..components import (
    T, amount_text, button_row, close_button, confirm_dialog, error_callout, field_label, hint, panel_page,
    quote_confirm, section_card, step_dialog, table_box, when_loaded,
)
from ..state.base import BaseState
from ..state.subscription_detail import SubscriptionDetailState as S
from .subscriptions import quantity_confirm

YES = "1"


def field(label_key: str, value, **props) -> rx.Component:
    return rx.hstack(
        rx.text(T(label_key), size="2", color=rx.color("gray", 11), min_width="12rem"),
        rx.text(value, size="2", weight="medium", **props),
        spacing="3",
        width="100%",
        wrap="wrap",
    )


def header() -> rx.Component:
    return rx.flex(
        rx.vstack(
            rx.link(rx.hstack(rx.icon("arrow-left", size=14), T("subscription.back"), spacing="1", align="center"),
                    href="/subscriptions", size="2"),
            rx.heading(S.d["name"], size=rx.breakpoints(initial="6", sm="7"), id="page-title"),
            rx.hstack(
                rx.badge(S.d["status"], color_scheme=S.d["status_color"], variant="soft", id="sub-status"),
                rx.text(S.d["plan"], size="2", color=rx.color("gray", 11)),
                rx.text("·", color=rx.color("gray", 11)),
                rx.text(S.d["vendor"], size="2", color=rx.color("gray", 11)),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            spacing="1",
        ),
        rx.cond(
            S.d["portal_url"] != "",
            rx.link(rx.button(rx.icon("external-link", size=14), T("subscriptions.portal"), variant="soft"),
                    href=S.d["portal_url"], is_external=True, id="vendor-portal"),
            rx.fragment(),
        ),
        justify="between",
        align=rx.breakpoints(initial="start", sm="center"),
        direction=rx.breakpoints(initial="column", sm="row"),
        gap="3",
        width="100%",
        margin_bottom="1rem",
    )


def scheduled_changes() -> rx.Component:
    return rx.cond(
        S.changes.length() > 0,
        rx.callout.root(
            rx.callout.icon(rx.icon("calendar-clock", size=16)),
            rx.vstack(
                rx.foreach(
                    S.changes,
                    lambda c: rx.hstack(
                        rx.text(c["text"], size="2"),
                        rx.cond(BaseState.can_write,
                                rx.button(T("subscription.change.withdraw"), size="1", variant="ghost",
                                          on_click=S.cancel_change(c["id"]), class_name="withdraw-change"),
                                rx.fragment()),
                        spacing="2",
                        align="center",
                        wrap="wrap",
                    ),
                ),
                spacing="1",
            ),
            color_scheme="blue",
            width="100%",
            id="scheduled-changes",
        ),
        rx.fragment(),
    )


def at_vendor() -> rx.Component:
    """What waits for the vendor (an order awaiting activation, a change) and its last refusal."""
    return rx.fragment(
        rx.cond(S.at_vendor.length() > 0,
                rx.callout.root(rx.callout.icon(rx.icon("clock", size=16)),
                                rx.vstack(rx.foreach(S.at_vendor, lambda t: rx.text(t, size="2")), spacing="1"),
                                color_scheme="amber", width="100%", id="at-vendor"),
                rx.fragment()),
        rx.cond(S.d_refused != "",
                rx.callout(S.d_refused, icon="circle-x", color_scheme="red", width="100%", id="vendor-refused"),
                rx.fragment()),
    )


def overview_tab() -> rx.Component:
    return rx.vstack(
        at_vendor(),
        scheduled_changes(),
        rx.cond(S.d["grace_until"] != "",
                rx.callout(T("subscription.grace", date=S.d["grace_until"]), icon="triangle-alert",
                           color_scheme="orange", width="100%", id="grace"),
                rx.fragment()),
        section_card(
            "subscription.overview",
            field("subscription.field.product", S.d["product"]),
            field("subscription.field.plan", S.d["plan"]),
            field("subscription.field.model", S.d["model"]),
            rx.cond(S.d["is_licence"] == YES, field("subscription.field.quantity", S.d["quantity"]), rx.fragment()),
            rx.cond(S.d["is_licence"] == YES, field("subscription.field.term_start", S.d["term_start"]),
                    rx.fragment()),
            rx.cond(S.d["is_trial"] == YES,
                    field("subscription.field.trial_ends", S.d["trial_ends"]),
                    rx.cond(S.d["is_licence"] == YES, field("subscription.field.term_end", S.d["term_end"]),
                            rx.fragment())),
            rx.cond(S.d["next_billing"] != "", field("subscription.field.next_billing", S.d["next_billing"]),
                    rx.fragment()),
            rx.cond(S.d["recurring"] != "", field("subscription.field.recurring", S.d["recurring"]),
                    rx.fragment()),
            rx.cond(S.d["period"] != "", field("subscription.field.period", S.d["period"]), rx.fragment()),
            rx.cond(S.d["show_auto_renew"] == YES,
                    field("subscription.field.auto_renew",
                          rx.cond(S.d["auto_renew"] == YES, T("common.yes"), T("common.no"))),
                    rx.fragment()),
            field("subscription.field.vendor_ref", S.d["vendor_ref"]),
            field("subscription.field.created", S.d["created"]),
        ),
        rx.cond(S.d["description"] != "", section_card("subscription.about", rx.text(S.d["description"], size="2")),
                rx.fragment()),
        spacing="4",
        width="100%",
    )


def resources_form() -> rx.Component:
    return rx.vstack(
        field_label("subscriptions.qty.new", "res-qty"),
        rx.form(
            rx.hstack(
                # the number goes with the preview (the form): no event per keystroke
                rx.input(name="quantity", default_value=S.qty_value, key=S.qty_value, id="res-qty", type="number",
                         min=S.d["min"], max=S.d["max"], step="1", input_mode="numeric", width="8rem", size="3"),
                rx.button(T("subscriptions.qty.preview"), type="submit", id="res-preview"),
                spacing="2",
                align="center",
            ),
            on_submit=S.preview_qty,
            reset_on_submit=False,
        ),
        rx.text(T("subscriptions.qty.range", min=S.d["min"], max=S.d["max"]), size="1", color=rx.color("gray", 11)),
        error_callout(S.qty_error, "res-error"),
        spacing="2",
        width="100%",
    )


def headers(*keys: str) -> list[rx.Component]:
    return [rx.table.column_header_cell(T(k)) for k in keys]


def batches_table() -> rx.Component:
    return rx.cond(
        S.batches.length() > 0,
        table_box(
            [rx.table.column_header_cell(T("subscription.batch.quantity"), text_align="right"),
             *headers("subscription.batch.source", "subscription.batch.added", "subscription.batch.window")],
            S.batches,
            lambda b: rx.table.row(
                rx.table.cell(amount_text(b["quantity"]), text_align="right"),
                rx.table.cell(b["source"]),
                rx.table.cell(b["added"]),
                rx.table.cell(rx.badge(b["window"], color_scheme=rx.cond(b["in_window"] == YES, "green", "gray"),
                                       variant="soft")),
                class_name="batch-row",
            ),
            size="1",
        ),
        rx.fragment(),
    )


def resources_tab() -> rx.Component:
    return rx.vstack(
        at_vendor(),  # a decrease waiting for the vendor is said where it was asked
        scheduled_changes(),
        section_card(
            "subscription.resources",
            field("subscription.field.quantity", S.d["quantity"], id="res-current"),
            field("subscription.field.refundable", S.d["refundable"]),
            hint("subscriptions.qty.window_note"),
            rx.cond(
                (S.d["can_qty"] == YES) & BaseState.can_write,
                rx.cond(S.qty_step == "confirm", quantity_confirm(S, "res", end=False), resources_form()),
                rx.text(T("subscription.resources.readonly"), size="2", color=rx.color("gray", 11)),
            ),
        ),
        section_card("subscription.batches", hint("subscription.batches_hint"), batches_table()),
        spacing="4",
        width="100%",
    )


def amount_now(p, amount_id: str) -> rx.Component:
    """The exact sum charged or refunded now (``p["amount_label"]``, ``p["amount"]``)."""
    return rx.hstack(
        rx.text(p["amount_label"], size="2", color=rx.color("gray", 11)),
        amount_text(p["amount"], weight="bold", id=amount_id),
        justify="between",
        width="100%",
        wrap="wrap",
    )


def plan_confirm() -> rx.Component:
    """The confirmation of a plan change: when it takes effect (at once, or at the renewal and why),
    the exact amount now, the price from then on, the shortfall; a stale preview's message."""
    p = S.plan_preview
    return quote_confirm(
        p["summary"], p, "plan",
        amount_now(p, "plan-amount"),
        rx.cond(p["recurring"] != "", rx.text(p["recurring"], size="2", id="plan-recurring"), rx.fragment()),
        error_callout(S.plan_error, "plan-changed"),
        on_back=S.set_plan_open(False), confirm_key="subscription.plan.confirm", on_confirm=S.confirm_plan,
        busy=S.action_busy, shortfall=(None, None),
    )


def plan_dialog() -> rx.Component:
    return step_dialog(
        T("subscription.plan.title"),
        rx.cond(S.plan_preview.contains("now"), plan_confirm(), rx.fragment()),
        description=(S.d["name"], " · ", S.d["plan"]),
        max_width="32rem",
        content_id="plan-dialog",
        open=S.plan_open,
        on_open_change=S.set_plan_open,
    )


def plan_change() -> rx.Component:
    return section_card(
        "subscription.plan.title",
        rx.text(T("subscription.plan.rules"), size="2", color=rx.color("gray", 11)),
        rx.hstack(
            rx.select.root(
                rx.select.trigger(placeholder=T("subscription.plan.choose"), id="plan-choice", min_width="16rem",
                                  max_width="100%", aria_label=T("subscription.plan.choose")),
                rx.select.content(rx.foreach(S.plan_options, lambda o: rx.select.item(o["label"], value=o["code"]))),
                value=S.plan_choice,
                on_change=S.set_plan_choice,
            ),
            rx.button(T("subscriptions.qty.preview"), on_click=S.preview_plan, disabled=S.plan_choice == "",
                      variant="soft", id="plan-preview"),
            spacing="2",
            wrap="wrap",
        ),
        plan_dialog(),
        card_id="plan-change",
    )


def cancel_block() -> rx.Component:
    p = S.cancel_preview
    return section_card(
        "subscription.cancel.title",
        rx.text(T("subscription.cancel.hint"), size="2", color=rx.color("gray", 11)),
        rx.cond(
            p.contains("text"),
            rx.vstack(
                rx.callout(p["text"], icon="triangle-alert", color_scheme="red", size="1", width="100%",
                           id="cancel-preview-text"),
                amount_now(p, "cancel-amount"),
                error_callout(S.cancel_error, "cancel-changed"),
                rx.hstack(
                    rx.button(T("common.back"), variant="soft", color_scheme="gray", on_click=S.close_cancel),
                    rx.button(T("subscription.cancel.confirm"), color_scheme="red", on_click=S.confirm_cancel,
                              loading=S.action_busy, id="cancel-confirm"),
                    spacing="3",
                ),
                spacing="2",
                width="100%",
            ),
            rx.button(T("subscription.cancel.button"), color_scheme="red", variant="soft", on_click=S.preview_cancel,
                      id="cancel-preview"),
        ),
    )


def switch_section(title_key: str, flag: str, on_change, switch_id: str, text_key: str) -> rx.Component:
    """A setting of the subscription that is on or off (``S.d[flag]``)."""
    return section_card(
        title_key,
        rx.hstack(
            rx.switch(checked=S.d[flag] == YES, on_change=on_change, id=switch_id, aria_label=T(text_key)),
            rx.text(T(text_key), size="2"),
            spacing="2",
            align="center",
        ),
    )


def options_tab() -> rx.Component:
    return rx.cond(
        BaseState.can_write,
        rx.vstack(
            rx.cond(
                S.d["show_auto_renew"] == YES,
                switch_section("subscription.field.auto_renew", "auto_renew", S.toggle_auto_renew, "auto-renew",
                               "subscriptions.auto_renew_hint"),
                rx.fragment(),
            ),
            rx.cond(
                (S.d["is_trial"] == YES) & (S.d["ended"] != YES),
                switch_section("subscription.trial.title", "trial_convert", S.toggle_trial_convert, "trial-convert",
                               "subscription.trial.convert"),
                rx.fragment(),
            ),
            rx.cond(
                (S.d["can_suspend"] == YES) | (S.d["can_resume"] == YES),
                section_card(
                    "subscription.suspend.title",
                    rx.text(T("subscription.suspend.hint"), size="2", color=rx.color("gray", 11)),
                    rx.cond(
                        S.d["can_resume"] == YES,
                        confirm_dialog(rx.button(rx.icon("play", size=14), T("subscription.resume"), id="resume"),
                                       title_key="subscription.resume", body=T("subscription.resume.body"),
                                       confirm_key="subscription.resume", on_confirm=S.resume, color_scheme="green",
                                       confirm_id="resume-confirm"),
                        confirm_dialog(rx.button(rx.icon("pause", size=14), T("subscription.suspend"),
                                                 variant="soft", id="suspend"),
                                       title_key="subscription.suspend", body=T("subscription.suspend.body"),
                                       confirm_key="subscription.suspend", on_confirm=S.suspend,
                                       confirm_id="suspend-confirm"),
                    ),
                ),
                rx.fragment(),
            ),
            rx.cond(S.d["can_change_plan"] == YES, plan_change(), rx.fragment()),
            rx.cond(S.d["can_cancel"] == YES, cancel_block(), rx.fragment()),
            rx.cond(S.d["cancel_at_term_end"] == YES,
                    rx.callout(T("subscription.cancel.scheduled", date=S.d["term_end_text"]), icon="calendar-x",
                               color_scheme="orange", width="100%"),
                    rx.fragment()),
            spacing="4",
            width="100%",
        ),
        rx.callout(T("subscription.readonly"), icon="lock", width="100%"),
    )


def activation_tab() -> rx.Component:
    return section_card(
        "subscription.activation",
        rx.cond(S.d["activation_md"] != "", rx.markdown(S.d["activation_md"], use_raw=False),
                rx.text(T("subscription.activation.none"), size="2", color=rx.color("gray", 11))),
        card_id="activation",
    )


def threshold_row(t: rx.Var, index: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.input(value=t["percent"], on_change=lambda v: S.set_threshold_percent(index.to_string(), v),
                 input_mode="decimal", width="6rem", class_name="threshold-percent",
                 aria_label=T("a11y.threshold_percent")),
        rx.text("%", size="2"),
        rx.select.root(
            rx.select.trigger(class_name="threshold-type", aria_label=T("a11y.threshold_type")),
            rx.select.content(rx.select.item(T("budget.actual"), value="actual"),
                              rx.select.item(T("budget.forecast"), value="forecast")),
            value=t["type"],
            on_change=lambda v: S.set_threshold_type(index.to_string(), v),
        ),
        rx.icon_button(rx.icon("trash-2", size=14), variant="ghost", color_scheme="red",
                       on_click=S.remove_threshold(index.to_string()), aria_label=T("a11y.remove_threshold")),
        spacing="2",
        align="center",
    )


def budget_dialog() -> rx.Component:
    return step_dialog(
        T("budget.title"),
        rx.vstack(
            rx.text(T("budget.amount", currency=S.d["currency"]), as_="label",
                    custom_attrs={"htmlFor": "budget-amount"}, size="2", weight="medium"),
            rx.input(value=S.budget_amount, on_change=S.set_budget_amount, id="budget-amount",
                     input_mode="decimal", width="100%"),
            field_label("budget.thresholds"),
            rx.foreach(S.budget_thresholds, threshold_row),
            rx.cond(S.budget_thresholds.length() < 5,
                    rx.button(rx.icon("plus", size=14), T("budget.add_threshold"), size="1", variant="soft",
                              on_click=S.add_threshold, id="add-threshold"),
                    rx.fragment()),
            field_label("budget.recipients"),
            rx.foreach(S.budget_members, lambda m: rx.checkbox(
                m["label"], checked=S.budget_recipients.contains(m["id"]),
                on_change=lambda v: S.toggle_recipient(m["id"], v), class_name="budget-recipient")),
            field_label("budget.extra_emails", "budget-emails"),
            rx.text_area(value=S.budget_emails, on_change=S.set_budget_emails, id="budget-emails",
                         placeholder="cfo@example.com, it@example.com", width="100%"),
            error_callout(S.budget_error, "budget-error"),
            button_row(
                rx.cond(S.budget.contains("amount"),
                        rx.button(T("budget.remove"), color_scheme="red", variant="soft", on_click=S.remove_budget,
                                  id="budget-remove"),
                        rx.fragment()),
                rx.spacer(),
                close_button(),
                rx.button(T("common.save"), on_click=S.save_budget, loading=S.budget_busy, id="budget-save"),
            ),
            spacing="2",
            width="100%",
        ),
        description=T("budget.hint"),
        max_width="34rem",
        open=S.budget_open,
        on_open_change=S.set_budget_open,
    )


def usage_tab() -> rx.Component:
    u = S.usage
    return rx.vstack(
        section_card(
            "subscription.usage",
            rx.cond(
                u.contains("total"),
                rx.vstack(
                    field("subscription.usage.month", u["month"]),
                    field("subscription.usage.total", u["total"], id="usage-total"),
                    rx.cond(u["budget"] != "",
                            field("subscription.usage.of_budget", T("subscription.usage.budget_line",
                                                                    budget=u["budget"], percent=u["percent"])),
                            rx.fragment()),
                    rx.foreach(S.usage_services, lambda s: rx.hstack(
                        rx.text(s["name"], size="2"), rx.spacer(), amount_text(s["amount"]), width="100%")),
                    rx.link(T("subscription.usage.details"), href=u["analytics_href"], size="2"),
                    spacing="2",
                    width="100%",
                ),
                rx.text(T("subscription.usage.none"), size="2", color=rx.color("gray", 11)),
            ),
        ),
        section_card(
            "budget.title",
            rx.cond(
                S.budget.contains("amount"),
                rx.vstack(
                    field("budget.amount_short", S.budget["amount"], id="budget-amount-view"),
                    rx.foreach(S.budget_thresholds_view, lambda t: rx.badge(t["text"], variant="soft")),
                    field("budget.recipients", S.budget["recipients"]),
                    spacing="2",
                    width="100%",
                ),
                rx.text(T("budget.none"), size="2", color=rx.color("gray", 11)),
            ),
            rx.cond(BaseState.can_write & (S.d["ended"] != YES),
                    rx.button(rx.icon("piggy-bank", size=14), T("budget.set"), on_click=S.open_budget,
                              id="set-budget"),
                    rx.fragment()),
            rx.text(T("budget.only_warns"), size="1", color=rx.color("gray", 11)),
        ),
        budget_dialog(),
        anomalies_card(),
        spacing="4",
        width="100%",
    )


def anomaly_item(a) -> rx.Component:
    return rx.callout.root(
        rx.callout.icon(rx.icon("activity", size=16)),
        rx.vstack(
            rx.text(a["title"], weight="bold", size="2"),
            rx.text(a["text"], size="2"),
            rx.cond(a["services"] != "",
                    rx.text(T("anomaly.services"), ": ", a["services"], size="1"), rx.fragment()),
            rx.cond(a["groups"] != "",
                    rx.text(T("anomaly.resource_groups"), ": ", a["groups"], size="1"), rx.fragment()),
            spacing="1",
        ),
        color_scheme=a["color"],
        width="100%",
        class_name="cost-anomaly",
    )


def anomalies_card() -> rx.Component:
    """The subscription's cost anomalies (newest first) and the switch of their e-mail alerts."""
    return section_card(
        "anomaly.title",
        rx.cond(S.anomalies.length() > 0,
                rx.vstack(rx.foreach(S.anomalies, anomaly_item), spacing="2", width="100%"),
                rx.text(T("anomaly.none"), size="2", color=rx.color("gray", 11), id="anomalies-none")),
        rx.text(T("anomaly.method"), size="1", color=rx.color("gray", 11)),
        rx.cond(
            BaseState.can_write,
            rx.hstack(
                rx.switch(checked=S.anomaly_alerts, on_change=S.toggle_anomaly_alerts, id="anomaly-alerts",
                          aria_label=T("anomaly.setting")),
                rx.text(T("anomaly.setting_hint"), size="2"),
                spacing="2",
                align="center",
            ),
            rx.text(rx.cond(S.anomaly_alerts, T("anomaly.setting_on"), T("anomaly.setting_off")), size="2"),
        ),
        card_id="anomalies",
    )


def history_tab() -> rx.Component:
    return section_card(
        "subscription.history",
        rx.cond(
            S.events.length() > 0,
            table_box(
                headers("subscription.history.when", "subscription.history.what", "subscription.history.who",
                        "subscription.history.details"),
                S.events,
                lambda e: rx.table.row(
                    rx.table.cell(e["when"], white_space="nowrap"),
                    rx.table.cell(e["action"]),
                    rx.table.cell(e["user"]),
                    rx.table.cell(rx.text(e["details"], size="1", color=rx.color("gray", 11))),
                    class_name="history-row",
                ),
                size="1",
            ),
            rx.text(T("table.empty"), size="2", color=rx.color("gray", 11)),
        ),
    )


def tabs() -> rx.Component:
    return rx.tabs.root(
        rx.tabs.list(
            rx.tabs.trigger(T("subscription.tab.overview"), value="overview", id="tab-overview"),
            rx.cond(S.d["is_licence"] == YES,
                    rx.tabs.trigger(T("subscription.tab.resources"), value="resources", id="tab-resources"),
                    rx.fragment()),
            rx.tabs.trigger(T("subscription.tab.options"), value="options", id="tab-options"),
            rx.tabs.trigger(T("subscription.tab.activation"), value="activation", id="tab-activation"),
            rx.cond(S.d["is_payg"] == YES,
                    rx.tabs.trigger(T("subscription.tab.usage"), value="usage", id="tab-usage"),
                    rx.fragment()),
            rx.tabs.trigger(T("subscription.tab.history"), value="history", id="tab-history"),
            wrap="wrap",
        ),
        rx.box(
            rx.tabs.content(overview_tab(), value="overview"),
            rx.tabs.content(resources_tab(), value="resources"),
            rx.tabs.content(options_tab(), value="options"),
            rx.tabs.content(activation_tab(), value="activation"),
            rx.tabs.content(usage_tab(), value="usage"),
            rx.tabs.content(history_tab(), value="history"),
            padding_top="1rem",
            width="100%",
        ),
        value=S.tab,
        on_change=S.set_tab,
        activation_mode="manual",  # one click, one event (focus does not switch too)
        width="100%",
    )


def not_found() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon("search-x", size=32, color=rx.color("gray", 9)),
            rx.heading(T("subscription.not_found"), size="5", id="page-title"),
            rx.text(T("subscription.not_found_hint"), size="2", color=rx.color("gray", 11)),
            rx.link(rx.button(T("subscription.back")), href="/subscriptions"),
            spacing="3",
            align="center",
        ),
        padding="3rem",
        width="100%",
        id="not-found",
    )


@panel_page("/subscriptions/[id]", title_key="subscription.title", section="subscriptions", on_load=S.load)
def subscription_detail_page() -> rx.Component:
    return when_loaded(
        S.loaded,
        rx.cond(S.not_found, not_found(), rx.vstack(header(), tabs(), spacing="0", width="100%")),
    )
