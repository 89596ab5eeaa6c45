"""What operators see: ``stats`` (the figures of ``census_stats``), ``metrics`` (Prometheus,
derived from the database), ``snapshots`` (one kept page per signature of an answer in no
known shape)."""
