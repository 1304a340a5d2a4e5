"""/catalog — placeholder page: says what will come here, inside the panel's layout.

Replace this module (and ``state/catalog.py``) with the real page; keep the route and the
``@panel_page`` decorator. See docs/WEB-PATTERN.md.
"""

from __future__ import annotations

import reflex as rx

from ..components import T, page_header, panel_page
from ..state.catalog import CatalogState


@panel_page("/catalog", title_key="placeholder.catalog.title", section="catalog", on_load=CatalogState.load)
def catalog_page() -> rx.Component:
    return rx.vstack(
        page_header("placeholder.catalog.title"),
        rx.callout(
            T("placeholder.catalog.body"),
            icon="shopping-cart",
            size="2",
            width="100%",
            id="placeholder",
        ),
        rx.link(T("placeholder.back_home"), href="/"),
        spacing="4",
        width="100%",
    )
