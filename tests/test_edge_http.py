"""Issue 9 against a live gunicorn (gthread), SQLite and PostgreSQL: hostile bodies, HEAD,
slow clients, concurrent keyed and unkeyed writers, idempotency rows of refused requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from api.http.idempotency import idempotent_requests
from api.server.wiring import parse_database_url
from tests.conftest import BACKENDS
from tests.live import Live, backend_url, live_server, make_users

MB = 1024 * 1024
KEEPALIVE_REQUESTS = 3


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("edge")
    admin = request.getfixturevalue("postgres_database") if request.param != "sqlite" else ""
    with backend_url(request.param, workdir, admin) as url:
        headers = make_users(url, staff=True, user=False)
        with live_server(url, workdir, LEDGER_BODY_TIMEOUT_SECONDS="1",
                         LEDGER_HEADER_TIMEOUT_SECONDS="3",
                         LEDGER_KEEPALIVE_REQUESTS=str(KEEPALIVE_REQUESTS)) as server:
            server.headers = headers
            yield server
            assert server.server_errors() == []


def stored_keys(live: Live) -> int:
    database = parse_database_url(live.database_url)
    engine = create_engine(database.sqlalchemy_url, connect_args=(
        {"options": f"-csearch_path={database.schema}"} if database.schema else {}))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(idempotent_requests))
                       .scalar_one())
    finally:
        engine.dispose()


def customers_named(live: Live, name: str) -> list[dict[str, Any]]:
    with live.client("staff") as client:
        found = client.get("/api/customers/", params={"name": name, "page_size": 300})
    assert found.status_code == 200
    return [row for row in found.json() if row["name"] == name]


# --- hostile bodies (rows 3, 5, 6) ---------------------------------------------------------

@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_bodies_are_a_400(live: Live, depth: int) -> None:
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    with live.client("staff") as client:
        answer = client.post("/api/customers/", content=body,
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {"detail": "JSON parse error - Could not parse JSON body - "
                                       "nesting too deep"}


def test_authorisation_is_decided_before_the_body_is_parsed(live: Live) -> None:
    """A non-staff caller with an Idempotency-Key and a hostile body: 403, nothing stored."""
    before = stored_keys(live)
    body = "[" * 100_000 + "]" * 100_000
    with live.client("user") as client:
        answer = client.post("/api/customers/", content=body, headers={
            "Content-Type": "application/json", "Idempotency-Key": "deep"})
    assert answer.status_code == 403
    assert answer.json() == {"detail": "You do not have permission to perform this action."}
    assert stored_keys(live) == before


def test_a_body_over_the_limit_is_refused_before_it_is_read(live: Live) -> None:
    """Only headers are sent: the 413 comes at once, without waiting for 100 MB."""
    started = time.monotonic()
    with socket.create_connection(live.host_port, timeout=5) as sock:
        sock.sendall(b"POST /api/customers/ HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {100 * MB}\r\n".encode()
                     + f"Authorization: {live.headers['staff']['Authorization']}".encode()
                     + b"\r\n\r\n")
        answer = ""
        while not answer.endswith("}"):
            answer += sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '{"detail":"Request body is larger than 10485760 bytes."}' in answer
    assert time.monotonic() - started < 2


def test_ten_megabytes_and_one_byte_is_a_413_and_nothing_is_recorded(live: Live) -> None:
    with live.client("staff") as client:
        before = client.head("/api/customers/").headers["X-Result-Count"]
        answer = client.post("/api/customers/", content=b'{"name": "' + b"x" * (10 * MB)
                             + b'"}', headers={"Content-Type": "application/json"})
        assert answer.status_code == 413
        assert client.head("/api/customers/").headers["X-Result-Count"] == before


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start:start + 7]


def test_chunked_bodies_are_read_whole(live: Live) -> None:
    with live.client("staff") as client:
        created = client.post("/api/customers/", content=_chunks(b'{"name": "Chunky"}'),
                              headers={"Content-Type": "application/json"})
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "Chunky"
        credit = client.post("/api/customer-credits/", json={
            "customer": created.json()["url"], "value": "10"}).json()
        patched = client.patch(f"/api/customer-credits/{credit['uuid']}/",
                               content=_chunks(b'{"value": "42.5"}'),
                               headers={"Content-Type": "application/json"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["value"] == "42.50000"
        assert client.get(f"/api/customer-credits/{credit['uuid']}/").json()["value"] == (
            "42.50000")


# --- HEAD wherever GET (row 7) -------------------------------------------------------------

def test_head_answers_wherever_get_does_without_a_body(live: Live) -> None:
    with live.client("staff") as client:
        org = client.post("/api/customers/", json={"name": "Headed"}).json()
        credit = client.post("/api/customer-credits/", json={
            "customer": org["url"], "value": "5"}).json()
        paths = ["/health", "/api/schema/", f"/api/customers/{org['uuid']}/",
                 f"/api/customer-credits/{credit['uuid']}/",
                 f"/api/customer-credits/{credit['uuid']}/history/",
                 "/api/billing-periods/", "/api/reconciliation/?period=2026-10"]
        for path in paths:
            get, head = client.get(path), client.head(path)
            assert get.status_code == 200, (path, get.text)
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-type"] == get.headers["content-type"], path


# --- slow clients (row 4) ------------------------------------------------------------------

def test_stalled_clients_leave_health_answering_in_under_a_second(live: Live) -> None:
    """Sixteen sockets that never finish their headers: more than 2 workers x 4 threads."""
    stalled = []
    try:
        for _ in range(16):
            sock = socket.create_connection(live.host_port, timeout=5)
            sock.sendall(b"POST /api/customers/ HTTP/1.1\r\nHost: x\r\n")
            stalled.append(sock)
        time.sleep(0.3)
        with live.client("staff", timeout=5) as client:
            for _ in range(5):
                started = time.monotonic()
                health = client.get("/health")
                assert time.monotonic() - started < 1.0
                assert health.status_code == 200
                assert health.json()["database"] == "ok"
            assert client.get("/api/customers/").status_code == 200
        time.sleep(3)  # LEDGER_HEADER_TIMEOUT_SECONDS: the server hangs up on them
        for sock in stalled:
            assert sock.recv(1) == b""
    finally:
        for sock in stalled:
            sock.close()


def test_a_trickled_body_is_cut_off_with_408(live: Live) -> None:
    """A body still incomplete after LEDGER_BODY_TIMEOUT_SECONDS (1 s here) frees its
    thread: 408, DRF-shaped, and the connection is closed."""
    with socket.create_connection(live.host_port, timeout=10) as sock:
        sock.sendall(b"POST /api/customers/ HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                     + f"Authorization: {live.headers['staff']['Authorization']}".encode()
                     + b"\r\n\r\n{")
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert 0.9 < time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert answer.endswith(b'{"detail":"The request body did not arrive in time."}')


# --- concurrency (row 2) -------------------------------------------------------------------

def test_eight_keyed_and_unkeyed_writers_get_no_server_error(live: Live) -> None:
    statuses: list[int] = []
    replays: list[bool] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        keyed = number % 2 == 0
        with live.client("staff") as client:
            for request in range(12):
                name = f"Writer {number}-{request}"
                headers = {"Idempotency-Key": f"w{number}-{request}"} if keyed else {}
                first = client.post("/api/customers/", json={"name": name}, headers=headers)
                seen = [first.status_code]
                if keyed:
                    again = client.post("/api/customers/", json={"name": name},
                                        headers=headers)
                    seen.append(again.status_code)
                    with lock:
                        replays.append(again.json() == first.json()
                                       and again.headers.get("Idempotent-Replayed") == "true")
                with lock:
                    statuses.extend(seen)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [201], [s for s in statuses if s != 201][:5]
    assert len(statuses) == 4 * 12 * 2 + 4 * 12
    assert all(replays) and len(replays) == 48
    assert len(customers_named(live, "Writer 0-0")) == 1
    with live.client("staff") as client:
        listed = client.get("/api/customers/", params={"name": "Writer "})
    assert listed.headers["X-Result-Count"] == "96"


# --- refused requests leave no keys (row 8) ------------------------------------------------

def test_refused_requests_store_no_idempotency_key(live: Live) -> None:
    before = stored_keys(live)
    with live.client("user") as client:
        for number in range(200):
            answer = client.post("/api/customers/", json={"name": "Nope"},
                                 headers={"Idempotency-Key": f"refused-{number}"})
            assert answer.status_code == 403
    with httpx.Client(base_url=live.url) as anonymous:
        answer = anonymous.post("/api/customers/", json={"name": "Nope"},
                                headers={"Idempotency-Key": "anonymous"})
        assert answer.status_code == 401
    assert stored_keys(live) == before


# --- kept-alive connections are recycled, so clients spread over the workers ----------------

def test_a_kept_alive_connection_closes_after_its_quota_of_requests(live: Live) -> None:
    with socket.create_connection(("127.0.0.1", int(live.url.rsplit(":", 1)[1])), 10) as sock:
        answers = []
        for _ in range(KEEPALIVE_REQUESTS):
            sock.sendall(b"GET /api/schema/ HTTP/1.1\r\nHost: x\r\n\r\n")
            answers.append(read_response(sock))
        assert [status for status, _ in answers] == [200] * KEEPALIVE_REQUESTS
        assert [headers.get("connection") for _, headers in answers] == (
            ["keep-alive"] * (KEEPALIVE_REQUESTS - 1) + ["close"])
        assert sock.recv(1) == b""  # the server closed it after the last answer


def read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """One whole HTTP/1.1 response (Content-Length framed): its status and headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers
