"""Several processes making the tables of one fresh database at once all succeed.

That is what happens when CLI commands run while a server starts: each runs the idempotent
DDL first. On SQLite a deferred transaction that read the schema could not then create a
table another process had just created ("database is locked" at once, no busy wait).
"""

from __future__ import annotations

import multiprocessing
import secrets
import traceback
from multiprocessing.synchronize import Barrier

import psycopg
import pytest

from api.server.wiring import build_services, create_tables

PROCESSES = 8


def _make_tables(url: str, start: Barrier, failures: multiprocessing.Queue[str]) -> None:
    start.wait()
    try:
        create_tables(url)
    except Exception:  # noqa: BLE001 - the parent reports what went wrong
        failures.put(traceback.format_exc())


def test_concurrent_table_creation_on_a_fresh_database(database_url: str) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(PROCESSES)
    failures: multiprocessing.Queue[str] = context.Queue()
    workers = [context.Process(target=_make_tables, args=(database_url, start, failures))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == []
    services = build_services(database_url)
    try:
        assert services.projector.position() == 0
    finally:
        services.close()


def test_a_schema_named_in_the_url_is_created_when_missing(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 21 row 15: `?schema=NAME` need not exist beforehand."""
    from api.cli import main

    schema = f"fresh_{secrets.token_hex(4)}"
    url = f"{postgres_database}?schema={schema}"
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    try:
        assert main(["users", "create", "alice"]) == 0
        assert main(["users", "list"]) == 0
        assert "alice" in capsys.readouterr().out
        with psycopg.connect(postgres_database) as conn:
            tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_schema = %s", [schema]).fetchone()
        assert tables is not None and tables[0] > 5
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
