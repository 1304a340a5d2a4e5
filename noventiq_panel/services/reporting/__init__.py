"""Read-only views over spending: the analytics filters (``filters``), ledger spend by structure and
over time (``spend``), the daily IaaS detail (``iaas``), the home page's figures (``dashboard``),
the exported reports (``reports``) and the monthly IaaS report mail (``monthly_reports``)."""
