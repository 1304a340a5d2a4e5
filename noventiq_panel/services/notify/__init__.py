"""E-mail: the outbox, its templates and the operator's view of it (``notifications``), and
sending it over SMTP (``mailer``)."""
