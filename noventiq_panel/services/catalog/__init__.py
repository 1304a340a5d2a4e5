"""What can be bought: products, plans and their prices as customers see them (``catalog``), and
the operator's catalog import from YAML or JSON (``catalog_import``)."""
