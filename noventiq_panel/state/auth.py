"""States of the sign-in pages: /login, /register, /recovery, /reset/[token], /verify/[token].

These handlers are callable by anyone (nobody is signed in yet); the services throttle sign-in
and never reveal whether an e-mail address exists.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from ..services.core.errors import DomainError, InvalidInput, NotFound
from ..services.identity import auth, registration, verification
from .base import BaseState, Ctx, ctx_of, safe_next

MAX_FIELD = 500


def _field(form: Any, name: str, limit: int = MAX_FIELD) -> str:
    """A text field of a submitted form (the browser may send anything)."""
    if not isinstance(form, dict):
        return ""
    value = form.get(name, "")
    if not isinstance(value, str):
        return ""
    return value.strip()[:limit] if name not in ("password", "password2", "old_password") else value[:limit]


def _sign_in(session, email: str, password: str, ip: str, code: str = "") -> tuple[str, Ctx]:
    raw, _user = auth.sign_in(session, email, password, ip=ip, code=code or None)
    return raw, ctx_of(auth.resolve(session, raw))


class AuthFormState(BaseState):
    """Shared by the auth forms: one error line, a busy flag."""

    error: str = ""
    busy: bool = False

    def _client_ip(self) -> str:
        return (self.router.session.client_ip or "")[:64]

    def _show_error(self, exc: BaseException) -> None:
        self.error = self._error_text(exc)

    async def _submit(self, fn, *args, **kwargs) -> tuple[bool, Any]:
        """Run the form's service call and clear ``busy``. ``(True, result)``, or ``(False, event)``
        after a failure to yield: a domain error is shown on the form (event None, a plain state
        update; the services never say more than the form may), anything else is the generic
        message."""
        try:
            return True, await self._call(fn, *args, **kwargs)
        except DomainError as exc:
            self._show_error(exc)
            return False, None
        except Exception as exc:  # noqa: BLE001
            return False, self._fail(exc)
        finally:
            self.busy = False

    async def _start(self, secret: str, ctx: Ctx):
        await self._reset_pages()  # nothing of a previous user of this tab survives a new sign-in
        self.session_secret = secret
        self._apply(ctx)
        self.error = ""


class LoginState(AuthFormState):
    unverified_email: str = ""  # the right password, the mailbox not proven: offer the link again
    resent: bool = False
    need_code: bool = False  # two-factor sign-in: the one-time code field is shown

    @rx.event
    async def sign_in(self, form: dict):
        email = _field(form, "email", 254).lower()
        password = _field(form, "password", 200)
        self.unverified_email, self.resent = "", False
        if not email or not password:
            self.error = self._t("signin.fill_in")
            return
        self.busy = True
        yield
        code = _field(form, "code", 32)
        try:
            out = await self._call(_sign_in, email, password, self._client_ip(), code)
        except DomainError as exc:
            self.busy = False
            self._show_error(exc)
            if exc.key == "auth.email_unverified":
                self.unverified_email = email
            if exc.key in ("auth.code_required", "auth.code_wrong"):
                self.need_code = True
            return
        except Exception as exc:  # noqa: BLE001
            self.busy = False
            yield self._fail(exc)
            return
        self.busy = False
        self.need_code = False
        await self._start(*out)
        yield rx.redirect(safe_next(self.router.url.query_parameters.get("next")), replace=True)

    @rx.event
    async def resend_verification(self):
        """Mail the verification link again (throttled by the service; the same answer for any address)."""
        if not self.unverified_email or self.busy:
            return
        self.busy = True
        yield
        ok, out = await self._submit(verification.resend, self.unverified_email, ip=self._client_ip())
        if not ok:
            yield out
            return
        self.error, self.resent = "", True


class RegisterState(AuthFormState):
    registered_email: str = ""  # signed up: the verification mail went there

    @rx.event
    def reset_form(self):
        self.registered_email, self.error = "", ""

    @rx.event
    async def register(self, form: dict):
        fields = {
            "email": _field(form, "email", 254).lower(),
            "password": _field(form, "password", 200),
            "name": _field(form, "name", 255),
            "org_name": _field(form, "org_name", 255),
            "tax_id": _field(form, "tax_id", 32),
            "locale": self._lang,
        }
        if not all(fields[k] for k in ("email", "password", "name", "org_name")):
            self.error = self._t("signin.fill_in")
            return
        if fields["password"] != _field(form, "password2", 200):
            self.error = self._t("signin.passwords_differ")
            return
        self.busy = True
        yield
        ok, out = await self._submit(registration.register, **fields, ip=self._client_ip())
        if not ok:
            yield out
            return
        self.error, self.registered_email = "", fields["email"]


class RecoveryState(AuthFormState):
    sent: bool = False

    @rx.event
    def reset_form(self):
        self.sent = False
        self.error = ""

    @rx.event
    async def request_link(self, form: dict):
        email = _field(form, "email", 254).lower()
        if not email or "@" not in email:
            self.error = self._t("signin.email_required")
            return
        self.busy = True
        yield
        ok, out = await self._submit(auth.request_password_reset, email, ip=self._client_ip())
        if not ok:
            yield out
            return
        self.error = ""
        self.sent = True


class ResetState(AuthFormState):
    valid: bool = False
    checked: bool = False
    done: bool = False
    email: str = ""
    is_invite: bool = False

    def _raw_token(self) -> str:
        path = self.router.url.path or ""
        raw = path.rstrip("/").rsplit("/", 1)[-1] if path.startswith("/reset/") else ""
        return raw[:200]

    @rx.event
    async def load(self):
        self.error, self.done, self.valid, self.checked = "", False, False, False
        raw = self._raw_token()
        if not raw:
            self.checked = True
            return
        try:
            info = await self._call(auth.check_reset_token, raw)
        except DomainError as exc:
            self._show_error(exc)
            self.checked = True
            return
        except Exception as exc:  # noqa: BLE001
            self.checked = True
            return self._fail(exc)
        self.email = info.email
        self.is_invite = info.purpose == "invite"
        self.valid = True
        self.checked = True

    @rx.event
    async def set_password(self, form: dict):
        password = _field(form, "password", 200)
        if not password:
            self.error = self._t("signin.fill_in")
            return
        if password != _field(form, "password2", 200):
            self.error = self._t("signin.passwords_differ")
            return
        raw = self._raw_token()
        if not raw:
            self._show_error(InvalidInput("no token", key="signin.link_invalid"))
            return
        self.busy = True
        yield
        ok, out = await self._submit(auth.reset_password, raw, password)
        if not ok:
            yield out
            return
        self.error = ""
        self.done = True
        # Any session of this browser belonged to whoever was signed in before: forget it.
        if self.session_secret:
            await self._clear()
            self.done = True
            self.checked = True
        yield rx.toast.success(self._t("signin.password_set"))


class VerifyState(AuthFormState):
    """/verify/<token>: the link from the verification mail proves the mailbox."""

    verified: bool = False
    checked: bool = False
    email: str = ""  # the address the link verifies, shown before the visitor confirms

    def _token(self) -> str:
        path = self.router.url.path or ""
        return path.rstrip("/").rsplit("/", 1)[-1][:200] if path.startswith(verification.VERIFY_PATH) else ""

    @rx.event
    async def load(self):
        """Opening the link shows the address and a button; it verifies nothing by itself."""
        self.error, self.verified, self.checked, self.email = "", False, False, ""
        raw = self._token()
        if raw:
            try:
                self.email = await self._call(verification.check, raw)
            except DomainError as exc:
                self._show_error(exc)
            except Exception as exc:  # noqa: BLE001
                self.checked = True
                return self._fail(exc)
        self.checked = True

    @rx.event
    async def confirm(self, form: dict):
        """The visitor confirms with the account's password: the account is verified, and every
        session it had ends. A wrong password is said on the form; a used link ends the form."""
        if self.busy or not self.email:
            return
        self.busy, self.error = True, ""
        yield
        try:
            await self._call(verification.verify, self._token(), str(form.get("password", "")), ip=self._client_ip())
        except NotFound:  # the link is no good any more: say so instead of the form
            self.email = ""
            return
        except DomainError as exc:  # a wrong password, throttled: said on the form
            self._show_error(exc)
            return
        except Exception as exc:  # noqa: BLE001
            yield self._fail(exc)
            return
        finally:
            self.busy = False
        self.verified = True
        if self.session_secret:
            await self._clear()  # every session of the account ended; this browser's too
