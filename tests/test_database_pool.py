"""Pooled PostgreSQL connections: pinged only after sitting idle, replaced when dead."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine, text

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
