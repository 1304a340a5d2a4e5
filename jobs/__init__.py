"""The periodic jobs of the panel and their scheduler.

- ``jobs.job``: what a job is (name → plain function ``run(now) -> str`` and its schedule) and the
  ``job`` decorator.
- ``jobs.registry``: the registered jobs; ``run_job`` runs one once and records it (``JobRun``), as
  the scheduler and ``noventiq-panel jobs run NAME`` do.
- ``jobs.definitions``: the jobs (rating + budget checks, cost anomalies, renewals, reminders, rates, closing
  documents, postpaid invoices, the monthly IaaS report, the outbox sender).
- ``jobs.scheduler``: APScheduler (AsyncIOScheduler) with a database lease so exactly one process
  runs the jobs; ``lifespan`` for Reflex's ``app.register_lifespan_task``; catch-up after downtime.
"""
