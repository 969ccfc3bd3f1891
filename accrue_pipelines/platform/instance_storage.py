"""Dagster's PostgreSQL storage, holding its connections open (`storage: custom` in dagster.yaml).

Why: Dagster's PostgreSQL storages open a new connection for every query (SQLAlchemy
`NullPool`, so that idle instances hold nothing). A sync run writes ~190 events and
each costs several queries: `make bench` counted 876 connections in one no-change
sync run, at 5.3 ms each on localhost (a query on an open connection: 0.15 ms), i.e.
more than half of the run's wall time spent connecting. The webserver already avoids
this (`optimize_for_webserver`: a pool of one connection); this class does the same in
every process that loads the instance — run workers, the daemon, the CLI.

Each process keeps at most one idle connection per storage (runs, events, schedules):
three per process, so size PostgreSQL's `max_connections` (or put PgBouncer in front)
for 3 × (concurrent runs + daemon + webserver) plus the warehouse's own pool. Threads
beyond the first (the daemon's) get overflow connections, closed after use as before.
"""

from __future__ import annotations

from typing import Any

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# Connections older than this are replaced (a restarted PostgreSQL or a proxy's idle cut).
POOL_RECYCLE_SECONDS = 3600
# Extra connections for concurrent threads (the daemon's sensors, submissions, dequeues):
# above this a thread would wait for one, so it is far above the daemon's thread count.
MAX_OVERFLOW = 32
# 0 = no statement timeout, PostgreSQL's default: a run's writes must not be cut short.
STATEMENT_TIMEOUT_MS = 0


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage with one pooled connection per storage instead of none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same pooled engine the webserver uses; the webserver replaces it with its own.
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            storage.optimize_for_webserver(STATEMENT_TIMEOUT_MS, POOL_RECYCLE_SECONDS,
                                           MAX_OVERFLOW)

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
