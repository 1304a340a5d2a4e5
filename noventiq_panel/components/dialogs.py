"""Confirmation dialog.

    confirm_dialog(
        rx.button(T("account.deactivate")),
        title_key="account.deactivate_title",
        body=T("account.deactivate_body"),
        confirm_key="account.deactivate",
        on_confirm=AccountState.deactivate(row["id"]),
    )
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from .text import T


def confirm_dialog(
    trigger: rx.Component,
    *,
    title_key: str,
    body: Any = None,
    confirm_key: str = "common.confirm",
    cancel_key: str = "common.cancel",
    on_confirm: Any,
    color_scheme: str = "red",
    confirm_id: str | None = None,
) -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.trigger(trigger),
        rx.alert_dialog.content(
            rx.alert_dialog.title(T(title_key)),
            rx.alert_dialog.description(body if body is not None else "", size="2"),
            rx.flex(
                rx.alert_dialog.cancel(rx.button(T(cancel_key), variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button(T(confirm_key), color_scheme=color_scheme, on_click=on_confirm, id=confirm_id)
                ),
                spacing="3",
                margin_top="1rem",
                justify="end",
            ),
            max_width="28rem",
        ),
    )


def step_dialog(
    title: Any,
    body: rx.Component,
    *,
    open: Any,
    on_open_change: Any,
    description: Any = None,
    trigger: rx.Component | None = None,
    max_width: str = "30rem",
    content_id: str | None = None,
) -> rx.Component:
    """A dialog the state opens and closes (``open``/``on_open_change``) around a form or the
    steps of an action (form → confirm → done). ``description``: a line under the title (a
    Var, or a tuple of pieces); ``trigger``: the button that opens it, when it has one."""
    content: list[Any] = [rx.dialog.title(title)]
    if description is not None:
        pieces = description if isinstance(description, tuple) else (description,)
        content.append(rx.dialog.description(*pieces, size="2", color=rx.color("gray", 11), margin_bottom="0.75rem"))
    content.append(body)
    parts: list[Any] = [rx.dialog.trigger(trigger)] if trigger is not None else []
    parts.append(rx.dialog.content(*content, max_width=max_width, id=content_id))
    return rx.dialog.root(*parts, open=open, on_open_change=on_open_change)
