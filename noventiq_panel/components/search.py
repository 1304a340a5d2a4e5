"""The search box of a list page (an input, a Search button and a clear button once searching)
and the bar of filters it stands in."""

from __future__ import annotations

import reflex as rx

from .text import T


def search_form(state, *, placeholder_key: str, input_id: str, width: str = "18rem") -> rx.Component:
    """``state`` takes the ``state.parts.Search`` mixin (the ``search`` var and the
    ``apply_search(form)`` / ``clear_search`` handlers). The input gets ``input_id``, the button
    ``<input_id>-go``."""
    return rx.form(
        rx.hstack(
            rx.input(rx.input.slot(rx.icon("search", size=16)), name="search", default_value=state.search,
                     placeholder=T(placeholder_key), max_length=100, id=input_id,
                     width=rx.breakpoints(initial="100%", sm=width)),
            rx.button(T("subscriptions.search_button"), type="submit", variant="soft", id=f"{input_id}-go"),
            rx.cond(state.search != "",
                    rx.button(rx.icon("x", size=14), variant="ghost", on_click=state.clear_search, type="button",
                              aria_label=T("a11y.clear_search")),
                    rx.fragment()),
            spacing="2",
            align="center",
        ),
        on_submit=state.apply_search,
        reset_on_submit=False,
        width="auto",
    )


def filter_bar(*controls: rx.Component, margin_bottom: str = "1rem") -> rx.Component:
    """The search box and the filters above a list, wrapping on a narrow screen."""
    return rx.flex(*controls, gap="2", wrap="wrap", align="center", width="100%", margin_bottom=margin_bottom)
