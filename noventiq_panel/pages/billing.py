"""/billing — placeholder page: says what will come here, inside the panel's layout.

Replace this module (and ``state/billing.py``) with the real page; keep the route and the
``@panel_page`` decorator. See docs/WEB-PATTERN.md.
"""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page
from ..state.billing import BillingState


@panel_page("/billing", title_key="placeholder.billing.title", section="billing", on_load=BillingState.load)
def billing_page() -> rx.Component:
    return rx.vstack(
        page_header("placeholder.billing.title"),
        rx.callout(
            T("placeholder.billing.body"),
            icon="wallet",
            size="2",
            width="100%",
            id="placeholder",
        ),
        rx.link(T("placeholder.back_home"), href="/"),
        spacing="4",
        width="100%",
    )
