"""The 503 gate tells a stopped database from a busy service (issue 9 row 5).

A pool timeout is what a busy service and a stopped server both look like from inside a
request. The gate asks a fresh connection: refused, the database is down and the next
requests answer 503 at once; answered, the service was only busy and requests go on.
"""

from __future__ import annotations

from pathlib import Path

import eventsourcing.utils
import falcon
import falcon.testing
import psycopg
import pytest
import sqlalchemy.exc

from api.http.errors import register_error_handlers
from api.server.eventstore import DatabaseUnreachable
from api.server.outage import OutageGate
from api.server.wiring import build_services
from tests.live import free_port


class PoolTimedOut:
    """A resource whose every call waits out an exhausted pool."""

    error: Exception = sqlalchemy.exc.TimeoutError("QueuePool limit reached, timed out")

    def __init__(self) -> None:
        self.calls = 0

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.calls += 1
        raise self.error


class EventStoreUnreachable(PoolTimedOut):
    """A resource whose event store call found the database down."""

    error = DatabaseUnreachable("couldn't get a connection after 1.00 sec")


def gated_app(database_answers: bool, resource_class: type[PoolTimedOut] = PoolTimedOut,
              ) -> tuple[falcon.testing.TestClient, PoolTimedOut]:
    gate = OutageGate("postgresql://ledger", reachable=lambda: database_answers)
    app = falcon.App(middleware=[gate])
    register_error_handlers(app)
    gate.register(app)
    resource = resource_class()
    app.add_route("/api/customers/", resource)
    return falcon.testing.TestClient(app), resource


def test_a_pool_timeout_with_the_database_down_closes_the_gate() -> None:
    client, resource = gated_app(database_answers=False)
    first, second = (client.simulate_post("/api/customers/") for _ in range(2))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "5")
    assert second.json == {"detail": "The database is unavailable. Try again later."}
    assert resource.calls == 1  # the second answered at the gate, without waiting


def test_a_pool_timeout_with_the_database_answering_keeps_the_gate_open() -> None:
    client, resource = gated_app(database_answers=True)
    answers = [client.simulate_post("/api/customers/").status_code for _ in range(2)]
    assert answers == [503, 503]
    assert resource.calls == 2  # busy, not down: the next request tries again


def test_a_stopped_server_does_not_answer_and_a_running_one_does(
        postgres_database: str) -> None:
    running = build_services(postgres_database)
    stopped_url = postgres_database.replace(":5432/", f":{free_port()}/")
    stopped = build_services(stopped_url, create_tables=False)
    try:
        assert running.answers() is True
        assert stopped.answers() is False
    finally:
        running.close()
        stopped.close()


def test_sqlite_answers_through_its_engine(tmp_path: Path) -> None:
    services = build_services(f"sqlite:///{tmp_path}/ledger.db", create_tables=True)
    try:
        assert services.answers() is True
    finally:
        services.close()


def test_an_event_store_call_that_found_the_database_down_closes_the_gate() -> None:
    client, resource = gated_app(database_answers=False, resource_class=EventStoreUnreachable)
    first, second = (client.simulate_post("/api/customers/") for _ in range(2))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "5")
    assert second.json == {"detail": "The database is unavailable. Try again later."}
    assert resource.calls == 1


def test_an_event_store_call_with_the_database_down_fails_without_the_librarys_retries(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library retries a recorder call ten times, each waiting a second for the pool:
    12 s of a request thread while the database was down, and /health queued behind it."""
    waits: list[float] = []
    monkeypatch.setattr(eventsourcing.utils, "sleep", waits.append)
    stopped = build_services(postgres_database.replace(":5432/", f":{free_port()}/"))
    try:
        with pytest.raises(DatabaseUnreachable):
            stopped.ledger.recorder.max_notification_id()
        with pytest.raises(DatabaseUnreachable):
            stopped.ledger.recorder.select_notifications(start=1, limit=10)
        assert waits == []
    finally:
        stopped.close()


def test_an_event_store_connection_the_server_dropped_is_retried_while_it_answers(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(eventsourcing.utils, "sleep", waits.append)
    services = build_services(postgres_database, create_tables=True)
    try:
        newest = services.ledger.recorder.max_notification_id()
        with psycopg.connect(postgres_database, autocommit=True) as admin:  # all but this
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "datname = current_database() AND pid <> pg_backend_pid()")
        assert services.ledger.recorder.max_notification_id() == newest
        assert waits  # found dead with the database answering: tried again, not given up
    finally:
        services.close()
