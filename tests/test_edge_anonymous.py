"""Issue 21 rows 3 and 4 against a live gunicorn, SQLite and PostgreSQL: anonymous callers
cost nothing (no body read, no metric label of their choosing)."""

from __future__ import annotations

import os
import random
import re
import socket
import string
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.live import Live, module_server

TRICKLERS = 8  # more than 2 workers x 2 threads
REQUESTS = int(os.environ.get("LEDGER_TEST_METHOD_REQUESTS", "2000"))


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


def test_ten_thousand_made_up_methods_leave_metrics_small(live: Live) -> None:
    """Anonymous requests with random methods and paths, from 4 clients: /metrics (open on
    loopback) stays under 64 KB and names none of them."""
    def caller(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=live.url, timeout=10) as client:
            for n in range(REQUESTS // 4):
                method = "".join(rng.choice(string.ascii_uppercase)
                                 for _ in range(rng.randint(3, 10)))
                client.request(method, f"/x{seed}-{n}/" if n % 2 else "/api/customers/")

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scraped = httpx.get(live.url + "/metrics", timeout=10)
    assert scraped.status_code == 200
    assert len(scraped.content) < 64 * 1024
    methods = set(re.findall(r'method="([^"]*)"', scraped.text))
    assert "other" in methods and methods <= {"GET", "HEAD", "POST", "PUT", "PATCH",
                                              "DELETE", "OPTIONS", "other"}
    assert not re.search(r'route="/x', scraped.text)
