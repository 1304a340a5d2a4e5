"""E-mail: the outbox and its templates (``notifications``), sending it over SMTP (``mailer``) and
the reminders the daily jobs send (``reminders``)."""
