"""Engines for the read models, on SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError

from projections.lazy_description import LazyDescriptionCursor

# PostgreSQL connection settings, per process (each gunicorn worker has its own pools: the
# read models' here, the event store's in eventsourcing). Waits are short: a database that
# is down is answered with 503 at once rather than a request that hangs.
POOL_SIZE = int(os.environ.get("LEDGER_DB_POOL_SIZE", "4"))
MAX_OVERFLOW = int(os.environ.get("LEDGER_DB_MAX_OVERFLOW", "4"))
POOL_TIMEOUT = float(os.environ.get("LEDGER_DB_POOL_TIMEOUT", "5"))
CONNECT_TIMEOUT = int(os.environ.get("LEDGER_DB_CONNECT_TIMEOUT", "2"))
IDLE_PING_SECONDS = 1.0


def make_engine(url: str, schema: str | None = None, autocommit: bool = False) -> Engine:
    """An engine per process; SQLite gets WAL and a busy timeout like the event store.

    `autocommit` (PostgreSQL): a pool of its own whose connections stay in autocommit, for
    requests that only read. An engine that switches a shared pool's connection into
    autocommit per checkout (`execution_options`) and back at checkin spent 80 µs of CPU
    on it per use (issue 18)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT,
                                    "cursor_factory": LazyDescriptionCursor}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, connect_args=connect_args, pool_size=POOL_SIZE,
                           max_overflow=MAX_OVERFLOW, pool_timeout=POOL_TIMEOUT,
                           isolation_level="AUTOCOMMIT" if autocommit else None)
    ping_idle_connections(engine)
    return engine


def ping_idle_connections(engine: Engine) -> None:
    """`pool_pre_ping`, but only for connections that sat idle: one in steady use needs
    no round trip of its own before each request (that ping cost as much as a page's
    query). One idle past IDLE_PING_SECONDS, as after an outage, is tested and, if dead,
    replaced by the pool (DisconnectionError makes it connect afresh)."""

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(str(error)) from error

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)


def for_ddl(engine: Engine) -> Engine:
    """The engine for `create_all` and friends: on SQLite its transactions take the write
    lock first. `create_all` reads the schema, then creates; a deferred transaction whose
    snapshot another process's DDL has overtaken fails at once with "database is locked"
    (the busy timeout does not apply), so CLI commands beside a starting server failed."""
    return engine.execution_options(sqlite_immediate=True)


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Let SQLAlchemy emit BEGIN itself (pysqlite's own handling breaks savepoints)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
