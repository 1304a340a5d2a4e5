"""The confirmation step of an action that moves money (an order, a licence-count change, a plan
change): what is charged now and later, as the service quoted it, and what is missing when the
balance does not cover it. The state fills a preview dict (``now``, ``later``, ``shortfall``,
``topup_href``: strings, "" when there is nothing to say).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from .forms import back_button, button_row
from .text import T


def shortfall_block(preview: Any, on_invoice: Any = None, invoice_number: Any = None) -> rx.Component:
    """Shown when the balance does not cover the charge: the missing amount, a top-up link with
    exactly that amount and, with ``on_invoice``, an invoice for it (the action is carried out
    once it is paid; ``invoice_number`` is its number once asked for)."""
    actions: list[Any] = [
        rx.link(rx.button(rx.icon("plus", size=14), T("subscriptions.top_up"), size="1"),
                href=preview["topup_href"], class_name="topup-link"),
    ]
    if on_invoice is not None:
        actions.append(rx.cond(
            invoice_number == "",
            rx.button(rx.icon("file-text", size=14), T("subscriptions.invoice"), size="1", variant="soft",
                      on_click=on_invoice, class_name="shortfall-invoice"),
            rx.link(T("subscriptions.invoice_open", number=invoice_number), href="/billing", size="2"),
        ))
    return rx.cond(
        preview["shortfall"] != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("wallet", size=16)),
            rx.vstack(
                rx.text(T("subscriptions.shortfall", amount=preview["shortfall"]), size="2"),
                rx.hstack(*actions, spacing="2", wrap="wrap"),
                spacing="2",
            ),
            color_scheme="orange",
            width="100%",
            class_name="shortfall",
        ),
        rx.fragment(),
    )


def quote_confirm(
    summary: Any,
    preview: Any,
    id_prefix: str,
    *extra: rx.Component,
    on_back: Any,
    confirm_key: str,
    on_confirm: Any,
    busy: Any,
    shortfall: tuple[Any, Any] | None = None,
    end: bool = True,
) -> rx.Component:
    """The step between the form and the charge: ``summary``, ``preview["now"]`` (id
    ``<id_prefix>-now``), ``preview["later"]`` (``-later``), ``extra`` lines, the shortfall and
    the Back / confirm (``-confirm``) buttons. ``shortfall=(on_invoice, invoice_number)`` shows the
    shortfall block and keeps the confirm button disabled while something is missing."""
    confirm_props: dict[str, Any] = {}
    if shortfall is not None:
        confirm_props["disabled"] = preview["shortfall"] != ""
    return rx.vstack(
        rx.text(summary, size="3", weight="medium"),
        rx.callout(preview["now"], icon="info", size="1", width="100%", id=f"{id_prefix}-now"),
        rx.cond(preview["later"] != "", rx.text(preview["later"], size="2", id=f"{id_prefix}-later"), rx.fragment()),
        *extra,
        shortfall_block(preview, *shortfall) if shortfall is not None else rx.fragment(),
        button_row(
            back_button(on_back),
            rx.button(T(confirm_key), on_click=on_confirm, loading=busy, id=f"{id_prefix}-confirm", **confirm_props),
            end=end,
        ),
        spacing="3",
        width="100%",
    )
