"""Every page of the panel. Importing a module registers its page (``@panel_page``).

One module a page; add a new page's module to this list.
"""

from . import (  # noqa: F401
    account,
    analytics,
    auth,
    billing,
    catalog,
    help,
    home,
    profile,
    subscription_detail,
    subscriptions,
)
