"""The pages before sign-in: /login, /register, /recovery, /reset/[token]."""

from __future__ import annotations

import reflex as rx

from ..components import T, panel_page
from ..state.auth import LoginState, RecoveryState, RegisterState, ResetState


def field(label_key: str, name: str, *, type_: str = "text", autocomplete: str | None = None,
          required: bool = True, hint_key: str | None = None, **props) -> rx.Component:
    return rx.vstack(
        rx.text(T(label_key), as_="label", html_for=f"f-{name}", size="2", weight="medium"),
        rx.input(
            name=name,
            id=f"f-{name}",
            type=type_,
            required=required,
            auto_complete=autocomplete,
            size="3",
            width="100%",
            **props,
        ),
        rx.text(T(hint_key), size="1", color=rx.color("gray", 10)) if hint_key else rx.fragment(),
        spacing="1",
        width="100%",
    )


def error_line(state) -> rx.Component:
    return rx.cond(
        state.error != "",
        rx.callout(state.error, icon="circle-alert", color_scheme="red", size="1", width="100%", id="form-error",
                   role="alert"),
        rx.fragment(),
    )


def heading(title_key: str, subtitle_key: str | None = None) -> rx.Component:
    return rx.vstack(
        rx.heading(T(title_key), size="6", id="page-title"),
        rx.text(T(subtitle_key), size="2", color=rx.color("gray", 11)) if subtitle_key else rx.fragment(),
        spacing="1",
        width="100%",
        margin_bottom="0.5rem",
    )


@panel_page("/login", title_key="signin.login.title", public=True, redirect_signed_in=True)
def login_page() -> rx.Component:
    return rx.form(
        rx.vstack(
            heading("signin.login.title", "signin.login.subtitle"),
            error_line(LoginState),
            field("signin.email", "email", type_="email", autocomplete="username"),
            field("signin.password", "password", type_="password", autocomplete="current-password"),
            rx.button(T("signin.login.submit"), type="submit", size="3", width="100%", loading=LoginState.busy,
                      id="login-submit"),
            rx.hstack(
                rx.link(T("signin.login.forgot"), href="/recovery", size="2", id="link-recovery"),
                rx.link(T("signin.login.register"), href="/register", size="2", id="link-register"),
                justify="between",
                width="100%",
                wrap="wrap",
            ),
            spacing="4",
            width="100%",
        ),
        on_submit=LoginState.sign_in,
        reset_on_submit=False,
        width="100%",
        id="login-form",
    )


@panel_page("/register", title_key="signin.register.title", public=True, redirect_signed_in=True)
def register_page() -> rx.Component:
    return rx.form(
        rx.vstack(
            heading("signin.register.title", "signin.register.subtitle"),
            error_line(RegisterState),
            field("signin.name", "name", autocomplete="name"),
            field("signin.email", "email", type_="email", autocomplete="email"),
            field("signin.org_name", "org_name", autocomplete="organization"),
            field("signin.tax_id", "tax_id", required=False, hint_key="signin.tax_id_hint", input_mode="numeric"),
            field("signin.password", "password", type_="password", autocomplete="new-password",
                  hint_key="signin.password_hint"),
            field("signin.password2", "password2", type_="password", autocomplete="new-password"),
            rx.button(T("signin.register.submit"), type="submit", size="3", width="100%", loading=RegisterState.busy,
                      id="register-submit"),
            rx.hstack(
                rx.text(T("signin.register.have_account"), size="2", color=rx.color("gray", 11)),
                rx.link(T("signin.login.submit"), href="/login", size="2"),
                spacing="2",
                wrap="wrap",
            ),
            spacing="4",
            width="100%",
        ),
        on_submit=RegisterState.register,
        reset_on_submit=False,
        width="100%",
        id="register-form",
    )


@panel_page("/recovery", title_key="signin.recovery.title", public=True, on_load=RecoveryState.reset_form)
def recovery_page() -> rx.Component:
    return rx.vstack(
        heading("signin.recovery.title"),
        rx.cond(
            RecoveryState.sent,
            rx.vstack(
                rx.callout(T("signin.recovery.sent"), icon="mail-check", color_scheme="green", width="100%",
                           id="recovery-sent"),
                rx.link(T("signin.back_to_login"), href="/login", size="2"),
                spacing="4",
                width="100%",
            ),
            rx.form(
                rx.vstack(
                    rx.text(T("signin.recovery.subtitle"), size="2", color=rx.color("gray", 11)),
                    error_line(RecoveryState),
                    field("signin.email", "email", type_="email", autocomplete="username"),
                    rx.button(T("signin.recovery.submit"), type="submit", size="3", width="100%",
                              loading=RecoveryState.busy, id="recovery-submit"),
                    rx.link(T("signin.back_to_login"), href="/login", size="2"),
                    spacing="4",
                    width="100%",
                ),
                on_submit=RecoveryState.request_link,
                reset_on_submit=False,
                width="100%",
                id="recovery-form",
            ),
        ),
        spacing="2",
        width="100%",
    )


@panel_page("/reset/[token]", title_key="signin.reset.title", public=True, on_load=ResetState.load)
def reset_page() -> rx.Component:
    return rx.vstack(
        rx.cond(ResetState.is_invite, heading("signin.reset.invite_title"), heading("signin.reset.title")),
        rx.cond(
            ResetState.done,
            rx.vstack(
                rx.callout(T("signin.password_set"), icon="circle-check", color_scheme="green", width="100%",
                           id="reset-done"),
                rx.link(rx.button(T("signin.login.submit"), size="3", width="100%"), href="/login", width="100%",
                        id="reset-to-login"),
                spacing="4",
                width="100%",
            ),
            rx.cond(
                ~ResetState.checked,
                rx.center(rx.spinner(size="3"), padding="2rem", width="100%"),
                rx.cond(
                    ResetState.valid,
                    rx.form(
                        rx.vstack(
                            rx.cond(
                                ResetState.email != "",
                                rx.text(T("signin.reset.for", email=ResetState.email), size="2",
                                        color=rx.color("gray", 11)),
                                rx.fragment(),
                            ),
                            error_line(ResetState),
                            field("signin.new_password", "password", type_="password", autocomplete="new-password",
                                  hint_key="signin.password_hint"),
                            field("signin.password2", "password2", type_="password", autocomplete="new-password"),
                            rx.button(T("signin.reset.submit"), type="submit", size="3", width="100%",
                                      loading=ResetState.busy, id="reset-submit"),
                            spacing="4",
                            width="100%",
                        ),
                        on_submit=ResetState.set_password,
                        reset_on_submit=False,
                        width="100%",
                        id="reset-form",
                    ),
                    rx.vstack(
                        rx.callout(T("signin.link_invalid"), icon="circle-alert", color_scheme="red", width="100%",
                                   id="reset-invalid"),
                        rx.link(T("signin.recovery.again"), href="/recovery", size="2"),
                        spacing="4",
                        width="100%",
                    ),
                ),
            ),
        ),
        spacing="2",
        width="100%",
    )
