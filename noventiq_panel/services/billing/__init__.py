"""Money coming in and documents going out: invoices and payments (``payments``), how a customer
can pay (``payment_methods``), monthly closing documents (``documents``), the transactions list
(``transactions``) and the PDF renderers (``pdf``)."""
