"""Pay-as-you-go consumption: importing the vendors' usage exports (``usage_import``), charging it
(``rating``), and budgets with their alerts (``budgets``, ``budget_alerts``)."""
