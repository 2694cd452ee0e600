"""Issue 21 rows 3 and 4 against a live gunicorn, SQLite and PostgreSQL: anonymous callers
cost nothing (no body read, no metric label of their choosing)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS
from tests.live import Live, module_server

TRICKLERS = 8  # more than 2 workers x 2 threads


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from module_server(request, tmp_path_factory, "anonymous", {"staff": True},
                             LEDGER_BODY_TIMEOUT_SECONDS="30")


def trickle(live: Live, answers: list[tuple[bytes, float]], stop: threading.Event) -> None:
    """An anonymous POST whose body comes one byte a second; what came back, and when."""
    started = time.monotonic()
    with socket.create_connection(live.host_port, timeout=30) as sock:
        sock.sendall(b"POST /api/customers/ HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(1.0)
        answer = b""
        while not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                continue
            if not chunk:
                break
            answer += chunk
        answers.append((answer, time.monotonic() - started))


def test_anonymous_trickled_bodies_neither_hold_threads_nor_stall_callers(live: Live) -> None:
    answers: list[tuple[bytes, float]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=trickle, args=(live, answers, stop))
               for _ in range(TRICKLERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        with live.client("staff", timeout=10) as client:
            for _ in range(10):
                started = time.monotonic()
                listed = client.get("/api/customers/")
                assert listed.status_code == 200 and listed.json() == []
                assert time.monotonic() - started < 1.0
            created = client.post("/api/customers/", json={"name": "Org"})
            assert (created.status_code, created.json()["name"]) == (201, "Org")
    finally:
        time.sleep(1.5)
        stop.set()
        for thread in threads:
            thread.join()
    assert len(answers) == TRICKLERS
    for answer, seconds in answers:
        assert answer.startswith(b"HTTP/1.1 401"), answer
        assert answer.endswith(b'{"detail":"Authentication credentials were not provided."}')
        assert seconds < 5  # answered at once and hung up on, not drained
