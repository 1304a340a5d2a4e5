"""What can be bought: products, plans and their prices as customers see them (``catalog``), the
operator's catalog import from YAML or JSON (``catalog_import``), what kind of payment a plan is
(``payment_models``), and each subscription with its catalog labels (``subscription_info``)."""
