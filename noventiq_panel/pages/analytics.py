"""/analytics — placeholder page: says what will come here, inside the panel's layout.

Replace this module (and ``state/analytics.py``) with the real page; keep the route and the
``@panel_page`` decorator. See docs/WEB-PATTERN.md.
"""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page
from ..state.analytics import AnalyticsState


@panel_page("/analytics", title_key="placeholder.analytics.title", section="analytics", on_load=AnalyticsState.load)
def analytics_page() -> rx.Component:
    return rx.vstack(
        page_header("placeholder.analytics.title"),
        rx.callout(
            T("placeholder.analytics.body"),
            icon="chart-column",
            size="2",
            width="100%",
            id="placeholder",
        ),
        rx.link(T("placeholder.back_home"), href="/"),
        spacing="4",
        width="100%",
    )
