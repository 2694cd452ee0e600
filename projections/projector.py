"""Catch read models up with the event log, exactly once, resumably; and rebuild them.

One tracking row holds the last notification id applied. Each batch locks that row,
applies the next events and moves the position in the same transaction, so a crash
leaves either everything or nothing of the batch, and two processes never apply the
same notification.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import OperationalError

from ledger.application import Ledger
from projections import consumption, credits, directory, schema_version, transactions
from projections.tables import READ_MODEL_TABLES, metadata, tracking

Handler = Callable[[Any, Connection, int], None]
log = logging.getLogger(__name__)
NAME = "read_models"
HANDLERS: Sequence[Handler] = (
    directory.project,
    credits.project,
    consumption.project,
    transactions.project,
)


class Projector:
    """Applies the ledger's events to every read model."""

    def __init__(self, app: Ledger, engine: Engine, batch_size: int = 500) -> None:
        self.app = app
        self.engine = engine
        self.batch_size = batch_size
        self.known_position = 0  # positions only grow: a floor for the stored one

    def create_tables(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            self._lock_position(conn)

    def position(self) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(select(tracking.c.position).where(tracking.c.name == NAME))
            return found.scalar() or 0

    def pending(self) -> bool:
        """Cheap check before taking the lock: is there anything after our position?

        One query in the steady state: the stored position is read only when the log has
        grown past the last position this process saw.
        """
        newest = self.app.recorder.max_notification_id() or 0
        if newest <= self.known_position:
            return False
        self.known_position = self.position()
        return newest > self.known_position

    def catch_up(self, progress: Callable[[int], None] = lambda n: None) -> int:
        """Apply every event not yet applied; returns how many were applied."""
        done = 0
        if not self.pending():
            return done
        while True:
            applied = self._apply_batch()
            done += applied
            if applied:
                progress(done)
            if applied < self.batch_size:
                return done

    def catch_up_patiently(self, attempts: int = 3) -> int:
        """catch_up for request paths: a busy database is retried, not turned into a 500."""
        for attempt in range(1, attempts + 1):
            try:
                return self.catch_up()
            except OperationalError:
                if attempt == attempts:
                    raise
                log.warning("read models busy; catch-up attempt %d failed", attempt)
                time.sleep(0.05 * attempt)
        return 0

    def _apply_batch(self) -> int:
        with self.engine.begin() as conn:
            position = self._lock_position(conn)
            notifications = self.app.recorder.select_notifications(
                start=position, limit=self.batch_size, inclusive_of_start=False
            )
            for notification in notifications:
                self.apply(conn, self.app.mapper.to_domain_event(notification), notification.id)
            if notifications:
                position = notifications[-1].id
                conn.execute(
                    update(tracking).where(tracking.c.name == NAME).values(position=position)
                )
        self.known_position = max(self.known_position, position)
        return len(notifications)

    @staticmethod
    def apply(conn: Connection, domain_event: Any, position: int) -> None:
        for handler in HANDLERS:
            handler(domain_event, conn, position)

    def _lock_position(self, conn: Connection) -> int:
        """Write first, then read: takes the row lock (PostgreSQL) or write lock (SQLite)."""
        locked = conn.execute(
            update(tracking).where(tracking.c.name == NAME)
            .values(position=tracking.c.position)
        )
        if locked.rowcount == 0:
            conn.execute(insert(tracking), dict(name=NAME, position=0))
        found = conn.execute(select(tracking.c.position).where(tracking.c.name == NAME))
        return int(found.scalar_one())

    def rebuild(self, progress: Callable[[int], None] = lambda n: None) -> int:
        """Drop every read model and replay the whole log into it, in one transaction."""
        total = 0
        with self.engine.begin() as conn:
            self._lock_position(conn)
            metadata.drop_all(conn, tables=READ_MODEL_TABLES)
            metadata.create_all(conn, tables=READ_MODEL_TABLES)
            position = 0
            while True:
                notifications = self.app.recorder.select_notifications(
                    start=position, limit=self.batch_size, inclusive_of_start=False
                )
                if not notifications:
                    break
                for notification in notifications:
                    domain_event = self.app.mapper.to_domain_event(notification)
                    self.apply(conn, domain_event, notification.id)
                position = notifications[-1].id
                total += len(notifications)
                progress(total)
            conn.execute(update(tracking).where(tracking.c.name == NAME).values(position=position))
            schema_version.record(conn)
        return total
