"""The foundation every area builds on: money and time (``money``, ``clock``, ``localdays``,
``rates``, ``cbu_rates``, the pro rata rules in ``proration``), the domain errors, who may do what
(``authz``), and the rows that record facts: ledger entries (``ledger``), audit events (``audit``)
and document numbers (``numbering``); the formats of tax codes and bank requisites (``requisites``);
plus the schema migrations (``schema``)."""
