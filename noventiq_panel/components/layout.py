"""The page frame and the page decorator.

``@panel_page("/billing", title_key="billing.title", section="billing", on_load=BillingState.load)``
registers a page: the layout (left menu, top bar with the organisation and the user menu, a
drawer at phone width), the document title, and the sign-in guard (``BaseState.guard`` runs
before the page's own ``on_load``). ``public=True`` gives the centred card frame of the auth
pages and no guard.
"""

from __future__ import annotations

from typing import Any, Callable

import reflex as rx

from ..i18n import LOCALE_NAMES, LOCALES
from ..state.base import BaseState
from .text import T

APP_NAME = "Noventiq"

# (section, route, icon, message key) of the main menu, in order.
MENU: list[tuple[str, str, str, str]] = [
    ("home", "/", "house", "menu.home"),
    ("subscriptions", "/subscriptions", "layers", "menu.subscriptions"),
    ("catalog", "/catalog", "shopping-cart", "menu.catalog"),
    ("billing", "/billing", "wallet", "menu.billing"),
    ("analytics", "/analytics", "chart-column", "menu.analytics"),
]

SIDEBAR_WIDTH = "15rem"
DESKTOP = rx.breakpoints(initial="none", md="flex")
MOBILE = rx.breakpoints(initial="flex", md="none")


def brand(compact: bool = False, href: str = "/") -> rx.Component:
    """The logo, a link to ``href``; ``compact`` shows the name only from tablet width (phone top bar)."""
    return rx.link(
        rx.hstack(
            rx.box(
                rx.icon("cloud", size=18, color="white"),
                background=rx.color("accent", 9),
                border_radius="8px",
                padding="5px",
                display="flex",
            ),
            rx.text(APP_NAME, weight="bold", size="4", color=rx.color("gray", 12),
                    display=rx.breakpoints(initial="none", sm="block") if compact else "block"),
            spacing="2",
            align="center",
        ),
        href=href,
        underline="none",
        id="brand",
    )


def menu_item(section: str, route: str, icon: str, key: str, active: str | None) -> rx.Component:
    is_active = section == active
    return rx.link(
        rx.hstack(
            rx.icon(icon, size=18),
            rx.text(T(key), size="3", weight="medium" if is_active else "regular"),
            spacing="3",
            align="center",
            padding_x="0.75rem",
            padding_y="0.55rem",
            border_radius="8px",
            width="100%",
            background=rx.color("accent", 4) if is_active else "transparent",
            color=rx.color("accent", 11) if is_active else rx.color("gray", 11),
            _hover={"background": rx.color("accent", 3), "color": rx.color("accent", 11)},
        ),
        href=route,
        underline="none",
        width="100%",
        id=f"menu-{section}",
        aria_current="page" if is_active else None,
    )


def main_menu(active: str | None) -> rx.Component:
    return rx.vstack(
        *[menu_item(s, r, i, k, active) for s, r, i, k in MENU],
        spacing="1",
        width="100%",
        role="navigation",
        aria_label=T("a11y.main_menu"),
    )


def sidebar(active: str | None) -> rx.Component:
    return rx.box(
        rx.vstack(
            rx.box(brand(), padding_x="0.75rem", padding_y="0.5rem"),
            main_menu(active),
            spacing="5",
            width="100%",
            position="sticky",
            top="0",
            padding="1rem 0.75rem",
        ),
        display=DESKTOP,
        width=SIDEBAR_WIDTH,
        min_width=SIDEBAR_WIDTH,
        border_right=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 2),
        align_self="stretch",
    )


def mobile_menu(active: str | None) -> rx.Component:
    return rx.drawer.root(
        rx.drawer.trigger(
            rx.icon_button(rx.icon("menu", size=20), variant="ghost", size="2", aria_label=T("a11y.open_menu"),
                           id="menu-open"),
            display=MOBILE,
        ),
        rx.drawer.overlay(z_index="40"),
        rx.drawer.portal(
            rx.drawer.content(
                rx.vstack(
                    rx.hstack(
                        brand(),
                        rx.drawer.close(rx.icon_button(rx.icon("x", size=18), variant="ghost",
                                                     aria_label=T("a11y.close"))),
                        justify="between",
                        width="100%",
                        align="center",
                    ),
                    main_menu(active),
                    spacing="5",
                    width="100%",
                ),
                top="0",
                left="0",
                height="100%",
                width="17rem",
                padding="1rem",
                background=rx.color("gray", 1),
                z_index="50",
            )
        ),
        direction="left",
    )


def _menu_line(*parts: rx.Component) -> rx.Component:
    return rx.hstack(*parts, spacing="2", align="center")


def _menu_label(icon: str, key: str) -> rx.Component:
    """An icon and a translated label: one line of a menu."""
    return _menu_line(rx.icon(icon, size=14), rx.text(T(key)))


def _menu_choice(chosen: Any, label: Any) -> rx.Component:
    """A choice of a menu, ticked when it is the current one."""
    return _menu_line(rx.cond(chosen, rx.icon("check", size=14), rx.box(width="14px")), rx.text(label))


def _menu_note(text: Any) -> rx.Component:
    """A small grey line inside a menu (who is signed in, what the items below do)."""
    return rx.text(text, size="1", color=rx.color("gray", 11), padding_x="0.75rem", padding_y="0.25rem")


def org_switcher() -> rx.Component:
    """The organisation's name → /account; a menu to switch when the user has several."""
    single = rx.link(
        rx.hstack(
            rx.icon("building-2", size=16),
            rx.text(BaseState.org_name, size="2", weight="medium", trim="both", class_name="nq-ellipsis"),
            spacing="2",
            align="center",
        ),
        href="/account",
        underline="none",
        color=rx.color("gray", 12),
        id="org-link",
        max_width=rx.breakpoints(initial="9rem", sm="18rem", lg="24rem"),
    )
    many = rx.menu.root(
        rx.menu.trigger(
            rx.button(
                rx.icon("building-2", size=16),
                rx.text(BaseState.org_name, class_name="nq-ellipsis"),
                rx.icon("chevrons-up-down", size=14),
                variant="ghost",
                color_scheme="gray",
                id="org-switcher",
                max_width=rx.breakpoints(initial="10rem", sm="20rem", lg="26rem"),
            )
        ),
        rx.menu.content(
            rx.menu.item(_menu_label("settings", "menu.account"), on_click=rx.redirect("/account"),
                         id="org-menu-account"),
            rx.menu.separator(),
            _menu_note(T("layout.switch_org")),
            rx.foreach(
                BaseState.orgs,
                lambda o: rx.menu.item(
                    _menu_choice(o["id"] == BaseState.current_org_id, o["name"]),
                    on_click=BaseState.switch_org(o["id"]),
                    class_name="org-option",
                ),
            ),
            align="end",
        ),
    )
    return rx.cond(BaseState.has_many_orgs, many, single)


def user_menu() -> rx.Component:
    return rx.menu.root(
        rx.menu.trigger(
            rx.button(
                rx.avatar(fallback=BaseState.user_initials, size="1", radius="full"),
                rx.text(BaseState.user_name, display=rx.breakpoints(initial="none", sm="block"),
                        class_name="nq-ellipsis", max_width="12rem"),
                rx.icon("chevron-down", size=14),
                variant="ghost",
                color_scheme="gray",
                id="user-menu",
            )
        ),
        rx.menu.content(
            _menu_note(BaseState.user_email),
            rx.menu.item(_menu_label("user", "menu.profile"), on_click=rx.redirect("/profile"), id="menu-profile"),
            rx.menu.item(_menu_label("circle-help", "menu.help"), on_click=rx.redirect("/help"), id="menu-help"),
            rx.menu.separator(),
            rx.menu.sub(
                rx.menu.sub_trigger(_menu_label("languages", "menu.language"), id="menu-language"),
                rx.menu.sub_content(
                    *[
                        rx.menu.item(_menu_choice(BaseState.locale == loc, LOCALE_NAMES[loc]),
                                     on_click=BaseState.set_locale(loc), id=f"menu-lang-{loc}")
                        for loc in LOCALES
                    ]
                ),
            ),
            rx.menu.item(
                _menu_line(
                    rx.color_mode_cond(light=rx.icon("moon", size=14), dark=rx.icon("sun", size=14)),
                    rx.color_mode_cond(light=rx.text(T("menu.theme_dark")), dark=rx.text(T("menu.theme_light"))),
                ),
                on_click=rx.toggle_color_mode,
                id="menu-theme",
            ),
            rx.menu.separator(),
            rx.menu.item(
                _menu_label("log-out", "menu.sign_out"),
                on_click=BaseState.sign_out,
                color_scheme="red",
                id="menu-sign-out",
            ),
            align="end",
        ),
    )


def _bar(left: rx.Component, right: rx.Component) -> rx.Component:
    """The sticky bar at the top of a page: ``left`` and ``right`` at its ends."""
    return rx.hstack(
        left,
        right,
        justify="between",
        align="center",
        width="100%",
        padding_x=rx.breakpoints(initial="0.75rem", sm="1.5rem"),
        height="3.5rem",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        position="sticky",
        top="0",
        z_index="10",
    )


def topbar(active: str | None) -> rx.Component:
    return _bar(
        rx.hstack(
            mobile_menu(active),
            rx.box(brand(compact=True), display=MOBILE),
            spacing="2",
            align="center",
        ),
        rx.hstack(
            org_switcher(),
            rx.separator(orientation="vertical", size="1"),
            user_menu(),
            spacing="3",
            align="center",
            min_width="0",
        ),
    )


def loading_block(padding: str = "4rem") -> rx.Component:
    return rx.center(rx.spinner(size="3"), padding=padding, width="100%")


def when_loaded(loaded: Any, content: rx.Component) -> rx.Component:
    """A page's content once its state has loaded it; a spinner until then."""
    return rx.cond(loaded, content, loading_block("3rem"))


def tab_panel(value: str, content: rx.Component) -> rx.Component:
    """The content of the tab ``value``, a little below the tab list."""
    return rx.tabs.content(rx.box(content, padding_top="1rem"), value=value)


def layout(content: rx.Component, active: str | None) -> rx.Component:
    """The signed-in frame. The content shows only once the session is resolved (no flash of
    another user's or an empty page before the guard redirects)."""
    return rx.box(
        sidebar(active),
        rx.box(
            topbar(active),
            rx.box(
                rx.cond(BaseState.signed_in, content, loading_block()),
                role="main",
                width="100%",
                max_width="80rem",
                margin_x="auto",
                padding=rx.breakpoints(initial="1rem", sm="1.5rem", lg="2rem"),
            ),
            flex="1",
            min_width="0",
        ),
        display="flex",
        min_height="100vh",
        background=rx.color("gray", 1),
    )


def language_links(on_select: Callable[[str], Any] = BaseState.set_locale) -> list[rx.Component]:
    """One link a language, the current one in bold; ``on_select(locale)`` is the event."""
    return [
        rx.link(
            # the name of the language; its two-letter code on a phone, where three names do not fit
            rx.text(LOCALE_NAMES[loc], as_="span", display=rx.breakpoints(initial="none", xs="inline")),
            rx.text(loc.upper(), as_="span", display=rx.breakpoints(initial="inline", xs="none"),
                    aria_label=LOCALE_NAMES[loc]),
            lang=loc,
            on_click=on_select(loc),
            size="2",
            weight=rx.cond(BaseState.locale == loc, "bold", "regular"),
            color=rx.cond(BaseState.locale == loc, rx.color("accent", 11), rx.color("gray", 11)),
            cursor="pointer",
            id=f"lang-{loc}",
        )
        for loc in LOCALES
    ]


def language_switch() -> rx.Component:
    """Language links for the pages before sign-in."""
    return rx.hstack(
        *language_links(),
        rx.icon_button(
            rx.color_mode_cond(light=rx.icon("moon", size=16), dark=rx.icon("sun", size=16)),
            on_click=rx.toggle_color_mode,
            variant="ghost",
            size="1",
            aria_label=T("a11y.toggle_theme"),
        ),
        spacing="4",
        align="center",
    )


def public_layout(content: rx.Component) -> rx.Component:
    """The frame of the auth pages: brand, language switch, a centred card."""
    return rx.box(
        rx.hstack(brand(), language_switch(), justify="between", align="center", width="100%",
                  padding="1rem 1.5rem"),
        rx.center(
            rx.card(content, width="100%", max_width="26rem", size=rx.breakpoints(initial="2", sm="4")),
            padding_x="1rem",
            padding_top=rx.breakpoints(initial="1rem", sm="4rem"),
            padding_bottom="3rem",
            width="100%",
            role="main",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def storefront_layout(content: rx.Component, language_switch_of: Callable[[str], Any] | None = None) -> rx.Component:
    """The frame of a page a visitor may see without signing in (the catalog): the logo, "Sign in"
    and "Register" links and the language switch above the full-width content.
    ``language_switch_of(locale)``: the page's own language event (to reload server-formatted data)."""
    on_select = BaseState.set_locale if language_switch_of is None else language_switch_of
    langs = rx.hstack(*language_links(on_select), spacing="3", align="center")
    return rx.box(
        _bar(
            brand(href="/catalog"),
            rx.hstack(
                langs,
                rx.separator(orientation="vertical", size="1"),
                rx.link(T("guest.header.sign_in"), href="/login?next=%2Fcatalog", size="2", weight="medium",
                        id="guest-sign-in"),
                rx.link(rx.button(T("guest.header.register"), size="2"), href="/register", id="guest-register"),
                spacing="4",
                align="center",
            ),
        ),
        rx.box(
            content,
            role="main",
            width="100%",
            max_width="80rem",
            margin_x="auto",
            padding=rx.breakpoints(initial="1rem", sm="1.5rem", lg="2rem"),
        ),
        min_height="100vh",
        background=rx.color("gray", 1),
    )


def page_header(title_key: str, *actions: rx.Component, subtitle: Any = None) -> rx.Component:
    """The heading of a page, with optional action buttons on the right."""
    return rx.flex(
        rx.vstack(
            rx.heading(T(title_key), size=rx.breakpoints(initial="6", sm="7"), id="page-title"),
            *( [rx.text(subtitle, color=rx.color("gray", 11), size="2")] if subtitle is not None else [] ),
            spacing="1",
        ),
        rx.hstack(*actions, spacing="2", wrap="wrap") if actions else rx.fragment(),
        justify="between",
        align=rx.breakpoints(initial="start", sm="center"),
        direction=rx.breakpoints(initial="column", sm="row"),
        gap="3",
        width="100%",
        margin_bottom="1.5rem",
    )


def panel_page(
    route: str,
    *,
    title_key: str,
    section: str | None = None,
    on_load: Any = None,
    public: bool = False,
    redirect_signed_in: bool = False,
    guest_view: tuple[Any, Callable[[], rx.Component]] | None = None,
) -> Callable[[Callable[[], rx.Component]], Callable[[], rx.Component]]:
    """Register a page of the panel.

    - ``title_key``: catalog key of the document title.
    - ``section``: which main-menu item is highlighted (home, subscriptions, catalog, billing,
      analytics) or None.
    - ``on_load``: the page state's handler(s). They check the caller first (``await
      self._act(...)`` or ``self._require()``) and hand a failure to ``self._fail``, which sends a
      signed-out visitor to /login?next=... and a user who must first enrol in two-factor sign-in
      to the profile. A non-public page without ``on_load`` gets ``BaseState.guard`` (one session
      lookup per page load, not two).
    - ``public``: an auth page (no guard, the card frame). ``redirect_signed_in``: send a
      signed-in user on (to ?next= or /), for /login and /register.
    - ``guest_view=(mode_var, render_guest)``: the page may be seen WITHOUT signing in (only
      /catalog). No guard runs: ``on_load`` decides and sets ``mode_var`` to "guest" or "user";
      "guest" shows ``render_guest()`` (its own storefront frame), "user" the signed-in layout.
    """

    def decorator(render: Callable[[], rx.Component]) -> Callable[[], rx.Component]:
        loads: list[Any] = []
        if public:
            if redirect_signed_in:
                loads.append(BaseState.public_load)
        elif guest_view is None and on_load is None:
            loads.append(BaseState.guard)
        if on_load is not None:
            loads.extend(on_load if isinstance(on_load, (list, tuple)) else [on_load])

        def component() -> rx.Component:
            body = render()
            if guest_view is not None:
                mode, render_guest = guest_view
                return rx.match(mode, ("guest", render_guest()), ("user", layout(body, section)),
                                rx.box(loading_block(), min_height="100vh", background=rx.color("gray", 1)))
            return public_layout(body) if public else layout(body, section)

        component.__name__ = render.__name__
        component.__module__ = render.__module__
        component.__qualname__ = render.__qualname__
        PAGES.append((component, {"route": route, "title": T(title_key) + f" · {APP_NAME}", "on_load": loads or None}))
        return render

    return decorator


# Every page of the panel, added once by ``noventiq_panel.py`` (``app.add_page``). Not ``rx.page``:
# Reflex re-applies decorated pages at each compile of a process, and the production server
# compiles twice (the build, then the backend), which logged every page as "redefined".
PAGES: list[tuple[Callable[[], rx.Component], dict[str, Any]]] = []
