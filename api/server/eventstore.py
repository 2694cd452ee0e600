"""eventsourcing's PostgreSQL persistence, able to start and to fail fast while the database
is down.

The library's recorders fetch composite type adapters when they are constructed, so a
worker could not even build its Application without the database, and gunicorn's master
gave up on workers that failed to boot. Those adapters serve only the insert-by-database-
function path (`POSTGRES_ENABLE_DB_FUNCTIONS`, off here), so an unreachable database at
that moment is logged, not fatal; every later call connects as usual.

The library also runs each recorder call up to ten times on an operational error, 0.2 s
apart, each attempt waiting up to `POSTGRES_CONNECT_TIMEOUT` for a pooled connection: a
call made while the database was down held its request thread for 12 s, so requests
queued behind it, /health's included. A call whose error comes with a database that
answers no fresh connection now raises `DatabaseUnreachable`, which the library does not
retry and the API answers with 503 (api/server/outage.py). A connection the server dropped
while it still answers fresh ones is retried as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.persistence import DatabaseError, InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore, PostgresFactory

from projections.database import CONNECT_TIMEOUT

log = logging.getLogger(__name__)
TOPIC = "api.server.eventstore:BootablePostgresFactory"


class DatabaseUnreachable(DatabaseError):
    """The event store's database answers no fresh connection (not an operational error,
    so the library's retry lets it through at once)."""


class BootableDatastore(PostgresDatastore):
    def register_type_adapters(self) -> None:
        try:
            super().register_type_adapters()
        except (OperationalError, InterfaceError, DatabaseUnreachable) as error:
            log.warning("event store unreachable while starting: %s", error)

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        try:
            with super().get_connection() as conn:
                yield conn
        except (OperationalError, InterfaceError) as error:
            if not self.answers():
                raise DatabaseUnreachable(str(error)) from error
            raise

    def answers(self) -> bool:
        """Whether the database takes a fresh connection now (the pool's may all be dead,
        or all busy)."""
        pool: Any = self.pool  # built by the library with a plain conninfo and kwargs
        try:
            kwargs = {**pool.kwargs, "connect_timeout": CONNECT_TIMEOUT}
            psycopg.connect(pool.conninfo, **kwargs).close()
        except psycopg.Error:
            return False
        return True


class BootablePostgresFactory(PostgresFactory):
    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.datastore.__class__ = BootableDatastore  # built by the parent, not connected
