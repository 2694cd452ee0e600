"""A live gunicorn on loopback for edge tests: the real server, its real worker class.

Ports come from 18100-18199 (this suite's range on shared machines). Users are made with
the ledger's own command before the server starts; the server catches its read models up
on the first authenticated request.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.server.wiring import build_services

ROOT = Path(__file__).resolve().parent.parent
# LEDGER_TEST_PORTS=first-last moves the range (engineers sharing a machine).
_FIRST, _LAST = os.environ.get("LEDGER_TEST_PORTS", "18100-18199").split("-")
PORTS = range(int(_FIRST), int(_LAST) + 1)
# Tests run in parallel (pytest-xdist): each worker takes every n-th port of the range, so
# two workers never pick the same free port at the same moment.
if _WORKER := os.environ.get("PYTEST_XDIST_WORKER", ""):
    PORTS = PORTS[int(_WORKER.removeprefix("gw"))::int(os.environ["PYTEST_XDIST_WORKER_COUNT"])]
START_TIMEOUT = 30.0


def free_port() -> int:
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass
class Live:
    """A running server: its address, its users' auth headers, its log."""

    url: str
    database_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def client(self, user: str | None = None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers.get(user or "", {}),
                            timeout=timeout)

    def worker_pids(self) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                               text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def server_errors(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "Unhandled error" in line]


def make_users(database_url: str, **staff_flags: bool) -> dict[str, dict[str, str]]:
    """name -> Authorization header; staff_flags maps each name to is_staff."""
    services = build_services(database_url, create_tables=True)
    try:
        headers = {}
        for name, is_staff in staff_flags.items():
            token = secrets.token_hex(20)
            services.ledger.create_user(name, token, is_staff, False, "test")
            headers[name] = {"Authorization": f"Token {token}"}
        return headers
    finally:
        services.close()


@contextmanager
def live_server(database_url: str, workdir: Path, workers: int = 2,
                **env: str) -> Iterator[Live]:
    """gunicorn with the project's config; stopped with SIGTERM (SIGKILL if it lingers)."""
    port = free_port()
    log = workdir / f"gunicorn-{port}.log"
    settings = {**os.environ, "LEDGER_DATABASE_URL": database_url,
                "LEDGER_BIND": f"127.0.0.1:{port}", "LEDGER_WORKERS": str(workers),
                "LEDGER_ACCESS_LOG": "/dev/null", **env}
    with log.open("ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                                cwd=ROOT, env=settings, stdout=sink, stderr=sink)
    live = Live(f"http://127.0.0.1:{port}", database_url, proc, log)
    try:
        wait_until_listening(live)
        yield live
    finally:
        stop(proc)


def wait_until_listening(live: Live) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if live.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {live.log.read_text(errors='replace')}")
        try:
            httpx.get(live.url + "/health", timeout=2.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def backend_url(backend: str, workdir: Path, admin_url: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL schema (in the admin database) for one server."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir}/ledger.db"
        return
    schema = f"edge_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{admin_url}?schema={schema}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def module_server(request: Any, tmp_path_factory: Any, name: str,
                  users: dict[str, bool], **env: str) -> Iterator[Live]:
    """A module fixture's body: a server on the backend in request.param (a fresh SQLite
    file or PostgreSQL schema) with `users` (name -> is_staff); no server error allowed."""
    workdir = tmp_path_factory.mktemp(name)
    admin = request.getfixturevalue("postgres_database") if request.param != "sqlite" else ""
    with backend_url(request.param, workdir, admin) as url:
        headers = make_users(url, **users)
        with live_server(url, workdir, 2, **env) as server:
            server.headers = headers
            yield server
            assert server.server_errors() == []


def postgres_server(postgres_database: str, workdir: Path) -> Iterator[Live]:
    """A function fixture's body: a server on a fresh PostgreSQL schema with a staff user."""
    with backend_url("postgresql", workdir, postgres_database) as url:
        headers = make_users(url, staff=True)
        with live_server(url, workdir) as server:
            server.headers = headers
            yield server
            assert server.server_errors() == []


@contextmanager
def fresh_backend(request: Any, workdir: Path) -> Iterator[str]:
    """The database of a backend-parametrized fixture (`request.param`), made fresh."""
    admin = request.getfixturevalue("postgres_database") if request.param != "sqlite" else ""
    with backend_url(request.param, workdir, admin) as url:
        yield url
