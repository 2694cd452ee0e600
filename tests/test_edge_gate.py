"""The 503 gate tells a stopped database from a busy service (issue 9 row 5).

A pool timeout is what a busy service and a stopped server both look like from inside a
request. The gate asks a fresh connection: refused, the database is down and the next
requests answer 503 at once; answered, the service was only busy and requests go on.
"""

from __future__ import annotations

from pathlib import Path

import falcon
import falcon.testing
import sqlalchemy.exc

from api.http.errors import register_error_handlers
from api.server.outage import OutageGate
from api.server.wiring import build_services
from tests.live import free_port


class PoolTimedOut:
    """A resource whose every call waits out an exhausted pool."""

    def __init__(self) -> None:
        self.calls = 0

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.calls += 1
        raise sqlalchemy.exc.TimeoutError("QueuePool limit reached, timed out")


def gated_app(database_answers: bool) -> tuple[falcon.testing.TestClient, PoolTimedOut]:
    gate = OutageGate("postgresql://ledger", reachable=lambda: database_answers)
    app = falcon.App(middleware=[gate])
    register_error_handlers(app)
    gate.register(app)
    resource = PoolTimedOut()
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
