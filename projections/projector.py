"""Catch read models up with the event log, exactly once, resumably; and rebuild them.

One tracking row holds the last notification id applied. Each batch locks that row,
applies the next events and moves the position in the same transaction, so a crash
leaves either everything or nothing of the batch, and two processes never apply the
same notification. A batch is folded in memory and written in bulk (`Changes`).

`rebuild` replays the whole log into a shadow copy of the read models (a schema of its
own on PostgreSQL, an attached file on SQLite) while the API keeps serving the live
tables, then swaps the copy in within one short transaction and refreshes the planner's
statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError as EventStoreInterfaceError
from eventsourcing.persistence import OperationalError as EventStoreOperationalError
from sqlalchemy import (
    Connection,
    Engine,
    Index,
    ScalarSelect,
    Table,
    bindparam,
    column,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import table as lightweight_table
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateTable

from ledger.application import Ledger
from ledger.consumption import ConsumptionItem
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.directory import Customer, Offering, Project
from projections import consumption, credits, directory, schema_version, transactions, versions
from projections.changes import Changes, Key
from projections.dispatch import Handler, route
from projections.search import create_search_indexes
from projections.tables import (
    READ_MODEL_TABLES,
    consumptions,
    credit_allocations,
    credit_versions,
    customer_credits,
    customers,
    metadata,
    offerings,
    project_credits,
    projects,
    tracking,
)

log = logging.getLogger(__name__)
NAME = "read_models"
SHADOW = "shadow"
BATCH = 5000  # events per transaction: a few dozen statements each, whatever the size
# Built once: a statement built per call is walked for its cache key each time.
READ_POSITION = select(tracking.c.position).where(tracking.c.name == NAME)
LOCK_POSITION = (update(tracking).where(tracking.c.name == NAME)
                 .values(position=tracking.c.position).returning(tracking.c.position))
# PostgreSQL: the lock if it is free, else no row (a catch-up is under way elsewhere).
TRY_LOCK_POSITION = (select(tracking.c.position).where(tracking.c.name == NAME)
                     .with_for_update(skip_locked=True))
MOVE_POSITION = (update(tracking).where(tracking.c.name == NAME)
                 .values(position=bindparam("position")))
HANDLERS: Sequence[Handler] = (
    directory.project,
    credits.project,
    versions.project,
    consumption.project,
    transactions.project,
)
Progress = Callable[[int], None]
REVERSALS = (ConsumptionItem.Reversed, ConsumptionItem.CoverageChanged, Credit.DrawReversed)
REFERENCES: tuple[tuple[str, Table], ...] = (  # event fields naming rows a handler reads
    ("customer_id", customers), ("project_id", projects),
    ("project_credit_id", project_credits), ("customer_credit_id", customer_credits),
)
CREATES: dict[type, Table] = {  # an aggregate's first event: no row can exist before it
    Customer.Registered: customers, Project.Registered: projects,
    Offering.Registered: offerings, CustomerCredit.Created: customer_credits,
    ProjectCredit.Created: project_credits,
}


class Projector:
    """Applies the ledger's events to every read model."""

    def __init__(self, app: Ledger, engine: Engine, batch_size: int = BATCH) -> None:
        self.app = app
        self.engine = engine
        self.batch_size = batch_size
        self.known_position = 0  # positions only grow: a floor for the stored one
        self._seen = threading.local()

    def create_tables(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            create_search_indexes(conn)
        with self.engine.begin() as conn:  # SQLite: a transaction that read cannot then write
            self._lock_position(conn)

    def analyze(self) -> None:
        """Fresh planner statistics after a bulk load (an import): the read models and, on
        PostgreSQL, the event store. Until autovacuum gets round to it, the planner takes
        a freshly loaded table for nearly empty and joins a page against every row of it
        (issue 18: a 100-row page scanned every organisation credit)."""
        with self.engine.connect() as conn:
            analyze(conn)
            if conn.dialect.name == "postgresql":
                recorder: Any = self.app.recorder
                schema, table = recorder.datastore.schema, recorder.events_table_name
                with conn.begin():
                    conn.exec_driver_sql(f'ANALYZE "{schema}"."{table}"' if schema
                                         else f'ANALYZE "{table}"')

    def position(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(READ_POSITION).scalar() or 0

    def pending(self) -> bool:
        """Cheap check before taking the lock: is there anything after our position?

        One query in the steady state: the stored position is read only when the log has
        grown past the last position this process saw.
        """
        newest = self.newest_notification_id()
        self._seen.quiet = newest == self.log_end
        self._seen.log_end = newest
        if newest <= self.known_position:
            return False
        self.known_position = max(self.known_position, self.position())
        return newest > self.known_position

    def newest_notification_id(self) -> int:
        """The log's end, in at most two attempts and without the library's 0.2 s pauses
        between them (a pooled connection the server dropped, then a fresh one): each
        request asks it, and should not wait out ten attempts. A database that is down
        fails the first attempt at once (the server's datastore raises an error the
        library does not retry; the API answers 503)."""
        recorder = self.app.recorder
        method = type(recorder).max_notification_id
        once = getattr(method, "__wrapped__", method)
        try:
            return int(once(recorder) or 0)
        except (EventStoreInterfaceError, EventStoreOperationalError):
            return int(once(recorder) or 0)

    @cached_property
    def log_end_column(self) -> ScalarSelect[Any]:
        """The log's end as a column of a read model's statement, read in the same snapshot
        as the rows beside it (api/http/freshness.py). Events and read models share the
        database: a schema on PostgreSQL, a file on SQLite."""
        recorder: Any = self.app.recorder
        if self.engine.dialect.name == "postgresql":
            events = lightweight_table(recorder.events_table_name, column("notification_id"),
                                        schema=recorder.datastore.schema or None)
            return select(func.max(events.c.notification_id)).scalar_subquery()
        events = lightweight_table(recorder.events_table_name, column("rowid"))
        return select(func.max(events.c.rowid)).scalar_subquery()

    @property
    def log_quiet(self) -> bool:
        """Whether this thread's last look found the log where its look before had left
        it: while writers keep it moving, a read let through unconfirmed would only be
        checked and read again (api/http/freshness.py)."""
        return bool(getattr(self._seen, "quiet", False))

    @property
    def log_end(self) -> int:
        """The newest notification id this thread's last `pending` saw (-1 before any):
        everything up to it is in the read models once that catch-up returned."""
        return int(getattr(self._seen, "log_end", -1))

    def catch_up(self, progress: Progress = lambda n: None, saved: int | None = None,
                 wait: bool = True) -> int:
        """Apply every event not yet applied; returns how many were applied.

        A catch-up that fails leaves this thread's log end unknown (-1): the read models
        may not hold what it saw, so nothing may be read or kept as of it.
        `saved`: a position the caller's own save returned, so the log is known to reach
        it and neither the log's end nor the stored position is asked first (the lock
        returns the position): two round trips fewer on every write (issue 18).

        `wait=False` (reads, on PostgreSQL): if another connection holds the lock, it is
        applying what is pending, so return at once and read the read models as its last
        batch left them, instead of queueing behind every writer's catch-up (issue 18:
        reads while posting waited 300 ms). This thread's log end is then unknown (-1),
        so nothing cached by log end is trusted."""
        try:
            return self._catch_up(progress, saved, wait)
        except BaseException:
            self._seen.log_end = -1
            raise

    def _catch_up(self, progress: Progress, saved: int | None, wait: bool) -> int:
        done = 0
        if saved is None and not self.pending():
            return done
        try_only = not wait and self.engine.dialect.name == "postgresql"
        batch = self._try_apply_batch() if try_only else self._apply_batch()
        if batch is None:
            self._seen.log_end = -1
            return done
        while True:
            applied, position = batch
            done += applied
            if applied:
                progress(done)
            if applied < self.batch_size:
                if saved is not None:
                    self._seen.log_end = max(saved, position)
                return done
            batch = self._apply_batch()

    def catch_up_to(self, position: int) -> int:
        """Read-your-writes: wait only until `position` is applied (by anyone)."""
        if position <= self.known_position:
            return 0
        return self.catch_up_patiently(saved=position)

    def catch_up_patiently(self, attempts: int = 3, saved: int | None = None,
                           wait: bool = True) -> int:
        """catch_up for request paths: a busy database is retried, not turned into a 500."""
        for attempt in range(1, attempts + 1):
            try:
                return self.catch_up(saved=saved, wait=wait)
            except OperationalError:
                if attempt == attempts:
                    raise
                log.warning("read models busy; catch-up attempt %d failed", attempt)
                time.sleep(0.05 * attempt)
        return 0

    def _apply_batch(self) -> tuple[int, int]:
        """Apply the next batch; returns how many events and the position after them."""
        with self.engine.begin() as conn:
            applied, position = self._apply_locked(conn, self._lock_position(conn))
        return self._committed(applied, position)

    def _try_apply_batch(self) -> tuple[int, int] | None:
        """`_apply_batch` if the lock is free; None if another connection holds it."""
        with self.engine.begin() as conn:
            locked = conn.execute(TRY_LOCK_POSITION).scalar()
            if locked is None:
                return None
            applied, position = self._apply_locked(conn, int(locked))
        return self._committed(applied, position)

    def _apply_locked(self, conn: Connection, position: int) -> tuple[int, int]:
        applied = self._apply_next(conn, position)
        if applied:
            position = applied[-1]
            conn.execute(MOVE_POSITION, {"position": position})
        return len(applied), position

    def _committed(self, applied: int, position: int) -> tuple[int, int]:
        """Only once the batch is committed may other threads of this process take its
        position as read (`catch_up_to` returns early below it)."""
        self.known_position = max(self.known_position, position)
        return applied, position

    def _apply_next(self, conn: Connection, position: int,
                    schema: str | None = None) -> list[int]:
        """Apply the notifications after `position` (into `schema`); returns their ids."""
        notifications = self.app.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False)
        events = [(self.app.mapper.to_domain_event(n), n.id) for n in notifications]
        apply_events(conn, events, schema)
        return [n.id for n in notifications]

    def _lock_position(self, conn: Connection) -> int:
        """Write to read: takes the row lock (PostgreSQL) or write lock (SQLite), and
        returns the position in the same statement."""
        locked = conn.execute(LOCK_POSITION).scalar()
        if locked is None:
            conn.execute(insert(tracking), dict(name=NAME, position=0))
            return 0
        return int(locked)

    # --- rebuild -------------------------------------------------------------------------

    def rebuild(self, progress: Progress = lambda n: None) -> int:
        """Replay the whole log into shadow tables, then swap them in; returns events replayed.

        The live read models keep serving (and catching up) until the swap, which takes
        the tracking lock, applies what arrived meanwhile and replaces the tables. One
        rebuild at a time: a second one waits for the first (`rebuild_lock`).
        """
        with self.engine.connect() as conn, rebuild_lock(conn):
            shadow = Shadow.open(conn)
            try:
                shadow.create_tables(conn)
                total, position = 0, 0
                while True:
                    with conn.begin():
                        applied = self._apply_next(conn, position, schema=shadow.name)
                    if not applied:
                        break
                    position = applied[-1]
                    total += len(applied)
                    progress(total)
                shadow.create_indexes(conn)
                position, total = self._swap_in(conn, shadow, position, total)
                analyze(conn)
            finally:
                shadow.close(conn)
        self.known_position = max(self.known_position, position)
        return total

    def _swap_in(self, conn: Connection, shadow: Shadow, position: int,
                 total: int) -> tuple[int, int]:
        """Apply what arrived meanwhile and swap, in one short transaction. On PostgreSQL
        its locks wait at most SWAP_LOCK_TIMEOUT: a reader holding one table while it
        waits for another (behind the swap) would otherwise deadlock with it, and the
        deadlock detector could pick the reader. The swap gives way and tries again."""
        for attempt in range(SWAP_ATTEMPTS):
            caught_up, added = position, 0
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                    self._lock_position(conn)
                    while applied := self._apply_next(conn, caught_up, schema=shadow.name):
                        caught_up = applied[-1]
                        added += len(applied)
                    shadow.swap_in(conn)
                    conn.execute(MOVE_POSITION, {"position": caught_up})
                    schema_version.record(conn)
                return caught_up, total + added
            except OperationalError as error:
                if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                log.info("swap waited too long for readers (attempt %d); trying again",
                         attempt + 1)
                time.sleep(0.05 * (attempt % 10 + 1))
        raise RuntimeError(f"The rebuilt read models could not be swapped in: readers held "
                           f"the tables through {SWAP_ATTEMPTS} attempts.")


SWAP_LOCK_TIMEOUT = "200ms"  # under PostgreSQL's deadlock_timeout (1 s)
SWAP_ATTEMPTS = 200
LOCK_NOT_AVAILABLE = "55P03"


@contextmanager
def rebuild_lock(conn: Connection) -> Iterator[None]:
    """One rebuild at a time per read-model schema (or SQLite file): they share the shadow,
    which each starts by emptying. A second rebuild waits, and says so."""
    if conn.dialect.name == "postgresql":
        key = "SELECT hashtext('credit-ledger-rebuild:' || current_schema())"
        with conn.begin():
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock(({key}))").scalar()
        if not got:
            log.warning("another rebuild of these read models is running; waiting for it")
            with conn.begin():
                conn.exec_driver_sql(f"SELECT pg_advisory_lock(({key}))")
        try:
            yield
        finally:
            if conn.in_transaction():
                conn.rollback()
            with conn.begin():
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock(({key}))")
        return
    import fcntl

    database = conn.engine.url.database
    assert database, "SQLite read models live in a file"
    with open(f"{database}.rebuild.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another rebuild of these read models is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def apply_events(conn: Connection, events: list[tuple[Any, int]],
                 schema: str | None = None) -> None:
    """Fold a batch of (event, position) into the read models and write it in bulk."""
    changes = Changes(conn, schema)
    prefetch(changes, [event for event, _ in events])
    routes: dict[type, list[Handler]] = {}
    for event, position in events:
        kind = type(event)
        if kind not in routes:
            routes[kind] = route(HANDLERS, kind)
        for handler in routes[kind]:
            handler(event, changes, position)
    changes.flush()


def prefetch(changes: Changes, events: Iterable[Any]) -> None:
    """Load the rows a batch will touch with a few queries, not one per event."""
    keys: dict[Table, set[Key]] = defaultdict(set)
    versions_written: set[Key] = set()
    event: Any
    for event in events:
        kind: type = type(event)
        created = CREATES.get(kind) if event.originator_version == 1 else None
        if created is not None:
            changes.rows[created].setdefault((event.originator_id.hex,), None)  # new: absent
        if isinstance(event, Credit.Event):
            keys[credits.table_of(event)].add((event.originator_id.hex,))
            versions_written.add((event.originator_id.hex, event.originator_version))
        declared = declared_fields(kind)
        for name, table in references(kind):
            found = getattr(event, name, None)
            if isinstance(found, UUID):
                keys[table].add((found.hex,))
        if "offering_ids" in declared:
            for offering_id in getattr(event, "offering_ids", None) or ():
                keys[offerings].add((offering_id.hex,))
        if "lines" in declared:
            for line in getattr(event, "lines", None) or ():
                keys[projects].add((line["project_id"].hex,))
        if isinstance(event, REVERSALS):
            reversal: Any = event
            keys[consumptions].add((reversal.item_id,))
        for table, key in versions.rows_to_prefetch(event):
            keys[table].add(key)
    keys[credit_versions] -= versions_written  # written by an earlier event of the batch
    for table in (project_credits, customer_credits, offerings, consumptions,
                  credit_versions, credit_allocations):
        changes.load(table, keys[table])
    earmarks = [row for row in changes.rows[project_credits].values() if row]
    changes.load(projects, keys[projects] | {(row["project_uuid"],) for row in earmarks})
    changes.load(customers, keys[customers] | {(row["customer_uuid"],) for row in earmarks})
    organisations = {(row["credit_uuid"],) for row in changes.rows[customers].values()
                     if row and row["credit_uuid"]}
    changes.load(customer_credits, organisations)


@cache
def declared_fields(kind: type) -> frozenset[str]:
    """The fields an event class declares, so prefetch asks each event only for ids it can
    carry (a missing attribute costs an exception inside getattr)."""
    if dataclasses.is_dataclass(kind):
        return frozenset(field.name for field in dataclasses.fields(kind))
    return frozenset(name for name, _ in REFERENCES) | {"offering_ids", "lines"}


@cache
def references(kind: type) -> tuple[tuple[str, Table], ...]:
    """The REFERENCES an event class declares (most declare one or none)."""
    return tuple((name, table) for name, table in REFERENCES if name in declared_fields(kind))


def analyze(conn: Connection) -> None:
    """Fresh planner statistics for the read models (a rebuilt table has none)."""
    with conn.begin():
        if conn.dialect.name == "postgresql":
            for table in READ_MODEL_TABLES:
                conn.exec_driver_sql(f'ANALYZE "{table.name}"')
        else:
            conn.exec_driver_sql("ANALYZE")


class Shadow:
    """Where a rebuild writes: a schema beside the live one, or an attached SQLite file."""

    def __init__(self, name: str, path: Path | None, live_schema: str) -> None:
        self.name = name
        self.path = path
        self.live_schema = live_schema

    @classmethod
    def open(cls, conn: Connection) -> Shadow:
        if conn.dialect.name == "postgresql":
            with conn.begin():
                live = str(conn.exec_driver_sql("SELECT current_schema()").scalar())
                shadow = cls(f"{live}_rebuild", None, live)
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{shadow.name}" CASCADE')
                conn.exec_driver_sql(f'CREATE SCHEMA "{shadow.name}"')
            return shadow
        database = conn.engine.url.database
        assert database, "SQLite read models live in a file"
        path = Path(f"{database}.rebuild")
        path.unlink(missing_ok=True)
        _outside_transaction(conn, f"ATTACH DATABASE '{path}' AS {SHADOW}")
        return cls(SHADOW, path, "main")

    def create_tables(self, conn: Connection) -> None:
        """The tables with their keys and the indexes replay reads by: the others are built
        once the log is replayed (`create_indexes`), quicker than kept up row by row."""
        with self._inside(conn), conn.begin():
            for table in READ_MODEL_TABLES:
                conn.execute(CreateTable(table))
                for index in table.indexes:
                    if serves_replay(index):
                        index.create(conn)

    def create_indexes(self, conn: Connection) -> None:
        """The indexes the API's lists and searches need, before the tables are swapped in
        (SQLite copies the rows into freshly created tables instead)."""
        if self.path is not None:
            return
        with self._inside(conn), conn.begin():
            for table in READ_MODEL_TABLES:
                for index in table.indexes:
                    if not serves_replay(index):
                        index.create(conn)
            create_search_indexes(conn, self.name)

    @contextmanager
    def _inside(self, conn: Connection) -> Iterator[None]:
        """DDL on the metadata's tables goes to the shadow while this lasts."""
        conn.execution_options(schema_translate_map={None: self.name})
        try:
            yield
        finally:
            conn.execution_options(schema_translate_map=None)

    def swap_in(self, conn: Connection) -> None:
        """Replace the live tables by the shadow ones, inside the caller's transaction."""
        live = self.live_schema
        for table in reversed(READ_MODEL_TABLES):
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{live}"."{table.name}"')
        if conn.dialect.name == "postgresql":
            for table in READ_MODEL_TABLES:
                conn.exec_driver_sql(
                    f'ALTER TABLE "{self.name}"."{table.name}" SET SCHEMA "{live}"')
            return
        metadata.create_all(conn, tables=READ_MODEL_TABLES, checkfirst=False)
        for table in READ_MODEL_TABLES:
            conn.exec_driver_sql(
                f'INSERT INTO main."{table.name}" SELECT * FROM {self.name}."{table.name}"')
        create_search_indexes(conn, fresh=True)  # the tables are new: so are their indexes

    def close(self, conn: Connection) -> None:
        if conn.in_transaction():
            conn.rollback()
        if self.path is None:
            with conn.begin():
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
            return
        _outside_transaction(conn, f"DETACH DATABASE {self.name}")
        self.path.unlink(missing_ok=True)


def serves_replay(index: Index) -> bool:
    """Single-column indexes serve the handlers' lookups by column (`Changes.find`); the
    composite, partial and trigram ones serve the API's lists and searches."""
    return len(index.expressions) == 1 and not index.dialect_options["postgresql"]["where"]


def _outside_transaction(conn: Connection, sql: str) -> None:
    """SQLite's ATTACH and DETACH refuse to run inside a transaction."""
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.execute(sql)
