"""/subscriptions — placeholder page: says what will come here, inside the panel's layout.

Replace this module (and ``state/subscriptions.py``) with the real page; keep the route and the
``@panel_page`` decorator. See docs/WEB-PATTERN.md.
"""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page
from ..state.subscriptions import SubscriptionsState


@panel_page("/subscriptions", title_key="placeholder.subscriptions.title", section="subscriptions", on_load=SubscriptionsState.load)
def subscriptions_page() -> rx.Component:
    return rx.vstack(
        page_header("placeholder.subscriptions.title"),
        rx.callout(
            T("placeholder.subscriptions.body"),
            icon="layers",
            size="2",
            width="100%",
            id="placeholder",
        ),
        rx.link(T("placeholder.back_home"), href="/"),
        spacing="4",
        width="100%",
    )
