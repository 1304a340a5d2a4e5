"""The business rules. No Reflex import here: pages, jobs and the CLI call these functions."""
