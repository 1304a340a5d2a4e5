"""The pages before sign-in: /login, /register, /recovery, /reset/[token], /verify/[token]."""

from __future__ import annotations

import reflex as rx

from ..components import T, error_callout, labelled, panel_page
from ..state.auth import LoginState, RecoveryState, RegisterState, ResetState, VerifyState


def field(label_key: str, name: str, *, type_: str = "text", autocomplete: str | None = None,
          required: bool = True, hint_key: str | None = None, **props) -> rx.Component:
    control = rx.input(name=name, id=f"f-{name}", type=type_, required=required, auto_complete=autocomplete,
                       size="3", width="100%", **props)
    return labelled(label_key, control, f"f-{name}", hint_key=hint_key)


def error_line(state) -> rx.Component:
    return error_callout(state.error, "form-error", role="alert")


def heading(title_key: str, subtitle_key: str | None = None) -> rx.Component:
    return rx.vstack(
        rx.heading(T(title_key), size="6", id="page-title"),
        rx.text(T(subtitle_key), size="2", color=rx.color("gray", 11)) if subtitle_key else rx.fragment(),
        spacing="1",
        width="100%",
        margin_bottom="0.5rem",
    )


def auth_form(*children: rx.Component, on_submit, form_id: str) -> rx.Component:
    return rx.form(
        rx.vstack(*children, spacing="4", width="100%"),
        on_submit=on_submit,
        reset_on_submit=False,
        width="100%",
        id=form_id,
    )


def submit(key: str, state, button_id: str) -> rx.Component:
    return rx.button(T(key), type="submit", size="3", width="100%", loading=state.busy, id=button_id)


def outcome(callout: rx.Component, link: rx.Component) -> rx.Component:
    """What a form turned into: a message and where to go next."""
    return rx.vstack(callout, link, spacing="4", width="100%")


@panel_page("/login", title_key="signin.login.title", public=True, redirect_signed_in=True)
def login_page() -> rx.Component:
    return auth_form(
        heading("signin.login.title", "signin.login.subtitle"),
        error_line(LoginState),
        rx.cond(
            LoginState.resent,
            rx.callout(T("signin.resent"), icon="mail-check", color_scheme="green", width="100%", id="resent"),
            rx.cond(
                LoginState.unverified_email != "",
                rx.button(T("signin.resend"), type="button", variant="soft", size="2", width="100%",
                          on_click=LoginState.resend_verification, loading=LoginState.busy,
                          id="resend-verification"),
                rx.fragment(),
            ),
        ),
        field("signin.email", "email", type_="email", autocomplete="username"),
        field("signin.password", "password", type_="password", autocomplete="current-password"),
        rx.cond(LoginState.need_code,
                field("signin.code", "code", autocomplete="one-time-code", input_mode="numeric", auto_focus=True),
                rx.fragment()),
        submit("signin.login.submit", LoginState, "login-submit"),
        rx.hstack(
            rx.link(T("signin.login.forgot"), href="/recovery", size="2", id="link-recovery"),
            rx.link(T("signin.login.register"), href="/register", size="2", id="link-register"),
            justify="between",
            width="100%",
            wrap="wrap",
        ),
        on_submit=LoginState.sign_in,
        form_id="login-form",
    )


@panel_page("/register", title_key="signin.register.title", public=True, redirect_signed_in=True,
            on_load=RegisterState.reset_form)
def register_page() -> rx.Component:
    return rx.cond(
        RegisterState.registered_email != "",
        outcome(
            rx.callout(T("signin.registered_check_mail", email=RegisterState.registered_email), icon="mail-check",
                       color_scheme="green", width="100%", id="register-sent"),
            rx.link(T("signin.back_to_login"), href="/login", size="2"),
        ),
        _register_form(),
    )


def _register_form() -> rx.Component:
    return auth_form(
        heading("signin.register.title", "signin.register.subtitle"),
        error_line(RegisterState),
        field("signin.name", "name", autocomplete="name"),
        field("signin.email", "email", type_="email", autocomplete="email"),
        field("signin.org_name", "org_name", autocomplete="organization"),
        field("signin.tax_id", "tax_id", required=False, hint_key="signin.tax_id_hint", input_mode="numeric"),
        field("signin.password", "password", type_="password", autocomplete="new-password",
              hint_key="signin.password_hint"),
        field("signin.password2", "password2", type_="password", autocomplete="new-password"),
        submit("signin.register.submit", RegisterState, "register-submit"),
        rx.hstack(
            rx.text(T("signin.register.have_account"), size="2", color=rx.color("gray", 11)),
            rx.link(T("signin.login.submit"), href="/login", size="2"),
            spacing="2",
            wrap="wrap",
        ),
        on_submit=RegisterState.register,
        form_id="register-form",
    )


@panel_page("/recovery", title_key="signin.recovery.title", public=True, on_load=RecoveryState.reset_form)
def recovery_page() -> rx.Component:
    return rx.vstack(
        heading("signin.recovery.title"),
        rx.cond(
            RecoveryState.sent,
            outcome(
                rx.callout(T("signin.recovery.sent"), icon="mail-check", color_scheme="green", width="100%",
                           id="recovery-sent"),
                rx.link(T("signin.back_to_login"), href="/login", size="2"),
            ),
            auth_form(
                rx.text(T("signin.recovery.subtitle"), size="2", color=rx.color("gray", 11)),
                error_line(RecoveryState),
                field("signin.email", "email", type_="email", autocomplete="username"),
                submit("signin.recovery.submit", RecoveryState, "recovery-submit"),
                rx.link(T("signin.back_to_login"), href="/login", size="2"),
                on_submit=RecoveryState.request_link,
                form_id="recovery-form",
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
            outcome(
                rx.callout(T("signin.password_set"), icon="circle-check", color_scheme="green", width="100%",
                           id="reset-done"),
                rx.link(rx.button(T("signin.login.submit"), size="3", width="100%"), href="/login", width="100%",
                        id="reset-to-login"),
            ),
            rx.cond(
                ~ResetState.checked,
                rx.center(rx.spinner(size="3"), padding="2rem", width="100%"),
                rx.cond(
                    ResetState.valid,
                    auth_form(
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
                        submit("signin.reset.submit", ResetState, "reset-submit"),
                        on_submit=ResetState.set_password,
                        form_id="reset-form",
                    ),
                    outcome(
                        rx.callout(T("signin.link_invalid"), icon="circle-alert", color_scheme="red", width="100%",
                                   id="reset-invalid"),
                        rx.link(T("signin.recovery.again"), href="/recovery", size="2"),
                    ),
                ),
            ),
        ),
        spacing="2",
        width="100%",
    )


@panel_page("/verify/[token]", title_key="signin.verify.title", public=True, on_load=VerifyState.load)
def verify_page() -> rx.Component:
    return rx.vstack(
        heading("signin.verify.title"),
        rx.cond(
            ~VerifyState.checked,
            rx.center(rx.spinner(size="3"), padding="2rem", width="100%"),
            rx.cond(
                VerifyState.verified,
                outcome(
                    rx.callout(T("signin.verified"), icon="circle-check", color_scheme="green", width="100%",
                               id="verify-done"),
                    rx.link(rx.button(T("signin.login.submit"), size="3", width="100%"), href="/login", width="100%",
                            id="verify-to-login"),
                ),
                rx.cond(
                    VerifyState.email != "",
                    auth_form(
                        rx.text(T("signin.verify.confirm_hint"), size="2"),
                        rx.text(VerifyState.email, weight="bold", id="verify-email"),
                        error_line(VerifyState),
                        field("signin.verify.password", "password", type_="password",
                              autocomplete="current-password"),
                        submit("signin.verify.confirm", VerifyState, "verify-confirm"),
                        rx.text(T("signin.verify.not_me"), size="1", color_scheme="gray"),
                        on_submit=VerifyState.confirm,
                        form_id="verify-form",
                    ),
                    outcome(
                        rx.callout(T("signin.link_invalid"), icon="circle-alert", color_scheme="red", width="100%",
                                   id="verify-invalid"),
                        rx.link(T("signin.back_to_login"), href="/login", size="2"),
                    ),
                ),
            ),
        ),
        spacing="2",
        width="100%",
    )
