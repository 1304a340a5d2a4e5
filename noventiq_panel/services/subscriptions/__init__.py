"""What a customer bought and every change to it: ordering, licence counts, plan changes,
suspension and cancellation, the jobs that renew and bill them (``renewals``), the pro rata rules
(``proration``) and the vendor connectors (``provisioning``)."""
