"""Pay-as-you-go consumption: reading the vendors' usage exports (``usage_formats``), importing
them (``usage_import``, from a watched folder: ``folder_import``), exporting them as FOCUS
(``focus_export``), charging them (``rating``), the daily roll-up of usage by resource
(``rollup``), budgets with their alerts (``budgets``, ``budget_alerts``), and cost anomaly alerts
(``anomalies``)."""
