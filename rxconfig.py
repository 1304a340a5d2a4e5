import os

import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin

from noventiq_panel.config import get_settings

settings = get_settings()

config = rx.Config(
    app_name="noventiq_panel",
    db_url=settings.db_url,
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # States hold the session secret: keep them in memory (one worker) or in Redis (several
    # workers), never in Reflex's default on-disk pickles.
    state_manager_mode="redis" if os.environ.get("REFLEX_REDIS_URL") else "memory",
    # The Radix theme of every page (the plugin's place since Reflex 0.9, not App(theme=...)).
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(appearance="inherit", accent_color="indigo",
                                                        gray_color="slate", radius="medium", scaling="100%",
                                                        has_background=True))],
    disable_plugins=[SitemapPlugin],
    cors_allowed_origins=[settings.base_url] if settings.base_url.startswith("https://") else ["*"],
)
