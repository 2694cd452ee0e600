"""Issue 21 row 2: the aggregate cache under concurrent writers.

eventsourcing's ``Repository.get`` fast-forwarded the cached aggregate in place while
``ledger.loading`` read it without a lock: a batch replayed events its copy already had
and answered 500 OriginatorVersionError. Cached aggregates are now never changed.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import pytest

from api.server.wiring import Services, build_services
from ledger.credits import CustomerCredit
from ledger.loading import load_many, peek
from ledger.terms import Terms
from tests.conftest import BACKENDS
from tests.live import Live, module_server


def credit(services: Services, n: int) -> UUID:
    customer_id = services.ledger.register_customer(f"Org {n}", f"org-{n}", "test")
    return services.ledger.create_customer_credit(customer_id, Decimal(100), Terms(), [],
                                                  "test")


POSTINGS = int(os.environ.get("LEDGER_TEST_RACE_POSTINGS", "480"))
WRITERS = 8


def test_a_cached_aggregate_is_never_changed_in_place(database_url: str) -> None:
    """Another process moves the aggregate on; fetching it here caches a new object and
    leaves the one a concurrent reader may hold exactly as it was."""
    here = build_services(database_url, create_tables=True)
    there = build_services(database_url)
    try:
        credit_id = credit(here, 0)
        held = here.ledger.get(credit_id, CustomerCredit)
        cached = peek(here.ledger, credit_id)
        assert cached is not None and cached.version == held.version
        there.ledger.update_customer_credit(credit_id, "test", value=Decimal(150))
        fresh = here.ledger.get(credit_id, CustomerCredit)
        assert (fresh.version, fresh.value) == (held.version + 1, Decimal(150))
        assert cached.version == held.version  # the object a reader held did not move
        again = peek(here.ledger, credit_id)
        assert again is not cached and again is not None and again.version == fresh.version
        loaded = load_many(here.ledger, {credit_id: CustomerCredit})[credit_id]
        assert loaded.version == fresh.version
    finally:
        here.close()
        there.close()


def test_loads_racing_fetches_of_the_same_aggregate_never_fail(database_url: str) -> None:
    """Threads fetching (repository.get) and batch-loading (load_many) the same cached
    aggregates while a second process keeps changing them."""
    here = build_services(database_url, create_tables=True)
    there = build_services(database_url)
    errors: list[BaseException] = []
    try:
        ids = [credit(here, n) for n in range(3)]
        stop = threading.Event()

        def reader(batch: bool) -> None:
            while not stop.is_set():
                try:
                    if batch:
                        load_many(here.ledger, dict.fromkeys(ids, CustomerCredit))
                    else:
                        here.ledger.get(random.choice(ids), CustomerCredit)
                except BaseException as error:  # noqa: BLE001 - the test collects them
                    errors.append(error)
                    return

        readers = [threading.Thread(target=reader, args=(n % 2 == 0,)) for n in range(4)]
        for thread in readers:
            thread.start()
        for n in range(60):
            there.ledger.update_customer_credit(ids[n % 3], "test", value=Decimal(200 + n))
        stop.set()
        for thread in readers:
            thread.join()
        assert errors == []
        values = [here.ledger.get(i, CustomerCredit).value for i in ids]
        assert values == [Decimal(257), Decimal(258), Decimal(259)]
    finally:
        here.close()
        there.close()


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from module_server(request, tmp_path_factory, "race", {"staff": True})


def test_concurrent_postings_to_overlapping_organisations_get_no_5xx(live: Live) -> None:
    """20 projects in 5 organisations; batches of 1-3 items spanning organisations, from
    8 writers at once: every answer is 201 and every item is recorded once."""
    with live.client("staff") as client:
        orgs = [client.post("/api/customers/", json={"name": f"Org {n}"}).json()
                for n in range(5)]
        for org in orgs:
            assert client.post("/api/customer-credits/", json={
                "customer": org["url"], "value": "1000000"}).status_code == 201
        projects = [client.post("/api/projects/", json={
            "name": f"P{n}", "customer": orgs[n % 5]["url"]}).json() for n in range(20)]
    statuses: list[int] = []
    lock = threading.Lock()
    period = "2026-11"

    def writer(number: int) -> None:
        rng = random.Random(number)
        with live.client("staff") as client:
            for posting in range(POSTINGS // WRITERS):
                batch = [{"id": f"r{number}-{posting}-{k}", "project": project["url"],
                          "amount": "1.5", "period": period}
                         for k, project in enumerate(rng.sample(projects, rng.randint(1, 3)))]
                answer = client.post("/api/consumptions/", json=batch)
                with lock:
                    statuses.append(answer.status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [s for s in statuses if s != 201] == []
    assert len(statuses) == POSTINGS // WRITERS * WRITERS
    assert live.server_errors() == []

