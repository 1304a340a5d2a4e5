"""The demo data set: two organisations with a history of orders, payments and usage, loaded by
``noventiq-panel demo`` and ``scripts/run.sh`` on an empty database."""
