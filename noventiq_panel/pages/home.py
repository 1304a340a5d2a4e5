"""/ — the home page: balance, consumption, quick links, what expires soon, rates, help, alerts."""

from __future__ import annotations

import reflex as rx

from ..components import T, amount_line, amount_text, big_amount, card_title, page_header, panel_page, when_loaded
from ..state.home import HomeState


def card(title_key: str, *children: rx.Component, icon: str | None = None, card_id: str | None = None,
         **props) -> rx.Component:
    return rx.card(
        rx.vstack(
            card_title(title_key, icon),
            *children,
            spacing="2",
            width="100%",
            height="100%",
        ),
        width="100%",
        id=card_id,
        **props,
    )


def alerts() -> rx.Component:
    return rx.foreach(
        HomeState.alerts,
        lambda a: rx.callout.root(
            rx.callout.icon(rx.icon("triangle-alert", size=16)),
            rx.callout.text(
                a["text"],
                " ",
                rx.link(T("home.alert.open"), href=a["href"], weight="medium"),
            ),
            color_scheme=a["color"],
            role="alert",
            width="100%",
            class_name="home-alert",
            data_kind=a["kind"],
        ),
    )


def invitations() -> rx.Component:
    return rx.foreach(
        HomeState.invitations,
        lambda i: rx.callout.root(
            rx.callout.icon(rx.icon("mail-plus", size=16)),
            rx.hstack(
                rx.callout.text(i["text"]),
                rx.spacer(),
                rx.button(T("users.invitation.accept"), size="1",
                          on_click=HomeState.accept_invitation(i["id"]), class_name="invitation-accept"),
                rx.button(T("users.invitation.decline"), size="1", variant="soft", color_scheme="gray",
                          on_click=HomeState.decline_invitation(i["id"]), class_name="invitation-decline"),
                spacing="2",
                align="center",
                width="100%",
                flex_wrap="wrap",
            ),
            color_scheme="blue",
            width="100%",
            class_name="home-invitation",
        ),
    )


def balance_card() -> rx.Component:
    return card(
        "home.balance",
        big_amount(HomeState.balance, negative=HomeState.balance_negative, id="balance"),
        rx.cond(
            HomeState.is_postpaid,
            rx.vstack(
                amount_line("home.credit_limit", HomeState.credit_limit, id="credit-limit"),
                amount_line("home.available", HomeState.available, weight="medium", id="available"),
                spacing="1",
                width="100%",
            ),
            rx.text(T("home.prepaid_hint"), size="1", color=rx.color("gray", 11)),
        ),
        rx.spacer(),
        rx.cond(  # a read-only role sees no call to action the services would refuse
            HomeState.can_write,
            rx.link(
                rx.button(rx.icon("plus", size=14), T("home.top_up"), variant="soft", size="2"),
                href="/billing",
                id="top-up-link",
            ),
        ),
        icon="wallet",
        card_id="balance-card",
    )


def consumption_card() -> rx.Component:
    return card(
        "home.consumption",
        rx.text(T("home.month_to_date", month=HomeState.month_label), size="1", color=rx.color("gray", 11)),
        big_amount(HomeState.month_to_date, id="month-to-date"),
        amount_line("home.forecast", HomeState.forecast, weight="medium", id="forecast"),
        rx.spacer(),
        rx.link(T("home.to_analytics"), href="/analytics", size="2"),
        icon="activity",
        card_id="consumption-card",
    )


def quick_link(route: str, icon: str, key: str, link_id: str, primary: bool = False) -> rx.Component:
    return rx.link(
        rx.button(
            rx.icon(icon, size=16),
            T(key),
            variant="solid" if primary else "surface",
            size="3",
            width="100%",
            justify="start",
        ),
        href=route,
        id=link_id,
        width="100%",
    )


def quick_links_card() -> rx.Component:
    return card(
        "home.quick_links",
        quick_link("/subscriptions", "layers", "home.link.subscriptions", "link-subscriptions"),
        quick_link("/billing", "credit-card", "home.link.payments", "link-payments"),
        rx.cond(HomeState.can_write,
                quick_link("/catalog", "shopping-cart", "home.buy_subscription", "link-buy", primary=True)),
        icon="zap",
        card_id="quick-links",
    )


def soon_card() -> rx.Component:
    return card(
        "home.soon.title",
        rx.cond(
            HomeState.soon.length() > 0,
            rx.vstack(
                rx.foreach(
                    HomeState.soon,
                    lambda s: rx.flex(
                        rx.link(s["name"], href=s["href"], weight="medium", size="2", class_name="nq-ellipsis",
                                min_width="0", flex="1", width=rx.breakpoints(initial="100%", sm="auto")),
                        rx.hstack(
                            rx.badge(s["event"], color_scheme=s["color"], variant="soft"),
                            rx.text(s["date"], size="2", style={"white_space": "nowrap"}),
                            spacing="2",
                            align="center",
                        ),
                        justify="between",
                        align=rx.breakpoints(initial="start", sm="center"),
                        direction=rx.breakpoints(initial="column", sm="row"),
                        gap=rx.breakpoints(initial="1", sm="2"),
                        width="100%",
                        padding_y="0.35rem",
                        border_bottom=f"1px solid {rx.color('gray', 4)}",
                        class_name="soon-item",
                    ),
                ),
                spacing="0",
                width="100%",
            ),
            rx.text(T("home.soon.none"), size="2", color=rx.color("gray", 11)),
        ),
        rx.link(T("home.soon.all"), href="/subscriptions", size="2"),
        icon="calendar-clock",
        card_id="soon-card",
    )


def rates_card() -> rx.Component:
    return card(
        "home.rates.title",
        rx.cond(
            HomeState.rates.length() > 0,
            rx.vstack(
                rx.foreach(
                    HomeState.rates,
                    lambda r: rx.hstack(
                        rx.text(r["label"], size="2"),
                        amount_text(r["rate"], weight="medium"),
                        justify="between",
                        width="100%",
                        class_name="rate-item",
                    ),
                ),
                rx.text(T("home.rates.date", date=HomeState.rates_date), size="1", color=rx.color("gray", 11),
                        id="rates-date"),
                rx.text(T("home.rates.source"), size="1", color=rx.color("gray", 11)),
                spacing="2",
                width="100%",
            ),
            rx.text(T("home.rates.none"), size="2", color=rx.color("gray", 11)),
        ),
        icon="banknote",
        card_id="rates-card",
    )


def help_card() -> rx.Component:
    return card(
        "home.help.title",
        rx.text(T("home.help.body"), size="2"),
        rx.link(rx.hstack(rx.icon("book-open", size=14), T("help.kb_link"), spacing="2", align="center"),
                href=HomeState.kb_url, is_external=True, size="2"),
        rx.link(rx.hstack(rx.icon("mail", size=14), HomeState.support_email, spacing="2", align="center"),
                href="mailto:" + HomeState.support_email, size="2", id="support-email"),
        rx.hstack(rx.icon("phone", size=14), rx.text(HomeState.support_phone, size="2"), spacing="2",
                  align="center"),
        icon="life-buoy",
        card_id="help-card",
    )


GRID = rx.breakpoints(initial="1", sm="2", lg="3")


@panel_page("/", title_key="home.title", section="home", on_load=HomeState.load)
def home_page() -> rx.Component:
    return rx.vstack(
        page_header(
            "home.title",
            rx.cond(HomeState.can_write,
                    rx.link(rx.button(rx.icon("shopping-cart", size=16), T("home.buy_subscription"), size="2"),
                            href="/catalog", id="buy-subscription")),
            subtitle=HomeState.org_name,
        ),
        when_loaded(
            HomeState.loaded,
            rx.vstack(
                invitations(),
                alerts(),
                rx.grid(balance_card(), consumption_card(), quick_links_card(), columns=GRID, spacing="4",
                        width="100%"),
                rx.grid(
                    rx.box(soon_card(), grid_column=rx.breakpoints(initial="span 1", lg="span 2")),
                    rx.vstack(rates_card(), help_card(), spacing="4", width="100%"),
                    columns=rx.breakpoints(initial="1", lg="3"),
                    spacing="4",
                    width="100%",
                    align_items="start",
                ),
                spacing="4",
                width="100%",
            ),
        ),
        spacing="0",
        width="100%",
    )
