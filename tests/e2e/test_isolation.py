"""Another organisation's data never appears."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.helpers import sign_in

ROMASHKA_MARKERS = ("Ромашка", "@demo.example", "Алишер", "306512874")


def test_owner_of_another_organisation_sees_only_their_own(page):
    sign_in(page, "owner@other.example")
    for path, ready in (("/", "#balance"), ("/account", "#details-form"), ("/account?tab=users", "#members-table"),
                        ("/profile", "#history-table, #history"), ("/help", "#faq")):
        page.goto(path)
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
        body = page.inner_text("body")
        for marker in ROMASHKA_MARKERS:
            assert marker not in body, f"{marker!r} leaked into {path}"
    expect(page.locator("#org-link, #org-switcher")).to_contain_text("Восток Трейд")


def test_state_sent_to_the_browser_has_no_other_tenant_data(page):
    """The websocket deltas (all state the browser receives) of the other owner's pages."""
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    sign_in(page, "owner@other.example")
    page.goto("/account?tab=users")
    page.wait_for_selector("#members-table")
    page.wait_for_load_state("networkidle")
    received = "\n".join(frames)
    assert "Восток" in received  # the frames are captured at all
    for marker in ROMASHKA_MARKERS + ("password_hash", "token_hash"):
        assert marker not in received
