"""The foundation every area builds on: money and time (``money``, ``clock``, ``rates``), the domain
errors, who may do what (``authz``), and the rows that record facts: ledger entries (``ledger``),
audit events (``audit``) and document numbers (``numbering``); plus the schema migrations."""
