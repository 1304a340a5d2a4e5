import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin

from noventiq_panel.config import get_settings

settings = get_settings()

config = rx.Config(
    app_name="noventiq_panel",
    db_url=settings.db_url,
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[],
    disable_plugins=[SitemapPlugin],
    cors_allowed_origins=[settings.base_url] if settings.base_url.startswith("https://") else ["*"],
)
