"""Pieces of the panel's forms and dialogs, so every form reads and behaves alike.

    labelled("account.field.phone", rx.input(name="phone", id="org-phone"), "org-phone")
    error_callout(State.form_error, "invite-error")        # shown while the text is not ""
    button_row(close_button(), rx.button(T("common.save"), on_click=State.save))
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from .text import T

FAINT = rx.color("gray", 11)


def field_label(label_key: str, html_for: str | None = None) -> rx.Component:
    """The label above a control (a ``<label for=...>`` when ``html_for`` names the control)."""
    if html_for is None:
        return rx.text(T(label_key), size="2", weight="medium")
    # Radix Text has no html_for prop (Reflex would put it in css): the attribute itself.
    return rx.text(T(label_key), as_="label", custom_attrs={"htmlFor": html_for}, size="2", weight="medium")


def hint(key: str) -> rx.Component:
    """The small grey line under a control or a form."""
    return rx.text(T(key), size="1", color=FAINT)


def labelled(label_key: str, control: rx.Component, html_for: str | None = None, *,
             hint_key: str | None = None, **props: Any) -> rx.Component:
    """A control with its label above it (and a hint below), as wide as the form unless ``props``
    say otherwise."""
    return rx.vstack(
        field_label(label_key, html_for),
        control,
        hint(hint_key) if hint_key else rx.fragment(),
        **{"spacing": "1", "width": "100%", **props},
    )


def error_callout(message: Any, callout_id: str, **props: Any) -> rx.Component:
    """The red line of a form's or a dialog's error, shown while ``message`` is not ""."""
    return rx.cond(
        message != "",
        rx.callout(message, icon="circle-alert", color_scheme="red", size="1", width="100%", id=callout_id,
                   **props),
        rx.fragment(),
    )


def button_row(*buttons: rx.Component, end: bool = True, margin_top: str = "0.5rem") -> rx.Component:
    """The buttons at the foot of a dialog or a step, right-aligned a little below the last line
    (``end=False``: left where they stand, in a step on a page)."""
    if not end:
        return rx.hstack(*buttons, spacing="3")
    return rx.hstack(*buttons, justify="end", width="100%", spacing="3", margin_top=margin_top)


def close_button(key: str = "common.cancel", **props: Any) -> rx.Component:
    """The grey button that closes the dialog it stands in."""
    return rx.dialog.close(rx.button(T(key), variant="soft", color_scheme="gray", **props))


def back_button(on_click: Any, key: str = "common.back") -> rx.Component:
    """Back from a confirmation step to the form."""
    return rx.button(T(key), variant="soft", color_scheme="gray", on_click=on_click)


def read_only_note(key: str, **props: Any) -> rx.Component:
    """Tells a read-only role why there is nothing to change here."""
    return rx.callout(T(key), icon="lock", color_scheme="gray", size="1", **props)


def date_input(name: str, input_id: str, shown: Any, **props: Any) -> rx.Component:
    """A day typed in the user's language (05.12.2026; 12/05/2026 in English), not the browser's
    date picker, which shows the browser's language. ``shown``: the state's date as the field
    shows it (``state.inputs.shown_date``); ``state.inputs.form_date`` reads the field back."""
    return rx.input(type="text", name=name, id=input_id, default_value=shown, key=shown,
                    placeholder=T("common.date_hint"), input_mode="numeric", max_length=10, auto_complete="off",
                    **{"width": "9rem", **props})
