"""The demo data set: two organisations with a history of orders, payments and usage, loaded by
``noventiq-panel demo`` and ``scripts/run.sh`` on an empty database (``demo``: who is who, rates,
the loader; ``histories``: the two organisations' stories, written by ``builder``; ``azure_usage``)."""
