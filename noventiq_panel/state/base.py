"""The base state of every page: who is signed in, in which organisation, in which language.

Security rules (see /work/shared/REFLEX-NOTES.md):
- Every public method of a state is an event handler any client can call with any arguments.
  So every handler resolves the user again from the session secret through
  ``services.identity.auth.resolve`` (``_actor()`` / ``_act()``), and the services check the role.
- The session secret is our own random token (issued by ``services.identity.auth.sign_in``), kept in a
  cookie; the server stores only its hash. Never the Reflex client token.
- ``_user_id``, ``_org_id``, ``_role`` are backend vars (never sent to the browser); public vars
  hold view data only (plain strings, dicts, lists).
- Database work runs in a thread (``_call`` / ``_act``) so one slow query does not block the
  event loop.

Page states subclass ``BaseState`` (they become its substates and see its vars).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import quote, unquote, urlsplit

import reflex as rx

from ..config import get_settings
from ..db import session_scope
from ..i18n import DEFAULT_LOCALE, LOCALES, error_text, normalize_locale, t
from ..services.core.authz import Actor
from ..services.core.errors import DomainError, NotAuthenticated
from ..services.identity import auth, users

log = logging.getLogger(__name__)
_UNSET = object()
SWITCHED_NOTICE_MS = 2500  # how long the notice of a switch in another tab shows before the page reloads

T = TypeVar("T")

SESSION_COOKIE = "nq_session"
LOCALE_STORAGE = "nq_locale"
SESSION_COOKIE_MAX_AGE = 30 * 24 * 3600  # the server expires idle sessions much earlier

# Pages reachable without signing in. Everything else goes through ``BaseState.guard``.
PUBLIC_PATHS = ("/login", "/register", "/recovery", "/reset")
WRITE_ROLES = ("owner", "admin")
TWO_FACTOR_REQUIRED = "error.two_factor_required"  # the services' refusal (services.core.authz)
TWO_FACTOR_PAGE = "/profile?two_factor=required"
# What the browser is told a download is.
MIME_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
EXPORT_FORMATS = ("csv", "xlsx")


@dataclass(frozen=True)
class Ctx:
    """The resolved caller of one handler: a plain value, safe to pass to services."""

    user_id: int
    org_id: int
    role: str
    locale: str
    email: str = ""
    name: str = ""
    org_name: str = ""
    orgs: tuple = field(default_factory=tuple)
    two_factor_needed: bool = False

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, org_id=self.org_id)

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


def _run_in_session(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    with session_scope() as session:
        return fn(session, *args, **kwargs)


def _resolve(secret: str) -> Ctx:
    """Resolve the session secret to a Ctx (raises NotAuthenticated). Runs in a worker thread."""
    with session_scope() as session:
        return ctx_of(auth.resolve(session, secret))


def ctx_of(info: auth.SessionInfo) -> Ctx:
    """The plain view of ``auth.resolve``'s answer (the organisations' ids as strings)."""
    return Ctx(
        user_id=info.user_id,
        org_id=info.org_id,
        role=str(info.role),
        locale=normalize_locale(info.locale),
        email=info.email,
        name=info.name,
        org_name=info.org_name,
        orgs=tuple({"id": str(o["id"]), "name": o["name"], "role": str(o["role"])} for o in info.orgs),
        two_factor_needed=info.two_factor_needed,
    )


class SwitchedElsewhere(Exception):
    """The browser's session now works as another user or in another organisation (switched in
    another tab) than the page the event came from showed: nothing is done. Not a DomainError, so
    that no handler takes it for a form's error: it always reaches ``_fail``, which says so and
    reloads the page."""


def _act_in_session(secret: str, fn: Callable[..., T], args: tuple, kwargs: dict,
                    shown: tuple[int, int] | None = None) -> tuple[Ctx, T | None, Exception | None]:
    """Resolve the caller and run ``fn(session, actor, ...)`` in one unit of work. The caller comes
    back with what ``fn`` returned or raised (its work rolled back), so the tab takes the caller
    either way. ``shown`` is the (user, organisation) the tab shows: when the browser's session
    works as another one now (switched in another tab), ``fn`` does not run."""
    with session_scope() as session:
        ctx = ctx_of(auth.resolve(session, secret))
        if shown is not None and shown != (ctx.user_id, ctx.org_id):
            return ctx, None, SwitchedElsewhere("the session works as another user or organisation than the page")
        try:
            return ctx, fn(session, ctx.actor, *args, **kwargs), None
        except Exception as exc:  # noqa: BLE001 - handed back, raised again by _act
            session.rollback()
            return ctx, None, exc


def safe_next(target: str | None) -> str:
    """A same-site path to return to after sign-in; anything else becomes "/".

    Refuses absolute URLs, scheme-relative ``//host`` paths, backslashes and the auth pages.
    """
    if not target:
        return "/"
    target = unquote(str(target)).strip()
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    if any(parts.path == p or parts.path.startswith(p + "/") for p in PUBLIC_PATHS):
        return "/"
    return target


class BaseState(rx.State):
    """Signed-in user, organisation, language. Parent of every page state."""

    # --- client side -------------------------------------------------------------------------
    # The session secret from services.identity.auth.sign_in. A cookie so that download routes can read it
    # too; SameSite=strict; Secure when the panel is served over https.
    session_secret: str = rx.Cookie(
        "",
        name=SESSION_COOKIE,
        path="/",
        max_age=SESSION_COOKIE_MAX_AGE,
        same_site="strict",
        secure=get_settings().base_url.startswith("https://") or None,
    )
    # The UI language, kept in the browser before sign-in; after sign-in the user's own locale.
    locale: str = rx.LocalStorage(DEFAULT_LOCALE, name=LOCALE_STORAGE, sync=True)

    # --- view data (public: sent to the browser) -------------------------------------------------
    signed_in: bool = False
    user_name: str = ""
    user_email: str = ""
    org_name: str = ""
    role: str = ""  # the user's own role in the current organisation (to hide controls only)
    orgs: list[dict[str, str]] = []
    current_org_id: str = ""

    # --- backend only ----------------------------------------------------------------------------
    _user_id: int | None = None
    _org_id: int | None = None
    _role: str = ""
    # An action of this tab was refused as switched elsewhere: the page's data is gone and every
    # further action of the stale page is refused too, until a page load takes the new caller.
    _switched_away: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        """A list or dict var given a value equal to the one it holds is left alone. Reflex marks
        every assigned var dirty and sends it with the event's answer, so a page load that finds the
        same tables and figures as last time would send all of them again (and the browser would
        draw them again). Scalars are always assigned: a flag the browser may have changed on its
        own (a dialog closed with Esc) must reach it again when the server sets it."""
        if isinstance(value, (list, dict)) and not name.startswith("_"):
            old = self.__dict__.get(name, _UNSET)
            if type(old) is type(value) and old == value:
                return
        super().__setattr__(name, value)

    # ============================================================================================
    # Computed view helpers (no database: safe at compile time)
    # ============================================================================================
    @rx.var(initial_value=False)
    def can_write(self) -> bool:
        """Owner or Administrator: show editing controls. The services decide anyway."""
        return self.role in WRITE_ROLES

    @rx.var(initial_value=False)
    def is_owner(self) -> bool:
        """Owner: show the controls only an Owner has (the services decide anyway)."""
        return self.role == "owner"

    @rx.var(initial_value=False)
    def has_many_orgs(self) -> bool:
        return len(self.orgs) > 1

    @rx.var(initial_value="")
    def user_initials(self) -> str:
        words = [w for w in (self.user_name or self.user_email).replace("@", " ").split() if w]
        return "".join(w[0] for w in words[:2]).upper()

    # ============================================================================================
    # Helpers for page states (names start with "_": not callable from the browser)
    # ============================================================================================
    def _t(self, key: str, **params: Any) -> str:
        """Translate for the current UI language (server-side: view dicts, toasts)."""
        return t(key, self.locale, **params)

    @property
    def _lang(self) -> str:
        return normalize_locale(self.locale)

    def _apply(self, ctx: Ctx) -> None:
        """Copy the resolved caller into the state (backend ids, public view data)."""
        self._user_id, self._org_id, self._role = ctx.user_id, ctx.org_id, ctx.role
        view = {"signed_in": True, "user_name": ctx.name, "user_email": ctx.email, "org_name": ctx.org_name,
                "role": ctx.role, "orgs": [dict(o) for o in ctx.orgs], "current_org_id": str(ctx.org_id)}
        if ctx.locale in LOCALES:
            view["locale"] = ctx.locale
        # Only what changed: an assignment marks a var dirty even with the same value, and every
        # dirty var goes to the browser again with each event.
        for name, value in view.items():
            if getattr(self, name) != value:
                setattr(self, name, value)

    async def _clear(self) -> None:
        """Forget everything about the user in this browser tab: this state and every page state.

        Page states keep data of the previous user in memory (and hydrate sends every loaded
        state), so all of them are reset, not only this one. The UI language is kept.
        """
        locale = self.locale
        # The base state itself too: reset() of a page state skips the vars it inherits.
        base = await self.get_state(BaseState)
        base.reset()
        await self._reset_pages()
        self._user_id, self._org_id, self._role = None, None, ""
        self.session_secret = ""
        self.locale = locale

    async def _reset_pages(self) -> None:
        """Reset every page state (all substates of the base), e.g. when the user or organisation
        changes, so nothing of the previous one stays in memory or is sent on the next hydrate."""
        for cls in _all_substates(BaseState):
            try:
                (await self.get_state(cls)).reset()
            except Exception:  # pragma: no cover - a state that cannot load has nothing to leak
                log.debug("cannot load %s to reset it", cls, exc_info=True)

    async def _enter(self, ctx: Ctx) -> None:
        """Take the freshly resolved caller. When the user or organisation differs from the one
        this tab showed (switched in another tab, a membership removed), every page state is reset
        first, so nothing of the previous one is shown or sent."""
        if self._switched_away:  # the pages were reset when the action was refused
            self._switched_away = False
        elif self._user_id is not None and (self._user_id, self._org_id) != (ctx.user_id, ctx.org_id):
            await self._reset_pages()
        self._apply(ctx)

    async def _ctx(self) -> Ctx | None:
        """The signed-in caller, resolved now through the services; None when signed out/expired."""
        secret = self.session_secret
        if not secret:
            if self.signed_in or self._user_id is not None:
                await self._clear()
            return None
        try:
            ctx = await asyncio.to_thread(_resolve, secret)
        except NotAuthenticated:
            await self._clear()
            return None
        await self._enter(ctx)
        return ctx

    async def _require(self) -> Ctx:
        """The signed-in caller, or NotAuthenticated (``_fail`` turns that into a redirect)."""
        ctx = await self._ctx()
        if ctx is None:
            raise NotAuthenticated("sign-in required")
        return ctx

    async def _actor(self):
        """The ``services.core.authz.Actor`` of the signed-in caller (raises NotAuthenticated)."""
        return (await self._require()).actor

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(session, *args, **kwargs)`` in a worker thread with its own DB session.

        Build the view dicts inside ``fn`` (while the session is open); never return ORM objects
        into public vars.
        """
        return await asyncio.to_thread(_run_in_session, fn, args, kwargs)

    async def _act(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Resolve the caller and run ``fn(session, actor, *args, **kwargs)`` in one thread and one
        session: what the user does on the page. Raises NotAuthenticated when signed out; the
        service checks the role. Raises SwitchedElsewhere, without running ``fn``, when the
        browser's session now works as another user or in another organisation than this tab
        showed (an order confirmed in a dialog opened for one organisation must not be placed in
        the other)."""
        return await self._as_caller(fn, args, kwargs, check_shown=True)

    async def _view(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``_act`` for reading what a page shows (its load and reloads): it shows whoever the
        browser's session works as now, whatever the tab showed before."""
        return await self._as_caller(fn, args, kwargs, check_shown=False)

    async def _as_caller(self, fn: Callable[..., T], args: tuple, kwargs: dict, *, check_shown: bool) -> T:
        secret = self.session_secret
        if not secret:
            await self._clear()
            raise NotAuthenticated("sign-in required")
        if check_shown and self._switched_away:
            raise SwitchedElsewhere("the page was shown for another user or organisation")
        shown = (self._user_id, self._org_id) if check_shown and self._user_id is not None else None
        try:
            ctx, result, failure = await asyncio.to_thread(_act_in_session, secret, fn, args, kwargs, shown)
        except NotAuthenticated:
            await self._clear()
            raise
        if isinstance(failure, SwitchedElsewhere):
            # The page's data goes, but the tab keeps the user and organisation it showed: every
            # further action from this stale page is refused too, until the reload's page load
            # (``_view``) takes the new ones.
            await self._reset_pages()
            self._switched_away = True
            raise failure
        # Another user signed in in this browser meanwhile: the tab forgets the previous one even
        # when this call fails (not found, enrol in two-factor sign-in first).
        await self._enter(ctx)
        if failure is not None:
            raise failure
        return result

    def _login_url(self) -> str:
        url = self.router.url
        target = (url.path or "/").rstrip("/") or "/"  # the static build serves /profile as /profile/
        if url.query:
            target += "?" + url.query
        target = safe_next(target)
        return "/login" if target == "/" else f"/login?next={quote(target, safe='')}"

    def _fail(self, exc: BaseException):
        """The event that tells the user about ``exc``: sign-in page for NotAuthenticated, a
        translated toast for other domain errors, a generic message for anything else (logged)."""
        if isinstance(exc, NotAuthenticated):
            return rx.redirect(self._login_url())
        if isinstance(exc, SwitchedElsewhere):  # the page shows the other one after a moment to read
            return [rx.toast.warning(self._t("error.switched_elsewhere"), duration=SWITCHED_NOTICE_MS),
                    rx.call_script(f"setTimeout(() => window.location.reload(), {SWITCHED_NOTICE_MS})")]
        if getattr(exc, "key", None) == TWO_FACTOR_REQUIRED:
            # the organisation requires two-factor sign-in (the services refuse its data): enrol first
            return rx.redirect(TWO_FACTOR_PAGE, replace=True)
        if not isinstance(exc, DomainError):
            log.exception("unexpected error in a handler", exc_info=exc)
        return rx.toast.error(error_text(exc, self.locale), close_button=True)

    def _ok(self, key: str, **params: Any):
        return rx.toast.success(self._t(key, **params))

    @staticmethod
    def _download(filename: str, data: bytes, kind: str):
        """Hand a file a service built (``kind``: pdf, csv, xlsx) to the browser, as data: never
        through ``/_upload``."""
        return rx.download(data=data, filename=filename, mime_type=MIME_TYPES[kind])

    def _error_text(self, exc: BaseException) -> str:
        """The translated message of ``exc``, for an error line inside a form or a dialog."""
        return error_text(exc, self.locale)

    async def _attempt(self, work: Awaitable[Any]):
        """Await ``work`` (a reload); an exception becomes the event that tells the user."""
        try:
            await work
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return self._fail(exc)
        return None

    # ============================================================================================
    # Event handlers (public: every one checks the caller itself)
    # ============================================================================================
    @rx.event
    async def guard(self):
        """on_load of a page without a load handler of its own: signed out → /login?next=<this
        page>. A page's own load checks the caller itself (``_act``), and ``_fail`` sends a
        signed-out caller to sign in and a refusal for want of two-factor sign-in to enrol."""
        ctx = await self._ctx()
        if ctx is None:
            return rx.redirect(self._login_url(), replace=True)
        return self._two_factor_redirect(ctx)

    def _two_factor_redirect(self, ctx: Ctx):
        """To the profile page when the organisation requires two-factor sign-in and the user has
        not enrolled (the services refuse its data meanwhile); None otherwise."""
        if ctx.two_factor_needed and not (self.router.url.path or "").startswith("/profile"):
            return rx.redirect(TWO_FACTOR_PAGE, replace=True)
        return None

    @rx.event
    async def public_load(self):
        """on_load of /login and /register: a signed-in user goes to the page asked for."""
        ctx = await self._ctx()
        if ctx is not None:
            return rx.redirect(safe_next(self.router.url.query_parameters.get("next")), replace=True)

    @rx.event
    async def sign_out(self):
        secret = self.session_secret
        if secret:
            try:
                await self._call(auth.sign_out, secret)
            except DomainError:
                pass
        await self._clear()
        return rx.redirect("/login", replace=True)

    @rx.event
    async def switch_org(self, org_id: str):
        """Switch the session to another organisation of the user (the service checks membership)."""
        try:
            target = int(str(org_id))
        except (TypeError, ValueError):
            return rx.toast.error(self._t("error.invalid"))
        secret = self.session_secret
        if not secret:
            return rx.redirect(self._login_url())
        try:
            await self._call(auth.switch_organisation, secret, target)
            await self._require()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            return self._fail(exc)
        # Reload the page so every page state loads the new organisation's data.
        return rx.call_script("window.location.reload()")

    @rx.event
    async def set_locale(self, locale: str):
        """Change the UI language; for a signed-in user also their saved language."""
        code = str(locale)
        if code not in LOCALES:
            return
        self.locale = code
        if not self.session_secret:
            return
        try:
            await self._act(_save_locale, code)
        except NotAuthenticated:
            self.locale = code
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.locale = code
        # Server-formatted view data (sums, dates) is in the old language: reload the page.
        return rx.call_script("window.location.reload()")


def _save_locale(session, actor, code: str):
    profile = users.get_profile(session, actor.user_id)
    return users.update_profile(session, actor.user_id, name=profile.name, locale=code)


def _all_substates(cls: type[rx.State]) -> list[type[rx.State]]:
    out: list[type[rx.State]] = []
    for sub in cls.get_substates():
        out.append(sub)
        out.extend(_all_substates(sub))
    return out
