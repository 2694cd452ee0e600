"""Issue 9 row 10: PostgreSQL stopped and restarted under load, on a throwaway cluster.

Never the shared server on 5432: this test runs its own `initdb` cluster on a loopback
port of the suite's range, as the `postgres` user, and skips when the binaries are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.live import free_port, live_server, make_users

PG_BIN = Path(os.environ.get("LEDGER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
WRITERS = 4
MAX_WRITES = 200  # per writer; writers go on until the database is back (bounded)


class Cluster:
    """A PostgreSQL cluster of our own, run as the `postgres` system user."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.data = root / "data"

    def run(self, *argv: str) -> None:
        command = " ".join(f"'{part}'" for part in argv)
        subprocess.run(["su", "postgres", "-s", "/bin/bash", "-c", command], check=True,
                       capture_output=True, timeout=60)

    def init(self) -> None:
        self.run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")

    def start(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                 "-w", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}",
                 "start")

    def stop(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists() or shutil.which("su") is None or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL's initdb/pg_ctl and root (to run them as postgres)")
    root = Path(tempfile.mkdtemp(prefix="ledger-edge-pg-"))
    root.chmod(0o777)
    cluster = Cluster(root)
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
            conn.execute("CREATE DATABASE fresh")
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_stopped_and_restarted_under_load(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.url("ledger")
    headers = make_users(url, staff=True)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    with live_server(url, tmp_path) as live:
        live.headers = headers
        statuses: list[int] = []
        failures: list[BaseException] = []
        written: list[str] = []
        lock = threading.Lock()
        recovered = threading.Event()

        def writer(number: int) -> None:
            """Each write retried with its key until it is recorded: what a client does;
            writing goes on through the outage until the database is back."""
            try:
                with live.client("staff", timeout=30) as client:
                    for request in range(MAX_WRITES):
                        if recovered.is_set():
                            return
                        write_until_recorded(client, f"{number}-{request}")
                        with lock:
                            written.append(f"Load {number}-{request}")
                        time.sleep(0.05)
            except BaseException as error:
                failures.append(error)

        def write_until_recorded(client: httpx.Client, label: str) -> None:
            while True:
                answer = client.post("/api/customers/", json={"name": f"Load {label}"},
                                     headers={"Idempotency-Key": f"load-{label}"})
                with lock:
                    statuses.append(answer.status_code)
                if answer.status_code == 201:
                    return
                if answer.status_code == 503:
                    assert answer.headers["Retry-After"] == "5"
                    assert answer.json() == {
                        "detail": "The database is unavailable. Try again later."}
                else:  # its first attempt's answer is stored once the database is back
                    assert (answer.status_code, answer.json()) == (409, {
                        "detail": "A request with this Idempotency-Key is in progress."})
                time.sleep(0.5)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        cluster.stop()
        with live.client(timeout=5) as client:
            time.sleep(1)
            for _ in range(3):
                started = time.monotonic()
                health = client.get("/health")
                assert time.monotonic() - started < 1.0
                assert health.status_code == 503
                assert health.json()["database"] in ("unreachable", "timeout")
            # a server started while the database is down boots, and says so
            with live_server(cluster.url("fresh"), fresh_dir) as fresh:
                down = httpx.get(fresh.url + "/health", timeout=5)
                assert down.status_code == 503
                time.sleep(2)
                cluster.start()
                _wait_healthy(live.url)
                _wait_healthy(fresh.url)
                # its tables were created once the database came back (each worker's gate
                # reopens within Retry-After)
                refused = _first_answer_but_503(fresh.url + "/api/customers/")
                assert (refused.status_code, refused.json()) == (401, {"detail": "Invalid token."})
                assert fresh.server_errors() == []
        time.sleep(1)
        recovered.set()
        for thread in threads:
            thread.join()
        assert failures == []
        assert 503 in statuses, sorted(set(statuses))
        with live.client("staff") as client:  # a worker's gate may stay shut for Retry-After
            deadline = time.monotonic() + 10
            while (listed := client.get("/api/customers/", params={
                    "name": "Load ", "page_size": 300})).status_code == 503 \
                    and time.monotonic() < deadline:
                time.sleep(0.3)
        assert listed.status_code == 200, listed.text
        names = sorted(row["name"] for row in listed.json())
        assert names == sorted(written)  # none lost, none doubled
        assert live.proc.poll() is None
        assert live.server_errors() == []


def _wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not recover")


def _first_answer_but_503(url: str, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(url, timeout=5, headers={"Authorization": "Token nobody"})
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)
