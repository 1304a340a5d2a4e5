"""Read-only views over spending: analytics and the daily IaaS detail (``analytics``), the home
page's figures (``dashboard``) and the exported reports (``reports``)."""
