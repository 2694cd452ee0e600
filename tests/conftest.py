"""Fixtures: every storage test runs on SQLite and on PostgreSQL (a fresh schema each)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import falcon.testing
import psycopg
import pytest

from api.app import create_app
from api.server.wiring import Services, build_services
from tests.support import Clock, Directory, travelling_clock

ADMIN_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = os.environ.get("LEDGER_TEST_BACKENDS", "sqlite,postgresql").split(",")


# The longest tests (one to two minutes each on 2 vCPUs): run first, so that under xdist
# they run beside the short ones instead of after them (last, they added ~2 min).
LONGEST_FIRST = ("tests/test_money_model.py", "tests/test_cache_race.py",
                 "tests/test_edge_outage.py", "tests/test_notifications_process.py",
                 "tests/test_edge_reconnect.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.partition("::")[0] not in LONGEST_FIRST)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throw-away database for the whole run, dropped at the end."""
    name = f"credit_ledger_test_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_schema_url(request: pytest.FixtureRequest) -> Iterator[str]:
    database = request.getfixturevalue("postgres_database")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{database}?schema={schema}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
    else:
        yield from _postgres_schema_url(request)


@pytest.fixture
def clock() -> Iterator[Clock]:
    """Today is 2026-11-26, and events are recorded at noon UTC of whatever day it is."""
    with travelling_clock(date(2026, 11, 26)) as clock:
        yield clock


@pytest.fixture
def services(database_url: str, clock: Clock) -> Iterator[Services]:
    services = build_services(database_url, create_tables=True, today=clock)
    yield services
    services.close()


@pytest.fixture
def client(services: Services) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(services))


@pytest.fixture
def directory(services: Services, client: falcon.testing.TestClient) -> Directory:
    return Directory(services, client)
