"""Money coming in and documents going out: invoices to pay (``invoices``, their number and PDF in
``invoice_document``), money received and the waiting actions it completes (``payments``), bank
statements (``statement_import``), postpaid invoices and overdue marking (``postpaid``), how a
customer can pay (``payment_methods``), monthly closing documents (``documents``) with their
electronic invoice and act for Didox (``esf``), the transactions list (``transactions``) and the
PDF renderers (``pdf``)."""
