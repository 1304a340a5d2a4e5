"""What a customer bought and every change to it: ordering (``ordering``), licence counts
(``licence_count``, ``licences`` for the batches and their cancellation windows), plan changes
(``plan_change``), suspension and settings (``lifecycle``), cancellation (``cancellation``), reading
(``listing``), operations waiting for a payment (``pending_actions``), the jobs that renew and bill
them (``renewals`` over ``chunks``), reminders and guest orders.
The vendor connectors they call live in ``services/vendors``. ``context`` holds what the operations share; ``quotes`` what they return."""
