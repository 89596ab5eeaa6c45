"""Background upkeep inside the qcluster workers: ``ticker`` (runs Django-Q2's scheduler
every ``CENSUS_SCHEDULER_TICK`` seconds and the sweeper), ``sweeper`` (finds attempts and
follow-ups no task will finish, and lookups no task will run), ``upkeep`` (prunes old task
rows and snapshots, hourly)."""
