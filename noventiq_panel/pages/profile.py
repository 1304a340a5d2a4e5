"""/profile — name, language, password, and the e-mail notification history."""

from __future__ import annotations

import reflex as rx

from ..components import Column, T, data_table, error_callout, hint, labelled, page_header, panel_page, when_loaded
from ..i18n import LOCALE_NAMES, LOCALES
from ..state.profile import ProfileState


def form_card(title_key: str, *children: rx.Component, on_submit, reset_on_submit: bool, key) -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(rx.heading(T(title_key), size="4", as_="h2"), *children, spacing="3", width="100%"),
            on_submit=on_submit,
            reset_on_submit=reset_on_submit,
            key=key,
            width="100%",
        ),
        width="100%",
    )


def password_input(name: str, input_id: str, autocomplete: str) -> rx.Component:
    return rx.input(name=name, id=input_id, type="password", auto_complete=autocomplete, required=True, width="100%")


def personal_card() -> rx.Component:
    return form_card(
        "profile.personal",
        labelled("signin.name", rx.input(name="name", id="profile-name", default_value=ProfileState.name,
                                         required=True, width="100%"), "profile-name"),
        labelled("signin.email", rx.input(id="profile-email", value=ProfileState.email, read_only=True,
                                          disabled=True, width="100%"), "profile-email"),
        labelled(
            "profile.language",
            rx.select.root(
                rx.select.trigger(width="100%", id="profile-locale", aria_label=T("profile.language")),
                rx.select.content(*[rx.select.item(LOCALE_NAMES[loc], value=loc) for loc in LOCALES]),
                name="locale",
                default_value=ProfileState.profile_locale,
            ),
            "profile-locale",
        ),
        rx.button(T("common.save"), type="submit", id="profile-save"),
        on_submit=ProfileState.save_profile,
        reset_on_submit=False,
        key=ProfileState.name + ProfileState.profile_locale,
    )


def password_card() -> rx.Component:
    return form_card(
        "profile.password",
        error_callout(ProfileState.password_error, "password-error"),
        labelled("profile.old_password", password_input("old_password", "old-password", "current-password"),
                 "old-password"),
        labelled("signin.new_password", password_input("new_password", "new-password", "new-password"),
                 "new-password"),
        labelled("signin.password2", password_input("new_password2", "new-password2", "new-password"),
                 "new-password2"),
        hint("profile.password_hint"),
        rx.button(T("profile.change_password"), type="submit", id="password-save"),
        on_submit=ProfileState.change_password,
        reset_on_submit=True,
        key=ProfileState.form_key.to_string(),
    )


def two_factor_card() -> rx.Component:
    """Two-factor sign-in: enrol (QR code, the code from the app, the recovery codes once), or off."""
    S = ProfileState
    enrol = rx.vstack(
        rx.text(T("two_factor.scan"), size="2"),
        rx.image(src=S.tf_enrol["qr"], alt="QR", width="180px", height="180px", id="tf-qr"),
        rx.text(T("two_factor.secret"), size="1", color=rx.color("gray", 11)),
        rx.code(S.tf_enrol["secret"], id="tf-secret", size="2"),
        rx.form(
            rx.hstack(rx.input(name="code", id="tf-code", placeholder="123456", input_mode="numeric",
                               auto_complete="one-time-code", required=True, max_length=6),
                      rx.button(T("two_factor.confirm"), type="submit", id="tf-confirm"), spacing="2", wrap="wrap"),
            on_submit=S.tf_confirm, reset_on_submit=True,
        ),
        spacing="2", width="100%",
    )
    codes = rx.vstack(
        rx.callout(T("two_factor.codes_once"), icon="key-round", color_scheme="amber", width="100%"),
        rx.grid(rx.foreach(S.tf_codes, lambda c: rx.code(c, size="2")), columns="2", spacing="2",
                id="tf-codes"),
        rx.button(T("two_factor.codes_saved"), on_click=S.tf_codes_saved, variant="soft", id="tf-codes-saved"),
        spacing="2", width="100%",
    )
    off = rx.form(
        rx.vstack(
            rx.text(T("two_factor.on", left=S.tf_left.to_string()), size="2", id="tf-on"),
            rx.hstack(rx.input(name="code", id="tf-disable-code", placeholder=T("two_factor.code_or_recovery"),
                               required=True, auto_complete="one-time-code"),
                      rx.button(T("two_factor.disable"), type="submit", color_scheme="red", variant="soft",
                                id="tf-disable"), spacing="2", wrap="wrap"),
            spacing="2",
        ),
        on_submit=S.tf_disable, reset_on_submit=True,
    )
    return rx.card(
        rx.vstack(
            rx.heading(T("two_factor.title"), size="4", as_="h2"),
            rx.cond(S.tf_required, rx.callout(T("two_factor.required_notice"), icon="shield-alert",
                                              color_scheme="amber", width="100%", id="tf-required"), rx.fragment()),
            error_callout(S.tf_error, "tf-error"),
            rx.cond(
                S.tf_codes.length() > 0, codes,
                rx.cond(S.tf_on, off, rx.cond(
                    S.tf_enrol.contains("qr"), enrol,
                    rx.vstack(rx.text(T("two_factor.off"), size="2"),
                              rx.button(T("two_factor.enable"), on_click=S.tf_start, id="tf-start"), spacing="2"),
                )),
            ),
            spacing="3", width="100%",
        ),
        width="100%",
    )


HISTORY_COLUMNS = [
    Column("date", "profile.history.col.date", numeric=True),
    Column("subject", "profile.history.col.subject"),
    Column("kind", "profile.history.col.kind", hide_on_phone=True),
    Column("status", "profile.history.col.status", badge_color_key="status_color", hide_on_phone=True),
]


def message_dialog() -> rx.Component:
    m = ProfileState.message
    return rx.dialog.root(
        rx.dialog.content(
            rx.vstack(
                rx.hstack(
                    rx.dialog.title(m["subject"], size="4", margin="0"),
                    rx.dialog.close(rx.icon_button(rx.icon("x", size=16), variant="ghost",
                                                   aria_label=T("a11y.close"))),
                    justify="between",
                    align="start",
                    width="100%",
                ),
                rx.hstack(
                    rx.text(T("profile.history.to", email=m["to"]), size="2", color=rx.color("gray", 11)),
                    rx.text("·", size="2", color=rx.color("gray", 11)),
                    rx.text(m["date"], size="2", color=rx.color("gray", 11)),
                    rx.badge(m["status"], color_scheme=m["status_color"], variant="soft"),
                    spacing="2",
                    wrap="wrap",
                    align="center",
                ),
                rx.cond(
                    m["html"] != "",
                    # The message's own HTML, isolated: no scripts, no access to the panel's origin.
                    rx.el.iframe(src_doc=m["html"], sandbox="allow-popups allow-popups-to-escape-sandbox",
                                 class_name="nq-mail-frame", title=m["subject"], id="message-html"),
                    rx.box(rx.text(m["text"], class_name="nq-mail-text"), id="message-text", width="100%",
                           padding="1rem", border=f"1px solid {rx.color('gray', 5)}", border_radius="8px"),
                ),
                spacing="3",
                width="100%",
            ),
            max_width="48rem",
            width="95vw",
            aria_describedby=None,
        ),
        open=ProfileState.message_open,
        on_open_change=ProfileState.set_message_open,
    )


def history_section() -> rx.Component:
    return rx.vstack(
        rx.heading(T("profile.history.title"), size="5", as_="h2", id="history"),
        rx.text(T("profile.history.intro"), size="2", color=rx.color("gray", 11)),
        data_table(
            HISTORY_COLUMNS,
            ProfileState.history,
            page=ProfileState.history_page,
            pages=ProfileState.history_pages,
            on_page=ProfileState.go_page,
            total=ProfileState.history_total,
            on_row_click=ProfileState.open_message,
            empty_key="profile.history.empty",
            table_id="history-table",
        ),
        message_dialog(),
        spacing="3",
        width="100%",
    )


@panel_page("/profile", title_key="profile.title", on_load=ProfileState.load)
def profile_page() -> rx.Component:
    return rx.vstack(
        page_header("profile.title", subtitle=ProfileState.user_email),
        when_loaded(
            ProfileState.loaded,
            rx.vstack(
                rx.grid(personal_card(), password_card(), two_factor_card(), columns=rx.breakpoints(initial="1", md="2"),
                        spacing="4", width="100%", align_items="start"),
                history_section(),
                spacing="6",
                width="100%",
            ),
        ),
        spacing="0",
        width="100%",
    )
