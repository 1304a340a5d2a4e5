"""/catalog — the storefront: products by category and vendor with their billing variants (monthly,
yearly, yearly billed monthly, pay-as-you-go, free trials), search, and ordering: choose the
variant and the quantity, see what is charged now and later, confirm. A missing balance shows the
shortfall with a top-up link and an invoice for exactly that amount."""

from __future__ import annotations

import reflex as rx

from ..components import (
    T, back_button, button_row, close_button, empty_box, error_callout, field_label, filter_bar, labelled, page_header,
    panel_page, quote_confirm, search_form, step_dialog, when_loaded,
)
from ..components.layout import storefront_layout
from ..components.tenant import tenant_admin_note, tenant_form
from ..state.base import BaseState
from ..state.catalog import CatalogState as S
from ..state.guest_catalog import GuestOrderState as G

YES = "1"


def toolbar() -> rx.Component:
    return filter_bar(
        search_form(S, placeholder_key="catalog.search", input_id="catalog-search", width="20rem"),
        rx.select.root(
            rx.select.trigger(id="catalog-category", min_width="12rem", aria_label=T("a11y.category_filter")),
            rx.select.content(
                rx.select.item(T("catalog.all_categories"), value="all"),
                rx.foreach(S.category_options, lambda c: rx.select.item(c, value=c)),
            ),
            value=S.category,
            on_change=S.set_category,
        ),
        margin_bottom="1.5rem",
    )


def order_button(pl, state) -> rx.Component:
    """Buy / Try of one plan: opens ``state``'s order dialog (the customer's, or the visitor's)."""
    return rx.button(rx.cond(pl.is_trial == YES, T("catalog.try"), T("catalog.buy")), size="1",
                     variant=rx.cond(pl.is_trial == YES, "soft", "solid"), min_width="6.5rem",
                     on_click=state.open_order(pl.id), class_name="order-plan", data_plan=pl.code)


def plan_row(pl, guest: bool = False) -> rx.Component:
    return rx.flex(
        rx.vstack(
            rx.hstack(
                rx.text(pl.name, size="2", weight="medium"),
                rx.cond(pl.is_trial == YES, rx.badge(T("catalog.trial_badge"), color_scheme="blue", variant="soft"),
                        rx.fragment()),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            rx.text(rx.cond(pl.trial != "", pl.trial, pl.model), size="1", color=rx.color("gray", 11)),
            spacing="0",
            min_width="0",
            flex="1",
        ),
        rx.vstack(
            rx.text(pl.price, size="2", weight="bold", style={"white_space": "nowrap"}),
            rx.cond(pl.price_org != "", rx.text("≈ ", pl.price_org, size="1", color=rx.color("gray", 11),
                                                style={"white_space": "nowrap"}), rx.fragment()),
            rx.cond(pl.period_price != "", rx.text(pl.period_price, size="1", color=rx.color("gray", 11),
                                                   style={"white_space": "nowrap"}), rx.fragment()),
            spacing="0",
            align="end",
        ),
        order_button(pl, G) if guest else rx.cond(BaseState.can_write, order_button(pl, S), rx.fragment()),
        justify="between",
        align="center",
        gap="3",
        width="100%",
        padding_y="0.5rem",
        border_top=f"1px solid {rx.color('gray', 4)}",
        class_name="plan-row",
    )


def product_card(p, guest: bool = False) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.text(p.vendor, size="1", weight="bold", color=rx.color("accent", 11), class_name="vendor-title",
                        text_transform="uppercase", letter_spacing="0.04em"),
                rx.cond(p.has_trial == YES, rx.badge(T("catalog.has_trial"), color_scheme="blue", variant="soft"),
                        rx.fragment()),
                justify="between",
                align="center",
                width="100%",
            ),
            rx.heading(p.name, size="3", as_="h3"),
            rx.cond(p.description != "", rx.text(p.description, size="2", color=rx.color("gray", 11)),
                    rx.fragment()),
            rx.spacer(),
            rx.vstack(rx.foreach(p.plans, lambda pl: plan_row(pl, guest)), spacing="0", width="100%"),
            spacing="2",
            width="100%",
            height="100%",
        ),
        width="100%",
        class_name="product-card",
    )


def catalog_body(guest: bool = False) -> rx.Component:
    return rx.cond(
        S.count > 0,
        rx.vstack(
            rx.foreach(
                S.categories,
                lambda c: rx.vstack(
                    rx.heading(c.name, size="5", as_="h2", class_name="category-title"),
                    rx.grid(rx.foreach(c.products, lambda p: product_card(p, guest)),
                            columns=rx.breakpoints(initial="1", md="2", xl="3"), spacing="4", width="100%"),
                    spacing="3",
                    width="100%",
                    margin_bottom="2rem",
                ),
            ),
            spacing="0",
            width="100%",
        ),
        empty_box("catalog.nothing_found", "catalog-empty"),
    )


def order_form() -> rx.Component:
    return rx.vstack(
        field_label("catalog.order.variant"),
        rx.select.root(
            rx.select.trigger(width="100%", id="order-variant", aria_label=T("catalog.order.variant")),
            rx.select.content(rx.foreach(S.order_variants, lambda v: rx.select.item(v["label"], value=v["id"]))),
            value=S.order_plan_id,
            on_change=S.set_order_plan,
        ),
        field_label("catalog.order.quantity", "order-qty"),
        rx.input(value=S.order_qty, on_change=S.set_order_qty, id="order-qty", type="number", min="1", step="1",
                 input_mode="numeric", width="8rem", size="3"),
        rx.cond(S.order_is_trial,
                rx.checkbox(T("catalog.order.trial_convert"), checked=S.order_trial_convert,
                            on_change=S.set_order_trial_convert, id="order-trial-convert"),
                rx.fragment()),
        error_callout(S.order_error, "order-error"),
        button_row(close_button(), rx.button(T("subscriptions.qty.preview"), on_click=S.preview_order,
                                             id="order-preview")),
        spacing="2",
        width="100%",
    )


def order_confirm() -> rx.Component:
    p = S.order_preview
    return quote_confirm(
        T("catalog.order.summary", plan=p["plan"], quantity=p["quantity"]), p, "order",
        rx.cond(p["rate"] != "", rx.text(p["rate"], size="1", color=rx.color("gray", 11)), rx.fragment()),
        rx.text(T("catalog.order.available", amount=p["available"]), size="1", color=rx.color("gray", 11)),
        tenant_admin_note(S),
        rx.cond(p["manual"] != "", rx.callout(p["manual"], icon="clock", color_scheme="amber", size="1", width="100%",
                                              id="order-manual"), rx.fragment()),
        error_callout(S.order_error, "order-changed"),
        on_back=S.order_back, confirm_key="catalog.order.confirm", on_confirm=S.confirm_order, busy=S.order_busy,
        shortfall=(S.request_order_invoice, S.order_invoice),
    )


def order_tenant() -> rx.Component:
    """The first Microsoft order asks for the organisation's Microsoft tenant (or says it waits for
    Microsoft's confirmation)."""
    return rx.vstack(
        rx.cond(S.order_tenant == "unconfirmed",
                rx.callout(T("catalog.order.tenant_unconfirmed"), icon="clock", color_scheme="amber", size="1",
                           width="100%", id="order-tenant-unconfirmed"),
                rx.vstack(rx.callout(T("catalog.order.tenant_needed"), icon="info", size="1", width="100%",
                                     id="order-tenant-needed"),
                          tenant_form(S), spacing="3", width="100%")),
        button_row(back_button(S.order_back), close_button("common.close"), margin_top="0"),
        spacing="3",
        width="100%",
    )


def order_done() -> rx.Component:
    return rx.vstack(
        rx.cond(S.order_queued,
                rx.callout(T("catalog.order.queued"), icon="clock", color_scheme="amber", width="100%", id="order-queued"),
                rx.callout(T("catalog.order.done"), icon="circle-check", color_scheme="green", width="100%",
                           id="order-done")),
        button_row(rx.link(rx.button(T("catalog.order.open")), href=S.order_sub_href, id="order-open-sub"),
                   close_button("common.close"), margin_top="0"),
        spacing="3",
        width="100%",
    )


def order_dialog() -> rx.Component:
    return step_dialog(
        T("catalog.order.title"),
        rx.match(S.order_step, ("tenant", order_tenant()), ("confirm", order_confirm()), ("done", order_done()),
                 order_form()),
        description=S.order_product,
        max_width="32rem",
        open=S.order_open,
        on_open_change=S.set_order_open,
    )


# --- a visitor without a session -------------------------------------------------------------

def guest_field(name: str, label_key: str, **kw) -> rx.Component:
    control = rx.input(value=G.form[name], on_change=lambda v: G.set_field(name, v), id=f"guest-{name}",
                       width="100%", **kw)
    return labelled(label_key, control, f"guest-{name}")


def guest_error() -> rx.Component:
    return error_callout(G.error, "guest-error")


def guest_form() -> rx.Component:
    return rx.vstack(
        rx.text(T("guest.order.intro"), size="2", color=rx.color("gray", 11)),
        guest_field("email", "guest.field.email", type="email", auto_complete="email", max_length=254),
        guest_field("name", "guest.field.name", auto_complete="name", max_length=255),
        guest_field("org_name", "guest.field.org_name", auto_complete="organization", max_length=255),
        rx.flex(
            rx.box(guest_field("tax_id", "guest.field.tax_id", input_mode="numeric", max_length=11), flex="2"),
            rx.box(guest_field("quantity", "catalog.order.quantity", type="number", min="1", step="1",
                               input_mode="numeric"), flex="1"),
            gap="3",
            width="100%",
        ),
        guest_error(),
        button_row(close_button(), rx.button(T("subscriptions.qty.preview"), on_click=G.preview_order,
                                             id="guest-preview")),
        spacing="3",
        width="100%",
    )


def guest_confirm() -> rx.Component:
    p = G.preview
    return quote_confirm(
        p["summary"], p, "guest",
        rx.text(T("guest.order.for", org=p["org"], email=p["email"]), size="2", color=rx.color("gray", 11)),
        guest_error(),
        on_back=G.back, confirm_key="catalog.order.confirm", on_confirm=G.confirm_order, busy=G.busy,
    )


def guest_done() -> rx.Component:
    d = G.done
    return rx.vstack(
        rx.callout(T("guest.done.check_mail", email=d["email"]), icon="mail-check", color_scheme="green",
                   width="100%", id="guest-done"),
        rx.cond(d["trial"] != "", rx.text(d["trial"], size="2", id="guest-done-trial"), rx.fragment()),
        rx.cond(d["active"] != "", rx.text(d["active"], size="2"), rx.fragment()),
        rx.cond(d["invoice"] != "", rx.callout(d["invoice"], icon="receipt", size="1", width="100%",
                                               id="guest-done-invoice"), rx.fragment()),
        button_row(rx.link(rx.button(T("guest.header.sign_in"), variant="soft"), href="/login"),
                   rx.dialog.close(rx.button(T("common.close"))), margin_top="0"),
        spacing="3",
        width="100%",
    )


def guest_order_dialog() -> rx.Component:
    return step_dialog(
        T("catalog.order.title"),
        rx.match(G.step, ("confirm", guest_confirm()), ("done", guest_done()), guest_form()),
        description=(G.product, " — ", G.plan),
        max_width="32rem",
        content_id="guest-order-dialog",
        open=G.open,
        on_open_change=G.set_open,
    )


def guest_catalog() -> rx.Component:
    """/catalog for a visitor: the same grid in the storefront frame, ordering creates an account."""
    return storefront_layout(
        rx.vstack(
            page_header("catalog.title", subtitle=T("guest.subtitle")),
            when_loaded(S.loaded, rx.vstack(toolbar(), catalog_body(guest=True), spacing="0", width="100%")),
            guest_order_dialog(),
            spacing="0",
            width="100%",
            id="guest-catalog",
        ),
        language_switch_of=S.set_guest_locale,
    )


@panel_page("/catalog", title_key="catalog.title", section="catalog", on_load=S.load,
            guest_view=(S.mode, guest_catalog))
def catalog_page() -> rx.Component:
    return rx.vstack(
        page_header("catalog.title", subtitle=T("catalog.subtitle")),
        when_loaded(
            S.loaded,
            rx.vstack(
                toolbar(),
                rx.cond(~BaseState.can_write,
                        rx.callout(T("catalog.readonly"), icon="lock", size="1", width="100%", margin_bottom="1rem",
                                   id="catalog-read-only"),
                        rx.fragment()),
                catalog_body(),
                spacing="0",
                width="100%",
            ),
        ),
        order_dialog(),
        spacing="0",
        width="100%",
    )
