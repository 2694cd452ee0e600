"""Issue 21 row 1: `rebuild` swaps the read models in while readers run (PostgreSQL, live
gunicorn: no reader sees anything but 200), and two rebuilds at once both finish, one after
the other, leaving the same read models (both backends)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.server.wiring import Services, build_services
from tests.live import Live, postgres_server
from tests.support import Directory, read_model_rows

READERS = 6
REBUILDS = int(os.environ.get("LEDGER_TEST_REBUILDS", "5"))
LISTS = ("/api/customer-credits/", "/api/project-credits/", "/api/credit-transactions/",
         "/api/customers/", "/api/projects/?o=name", "/api/consumptions/c-1/")


def some_ledger(directory: Directory) -> None:
    for n in range(3):
        org = directory.customer(f"Org {n}")
        directory.customer_credit(org, "1000")
        project = directory.project(org, f"P{n}")
        directory.project_credit(project, "100")
        directory.post("/api/consumptions/", [{"id": f"c-{n}", "project": project["url"],
                                               "amount": "5", "period": "2026-10"}])


def test_two_rebuilds_at_once_both_finish_with_the_same_read_models(
        services: Services, directory: Directory, database_url: str) -> None:
    some_ledger(directory)
    before = read_model_rows(services.engine)
    totals: list[int] = []
    errors: list[BaseException] = []

    def rebuild() -> None:
        other = build_services(database_url)
        try:
            totals.append(other.projector.rebuild())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            other.close()

    threads = [threading.Thread(target=rebuild) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = services.ledger.recorder.max_notification_id()
    assert totals == [events, events]
    assert read_model_rows(services.engine) == before


@pytest.fixture
def live(postgres_database: str, tmp_path: Path) -> Iterator[Live]:
    yield from postgres_server(postgres_database, tmp_path)


def test_readers_see_only_200_through_back_to_back_rebuilds(live: Live,
                                                            tmp_path: Path) -> None:
    services = build_services(live.database_url)
    try:
        import falcon.testing

        from api.app import create_app

        directory = Directory(services, falcon.testing.TestClient(create_app(services)))
        directory.tokens["staff"] = live.headers["staff"]["Authorization"].split()[1]
        some_ledger(directory)
        statuses: list[tuple[str, int]] = []
        stop = threading.Event()

        def reader(number: int) -> None:
            path = LISTS[number % len(LISTS)]
            with live.client("staff") as client:
                while not stop.is_set():
                    statuses.append((path, client.get(path).status_code))

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            for _ in range(REBUILDS):
                assert services.projector.rebuild() > 0
        finally:
            time.sleep(0.3)
            stop.set()
            for thread in threads:
                thread.join()
        assert [s for s in statuses if s[1] != 200] == []
        assert len(statuses) > 100
        assert "database unavailable" not in live.log.read_text()  # not even retried
    finally:
        services.close()
