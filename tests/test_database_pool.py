"""Pooled PostgreSQL connections: pinged only after sitting idle, replaced when dead."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from api.server.wiring import Services
from projections import database
from projections.database import make_engine
from tests.conftest import BACKENDS

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL only")


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(admin_url: str, pid: int) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_an_idle_connection_killed_by_the_server_is_replaced(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)
    engine = make_engine(postgres_database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        first = _backend_pid(engine)
        _terminate(postgres_database, first)
        assert _backend_pid(engine) != first  # pinged, found dead, reconnected: no error
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 3600.0)
    engine = make_engine(postgres_database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        pings: list[object] = []
        monkeypatch.setattr(engine.dialect, "do_ping", pings.append)
        for _ in range(3):
            _backend_pid(engine)
        assert pings == []
        monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)
        _backend_pid(engine)
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_reads_keep_autocommit_connections_without_switching_them(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL, requests that only read take connections from a pool of their own that
    stays in autocommit: no isolation level is set at checkout and reset at checkin (80 µs
    of CPU per use when one pool served both, issue 18). Writers still get transactions."""
    if services.engine.dialect.name != "postgresql":
        assert services.reads is services.engine
        return
    with services.reads.connect() as conn:  # the pool's first connection is set up once
        conn.exec_driver_sql("SELECT 1")
    switched: list[str] = []
    dialect_type = type(services.reads.dialect)
    set_level = dialect_type.set_isolation_level

    def counting(self: Any, dbapi_connection: Any, level: Any) -> None:
        switched.append(level)
        set_level(self, dbapi_connection, level)

    monkeypatch.setattr(dialect_type, "set_isolation_level", counting)
    for _ in range(3):
        with services.reads.connect() as conn:
            dbapi_connection: Any = conn.connection.dbapi_connection
            assert dbapi_connection.autocommit is True
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
    assert switched == []
    assert services.reads.pool is not services.engine.pool
    with services.engine.begin() as conn:  # one transaction: one id for both statements
        ids = [conn.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar()
               for _ in range(2)]
    assert ids[0] == ids[1]


def test_a_lost_connection_replaces_both_read_model_pools(services: Services) -> None:
    """A restart or a kill takes every connection, but SQLAlchemy invalidates only the
    pool whose connection failed: after `drop_dead_connections` neither pool may hand out
    a connection that was killed (a retried request met one and answered 503)."""
    if services.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connections to lose")
    for engine in (services.engine, services.reads):
        with engine.connect() as conn:  # pooled, and checked in just now: not pinged
            conn.exec_driver_sql("SELECT 1")
    url = services.engine.url.set(drivername="postgresql", query={})
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "datname = current_database() AND pid <> pg_backend_pid() AND "
                      "backend_type = 'client backend'")
    services.drop_dead_connections()
    for engine in (services.engine, services.reads):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
