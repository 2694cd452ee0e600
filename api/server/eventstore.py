"""eventsourcing's PostgreSQL persistence, able to start while the database is down.

The library's recorders fetch composite type adapters when they are constructed, so a
worker could not even build its Application without the database, and gunicorn's master
gave up on workers that failed to boot. Those adapters serve only the insert-by-database-
function path (`POSTGRES_ENABLE_DB_FUNCTIONS`, off here), so an unreachable database at
that moment is logged, not fatal; every later call connects as usual.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore, PostgresFactory

log = logging.getLogger(__name__)
TOPIC = "api.server.eventstore:BootablePostgresFactory"


class BootableDatastore(PostgresDatastore):
    def register_type_adapters(self) -> None:
        try:
            super().register_type_adapters()
        except (OperationalError, InterfaceError) as error:
            log.warning("event store unreachable while starting: %s", error)


class BootablePostgresFactory(PostgresFactory):
    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.datastore.__class__ = BootableDatastore  # built by the parent, not connected
