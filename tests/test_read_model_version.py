"""Read models built by an older release are not served: 503 until `rebuild`."""

from __future__ import annotations

import falcon.testing
import pytest
from sqlalchemy import text

from api.app import create_app
from api.cli import main
from api.server import gunicorn_conf
from api.server.wiring import Services
from projections import schema_version
from projections.schema_version import READ_MODEL_VERSION, read_model_version
from tests.support import Directory

STALE = (f"The read models are at schema version {READ_MODEL_VERSION - 1}; this release "
         f"needs {READ_MODEL_VERSION}. Run `credit-ledger rebuild` (or start with "
         f"LEDGER_AUTO_REBUILD=1).")


@pytest.fixture(autouse=True)
def same_database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)


def make_older(services: Services, drop_column: bool = False) -> None:
    """What a database of the previous release looks like (here: users without is_active)."""
    with services.engine.begin() as conn:
        schema_version.record(conn, READ_MODEL_VERSION - 1)
        if drop_column:
            conn.execute(text("ALTER TABLE users DROP COLUMN is_active"))


def test_an_older_read_model_answers_503_until_rebuild(
        directory: Directory, services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    staff = directory.staff
    org = directory.customer("Org")
    make_older(services, drop_column=True)
    client = falcon.testing.TestClient(create_app(services))
    refused = client.simulate_get("/api/customers/", headers=staff)
    assert (refused.status_code, refused.json, refused.headers["Retry-After"]) == (
        503, {"detail": STALE}, "30")
    health = client.simulate_get("/health")
    assert (health.status_code, health.json) == (
        503, {"status": "read models need a rebuild", "detail": STALE})
    services.ledger.create_user("late", "0" * 40, False, False, "test")  # not yet projected
    assert client.simulate_get("/api/schema/").status_code == 200
    assert "ledger_projector_lag_events 1.0" in client.simulate_get("/metrics").text
    assert main(["users", "list"]) == 1
    assert STALE in capsys.readouterr().err
    assert main(["rebuild"]) == 0
    assert client.simulate_get("/health").status_code == 200
    listed = client.simulate_get("/api/customers/", headers=staff)
    assert [c["uuid"] for c in listed.json] == [org["uuid"]]


def test_a_missing_version_with_data_is_stale_and_auto_rebuild_fixes_it(
        directory: Directory, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    directory.customer("Org")
    with services.engine.begin() as conn:
        conn.execute(read_model_version.delete())
    assert schema_version.problem(services.engine) == STALE.replace(
        f"version {READ_MODEL_VERSION - 1};", "version none;")
    gunicorn_conf.rebuild_if_stale()  # not configured: nothing happens
    assert schema_version.problem(services.engine) is not None
    monkeypatch.setenv("LEDGER_AUTO_REBUILD", "1")
    gunicorn_conf.rebuild_if_stale()
    assert schema_version.problem(services.engine) is None
    with services.engine.connect() as conn:
        assert schema_version.stored_version(conn) == READ_MODEL_VERSION


def test_a_new_database_starts_current(services: Services) -> None:
    assert schema_version.problem(services.engine) is None
