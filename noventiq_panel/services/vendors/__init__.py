"""The vendors' side of a subscription: the connector protocol and its registry (``connector``),
and the connectors that speak a vendor's API (Microsoft Partner Center: ``partner_center``).
Knows nothing of the panel's tables: subscription services call it inside their transaction."""
