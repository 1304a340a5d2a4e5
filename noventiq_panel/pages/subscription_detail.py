"""/subscriptions/[id] — placeholder page: says what will come here, inside the panel's layout.

Replace this module (and ``state/subscription_detail.py``) with the real page; keep the route and the
``@panel_page`` decorator. See docs/WEB-PATTERN.md.
"""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page
from ..state.subscription_detail import SubscriptionDetailState


@panel_page("/subscriptions/[id]", title_key="placeholder.subscription_detail.title", section="subscriptions", on_load=SubscriptionDetailState.load)
def subscription_detail_page() -> rx.Component:
    return rx.vstack(
        page_header("placeholder.subscription_detail.title"),
        rx.callout(
            T("placeholder.subscription_detail.body"),
            icon="file-text",
            size="2",
            width="100%",
            id="placeholder",
        ),
        rx.link(T("placeholder.back_home"), href="/"),
        spacing="4",
        width="100%",
    )
