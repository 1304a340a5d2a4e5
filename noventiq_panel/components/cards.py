"""Cards of the pages: a section with a heading, and a card with a small muted title (and icon)
above a figure or a few lines."""

from __future__ import annotations

from typing import Any

import reflex as rx

from .text import T


def section_card(title_key: str, *children: Any, size: str = "3", card_id: str | None = None,
                 **props: Any) -> rx.Component:
    """A card with a heading (Radix size ``size``) over its lines."""
    return rx.card(
        rx.vstack(rx.heading(T(title_key), size=size, as_="h2"), *children, spacing="3", width="100%"),
        width="100%",
        id=card_id,
        **props,
    )


def card_title(title_key: str, icon: str | None = None) -> rx.Component:
    """The small grey title of a figure card, with an accent icon before it."""
    return rx.hstack(
        rx.icon(icon, size=16, color=rx.color("accent", 10)) if icon else rx.fragment(),
        rx.text(T(title_key), size="2", weight="medium", color=rx.color("gray", 11)),
        spacing="2",
        align="center",
    )
