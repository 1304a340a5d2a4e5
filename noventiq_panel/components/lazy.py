"""Parts of a page drawn only once they come near the screen (charts below the fold): the browser
then parses and lays them out after the first paint, or not at all when the user never scrolls
there. react-intersection-observer's ``InView`` tells the page state when its box comes within
``margin`` of the viewport; the state keeps a flag that the page turns into the real content."""

from __future__ import annotations

from typing import Any

import reflex as rx


LAZY_CLASS = "nq-lazy"  # marks the parts drawn when seen (screenshots scroll to draw them first)


class InView(rx.Component):
    """``<InView>`` of react-intersection-observer: calls ``on_change(in_view)`` when its box enters
    or leaves the viewport (extended by ``root_margin``)."""

    library = "react-intersection-observer@11.0.1"
    tag = "InView"

    trigger_once: rx.Var[bool]
    root_margin: rx.Var[str]

    on_change: rx.EventHandler[lambda in_view, _entry: [in_view]]


def when_seen(shown: Any, on_seen: Any, content: rx.Component, *, height: str, margin: str = "300px",
              **props: Any) -> rx.Component:
    """``content`` once ``shown`` (a state flag that ``on_seen(in_view: bool)`` sets) is true; until
    then an empty box of ``height`` that reports when it comes within ``margin`` of the screen."""
    return InView.create(
        rx.cond(shown, content, rx.box(min_height=height, width="100%")),
        trigger_once=True, root_margin=margin, on_change=on_seen, width="100%", class_name=LAZY_CLASS, **props,
    )
