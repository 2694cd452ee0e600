"""Builds the per-process services from LEDGER_DATABASE_URL.

The eventsourcing Application and the SQLAlchemy engine hold connections, so each
process (each gunicorn worker, after fork) builds its own. Tables are created once,
at start-up, never by every worker.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from sqlalchemy import Engine

from api.http import idempotency
from api.server import eventstore
from ledger.application import Ledger
from notifications import tables as notification_tables
from projections import schema_version
from projections.database import for_ddl, make_engine
from projections.projector import Projector


def default_database_url() -> str:
    """A SQLite file in the user's data directory: the same for every current directory
    (Linux: ~/.local/share/credit-ledger/credit-ledger.db)."""
    from platformdirs import user_data_path

    return f"sqlite:///{user_data_path('credit-ledger') / 'credit-ledger.db'}"


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass
class Services:
    """What a request handler or CLI command needs, built once per process."""

    ledger: Ledger
    engine: Engine
    projector: Projector
    url: str
    today: Callable[[], date] = field(default=today_utc)
    # For requests that only read: on PostgreSQL a pool in autocommit, without BEGIN and
    # ROLLBACK round trips (each statement sees committed read models, as Django's
    # autocommit); on SQLite the engine itself.
    read_engine: InitVar[Engine | None] = None
    reads: Engine = field(init=False)
    events_check: CheckAfterLoss = field(init=False)

    def __post_init__(self, read_engine: Engine | None) -> None:
        self.reads = read_engine or self.engine
        self.events_check = CheckAfterLoss()
        if (pool := self._events_pool()) is not None:
            pool._check = self.events_check  # psycopg_pool's check, called on checkout

    def close(self) -> None:
        self.ledger.close()
        self._replace_read_model_pools()

    def answers(self) -> bool:
        """Whether the database answers a fresh connection now. On PostgreSQL not a pooled
        one: a pool every thread is waiting on says the service is busy, not that the
        database is down, and a pool of a stopped server made each request wait for it."""
        datastore = getattr(self.ledger.recorder, "datastore", None)
        if isinstance(datastore, eventstore.BootableDatastore):
            return datastore.answers()
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means: it does not answer
            return False

    def drop_dead_connections(self) -> None:
        """After a lost connection: for a few seconds the event store's pool tests each
        connection it hands out and replaces dead ones (testing them all at once held
        them from other threads). SQLAlchemy invalidated only the read-model pool whose
        connection failed; the other lost its connections too (a restart or a kill takes
        them all), so both are replaced."""
        self.events_check.lost()
        self._replace_read_model_pools()

    def _replace_read_model_pools(self) -> None:
        """Close the idle connections of both read-model pools and start each afresh;
        connections in use are closed when they come back."""
        self.engine.dispose()
        if self.reads is not self.engine:
            self.reads.dispose()

    def _events_pool(self) -> Any:
        return getattr(getattr(self.ledger.recorder, "datastore", None), "pool", None)


class CheckAfterLoss:
    """A psycopg_pool `check` that tests a connection before use only shortly after a
    connection was lost: no round trip per request in steady use."""

    SECONDS = 5.0

    def __init__(self) -> None:
        self.lost_at = -self.SECONDS

    def lost(self) -> None:
        self.lost_at = time.monotonic()

    def __call__(self, conn: Any) -> None:
        if time.monotonic() - self.lost_at < self.SECONDS:
            from psycopg_pool import ConnectionPool

            ConnectionPool.check_connection(conn)


@dataclass(frozen=True)
class Database:
    """One database URL split into eventsourcing settings and a SQLAlchemy URL."""

    event_store_env: dict[str, str]
    sqlalchemy_url: str
    schema: str | None = None

    @property
    def sqlite_path(self) -> str | None:
        return self.event_store_env.get("SQLITE_DBNAME")


def database_url() -> str:
    return os.environ.get("LEDGER_DATABASE_URL") or default_database_url()


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def parse_database_url(url: str) -> Database:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path in ("", ":memory:"):
            raise ValueError("Use a file for SQLite: the event store and read models share it.")
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path,
               "SQLITE_LOCK_TIMEOUT": "30"}
        return Database(env, f"sqlite:///{path}")
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        schema = query.pop("schema", [None])[0]
        env = {
            "PERSISTENCE_MODULE": eventstore.TOPIC,
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or getpass.getuser()),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": os.environ.get("LEDGER_EVENTS_POOL_SIZE", "2"),
            "POSTGRES_MAX_OVERFLOW": os.environ.get("LEDGER_EVENTS_MAX_OVERFLOW", "6"),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
            # Seconds to wait for a pooled connection; the library retries each call 10
            # times, so its 30 s default kept requests hanging for minutes during outages.
            "POSTGRES_CONNECT_TIMEOUT": os.environ.get("LEDGER_DB_CONNECT_TIMEOUT", "1"),
        }
        if schema:
            env["POSTGRES_SCHEMA"] = schema
        user = env["POSTGRES_USER"] + (f":{env['POSTGRES_PASSWORD']}" if parts.password else "")
        netloc = f"{user}@{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
        rest = urlencode({k: v[0] for k, v in query.items()})
        sa_url = f"postgresql+psycopg://{netloc}/{env['POSTGRES_DBNAME']}"
        return Database(env, sa_url + (f"?{rest}" if rest else ""), schema)
    raise ValueError(f"Unsupported database URL {redact(url)!r}: use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DB")


def build_services(url: str | None = None, create_tables: bool = False,
                   today: Callable[[], date] = today_utc) -> Services:
    """Connect to the event store and read models; create their tables if asked."""
    url = url or database_url()
    database = parse_database_url(url)
    env = {**database.event_store_env, "CREATE_TABLE": "y" if create_tables else "n",
           # Credits gain events with every draw; a per-process cache that fast-forwards
           # from the store keeps loads cheap and stays correct with several workers.
           "AGGREGATE_CACHE_MAXSIZE": "1000"}
    ledger = Ledger(env=env)
    engine = make_engine(database.sqlalchemy_url, database.schema)
    projector = Projector(ledger, engine)
    if create_tables:
        ddl = for_ddl(engine)
        Projector(ledger, ddl).create_tables()
        schema_version.initialise(ddl)
        idempotency.metadata.create_all(ddl)
        notification_tables.metadata.create_all(ddl)
    reads = (make_engine(database.sqlalchemy_url, database.schema, autocommit=True)
             if engine.dialect.name == "postgresql" else None)
    return Services(ledger=ledger, engine=engine, projector=projector, url=url, today=today,
                    read_engine=reads)


def create_tables(url: str | None = None) -> None:
    """Run the DDL of the event store and the read models (gunicorn's on_starting, the CLI).

    On PostgreSQL, concurrent DDL (even `IF NOT EXISTS` / `CREATE OR REPLACE` on existing
    objects) fails with "tuple concurrently updated", e.g. two CLI commands at once or one
    while the server starts; callers take turns on an advisory lock per schema. The schema
    of `?schema=NAME` is created if it does not exist.
    """
    database = parse_database_url(url or database_url())
    if database.sqlite_path is not None:
        Path(database.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        build_services(url, create_tables=True).close()
        return
    from sqlalchemy import text

    engine = make_engine(database.sqlalchemy_url, database.schema)
    key = f"credit-ledger-ddl:{database.schema or ''}"
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": key})
            try:
                if database.schema:  # `?schema=NAME` is made when missing
                    quoted = conn.dialect.identifier_preparer.quote_identifier(database.schema)
                    conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
                build_services(url, create_tables=True).close()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key})
    finally:
        engine.dispose()
