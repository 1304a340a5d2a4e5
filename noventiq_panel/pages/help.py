"""/help — the knowledge base, support contacts and a short FAQ."""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page, section_card
from ..state.help import HelpState

FAQ_COUNT = 6


def contact_card() -> rx.Component:
    return section_card(
        "help.contacts",
        rx.text(T("help.kb_body"), size="2", color=rx.color("gray", 11)),
        rx.link(
            rx.button(rx.icon("book-open", size=16), T("help.kb_link"), rx.icon("external-link", size=14),
                      variant="soft"),
            href=HelpState.kb_url,
            is_external=True,
            id="kb-link",
        ),
        rx.separator(size="4"),
        rx.text(T("help.support_body"), size="2", color=rx.color("gray", 11)),
        rx.hstack(
            rx.icon("mail", size=16),
            rx.link(HelpState.support_email, href="mailto:" + HelpState.support_email, id="support-email"),
            spacing="2",
            align="center",
        ),
        rx.hstack(rx.icon("phone", size=16), rx.text(HelpState.support_phone), spacing="2", align="center"),
        size="4",
    )


def faq() -> rx.Component:
    return rx.vstack(
        rx.heading(T("help.faq"), size="4", as_="h2"),
        rx.accordion.root(
            *[
                rx.accordion.item(
                    header=T(f"help.faq.{i}.q"),
                    content=rx.text(T(f"help.faq.{i}.a"), size="2"),
                    value=f"q{i}",
                )
                for i in range(1, FAQ_COUNT + 1)
            ],
            collapsible=True,
            type="single",
            variant="ghost",
            width="100%",
            id="faq",
        ),
        spacing="3",
        width="100%",
    )


@panel_page("/help", title_key="help.title", on_load=HelpState.load)
def help_page() -> rx.Component:
    return rx.vstack(
        page_header("help.title"),
        rx.grid(
            contact_card(),
            rx.box(faq(), grid_column=rx.breakpoints(initial="span 1", md="span 2")),
            columns=rx.breakpoints(initial="1", md="3"),
            spacing="5",
            width="100%",
        ),
        width="100%",
        spacing="0",
    )
