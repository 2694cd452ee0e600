"""Engines for the read models, on SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event


def make_engine(url: str, schema: str | None = None) -> Engine:
    """An engine per process; SQLite gets WAL and a busy timeout like the event store."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 2}  # fail fast when it is down
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    return create_engine(url, connect_args=connect_args, pool_size=4, max_overflow=4,
                         pool_pre_ping=True, pool_timeout=5)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Let SQLAlchemy emit BEGIN itself (pysqlite's own handling breaks savepoints)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
