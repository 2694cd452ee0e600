"""Conformance harness: the real service under gunicorn, driven by the real waldur-api-client.

One `credit-ledger serve` per backend for the whole run (session scope, parametrized like the
rest of the suite by LEDGER_TEST_BACKENDS), on a free loopback port, stopped with SIGTERM.
Users and roles are made with the CLI as an operator would, while the server runs: the staff
user by the installed `credit-ledger` script, the rest through the same entry point batched
in one process (each fresh interpreter costs about a CPU-second of imports). Organisations,
projects, offerings and credits are made through the staff API. Every test builds its own
organisations, or uses the shared `world` only in ways that do not disturb other tests.
Any 5xx fails the request that got it, and any unhandled error in the server log fails the
session.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from waldur_api_client import AuthenticatedClient

from tests.conftest import BACKENDS

HEX32 = re.compile(r"^[0-9a-f]{32}$")
MONEY = re.compile(r"^-?\d+\.\d{5}$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0


NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
PERMISSION_DENIED = {"detail": "You do not have permission to perform this action."}
NO_PROJECT_CREDIT = {"detail": "No ProjectCredit matches the given query."}

# users made once per server: name -> `users create` flag
USERS = {"staff": "--staff", "support": "--support", "owner": None, "manager": None,
         "member": None, "outsider": None}


def unique(label: str) -> str:
    return f"{label} {secrets.token_hex(3)}"


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def last_month() -> str:
    today = datetime.now(UTC).date()
    year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return f"{year:04d}-{month:02d}"


def money(text: object) -> Decimal:
    """A 5-dp money string as a Decimal; anything else (None, Unset, a number) fails the test."""
    assert isinstance(text, str) and MONEY.match(text), f"not a 5-dp decimal string: {text!r}"
    return Decimal(text)


def _cli_path() -> str:
    beside = Path(sys.executable).with_name("credit-ledger")
    found = str(beside) if beside.exists() else shutil.which("credit-ledger")
    assert found, "the credit-ledger console script is not installed"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refuse_server_errors(response: httpx.Response) -> None:
    """A 5xx is a bug (DESIGN §6): fail the request loudly instead of parsing it."""
    if response.status_code >= 500:
        response.read()
        raise AssertionError(f"{response.request.method} {response.request.url} -> "
                             f"{response.status_code}: {response.text}")


@dataclass
class LedgerServer:
    """A running `credit-ledger serve` and the tokens of the users made for it."""

    backend: str
    base_url: str
    env: dict[str, str]
    workdir: Path
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)
    _clients: list[Any] = field(default_factory=list)

    # --- the CLI, as an operator runs it --------------------------------------------------

    def cli(self, *commands: list[str]) -> list[str]:
        """Run CLI commands (one process); return each one's stdout (all must succeed)."""
        return _spawn(self.env, self.workdir, *commands).outputs()

    def grant(self, *grants: tuple[str, str, str, str]) -> None:
        """(user, role, "customer"|"project", uuid) for each grant."""
        outputs = self.cli(*[["roles", "grant", user, role, f"--{scope}", uuid]
                             for user, role, scope, uuid in grants])
        for out in outputs:
            assert out.startswith("Granted"), out

    # --- clients ------------------------------------------------------------------------

    def client(self, user: str) -> AuthenticatedClient:
        """The real waldur-api-client, authenticated the Waldur way (`Token <key>`)."""
        api = AuthenticatedClient(
            base_url=self.base_url, token=self.tokens[user], prefix="Token",
            timeout=httpx.Timeout(30.0),
            httpx_args={"event_hooks": {"response": [_refuse_server_errors]}})
        self._clients.append(api)
        return api

    def http(self, user: str | None = None) -> httpx.Client:
        """Plain httpx, for responses the 8.1.3 client cannot parse (stripped keys)."""
        headers = {"Authorization": f"Token {self.tokens[user]}"} if user else {}
        raw = httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0,
                           event_hooks={"response": [_refuse_server_errors]})
        self._clients.append(raw)
        return raw

    def close_clients(self) -> None:
        for item in self._clients:
            inner = item.get_httpx_client() if isinstance(item, AuthenticatedClient) else item
            inner.close()

    def server_errors(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "Unhandled error" in line]


@dataclass
class Staff:
    """The directory (customers, projects, offerings) and credits, made through the API."""

    server: LedgerServer
    http: httpx.Client

    def post(self, path: str, body: Any, status: int = 201) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code == status, (path, response.status_code, response.text)
        return response.json()

    def customer(self, label: str = "Org") -> dict[str, Any]:
        return self.post("/api/customers/", {"name": unique(label)})  # type: ignore[no-any-return]

    def project(self, customer: dict[str, Any], name: str) -> dict[str, Any]:
        return self.post(  # type: ignore[no-any-return]
            "/api/projects/", {"name": name, "customer": customer["url"]})

    def offering(self, label: str = "VM") -> dict[str, Any]:
        return self.post(  # type: ignore[no-any-return]
            "/api/marketplace-public-offerings/",
            {"name": unique(label), "type": "OpenStack.Instance"})

    def customer_credit(self, customer: dict[str, Any], value: str, **terms: Any) -> Any:
        return self.post("/api/customer-credits/",
                         {"customer": customer["url"], "value": value, **terms})

    def project_credit(self, project: dict[str, Any], value: str, **terms: Any) -> Any:
        return self.post("/api/project-credits/",
                         {"project": project["url"], "value": value, **terms})

    def consume(self, items: list[dict[str, Any]], status: int = 201) -> Any:
        return self.post("/api/consumptions/", items, status)


@dataclass
class World:
    """One organisation with every kind of role holder, made once per server.

    `owner` owns `org` (and nothing else), `manager` holds a non-owner customer role in it,
    `member` is a member of `project` only, `outsider` has no role at all.
    """

    org: dict[str, Any]
    project: dict[str, Any]
    project_credit: dict[str, Any]
    customer_credit: dict[str, Any]
    foreign_org: dict[str, Any]
    foreign_project: dict[str, Any]
    foreign_credit: dict[str, Any]


def seed_project_credits(server: LedgerServer, customer: dict[str, Any], label: str,
                         values: list[int]) -> list[str]:
    """Bulk set-up through the ledger's own commands in this process, as the CLI does.

    Hundreds of HTTP writes would dominate the run time; the server's read models catch up
    with these events on its next request, which is part of what the tests then check.
    """
    from api.server.wiring import build_services
    from ledger.terms import Terms

    services = build_services(server.env["LEDGER_DATABASE_URL"])
    try:
        uuids = []
        for number, value in enumerate(values, start=1):
            name = f"{label} P{number:03d}"
            project_id = services.ledger.register_project(
                name, name.lower().replace(" ", "-"), UUID(customer["uuid"]), "conformance")
            credit_id = services.ledger.create_project_credit(
                project_id, Decimal(value), Terms(), False, "conformance")
            uuids.append(credit_id.hex)
        return uuids
    finally:
        services.close()


# Runs several `credit-ledger` commands in one interpreter through the console script's own
# entry point (api.cli:main), each output framed by markers: a fresh interpreter costs about
# a CPU-second of imports per command, which would dominate the run time.
BEGIN, END = "--- conformance: begin", "--- conformance: exit"
_BATCH_DRIVER = f"""
import json, sys
from api.cli import main
for argv in json.loads(sys.argv[1]):
    print({BEGIN!r}, flush=True)
    code = main(argv)
    print({END!r}, code, flush=True)
"""


@dataclass
class _Running:
    """CLI commands in flight: one real `credit-ledger` process, or one batch of commands."""

    commands: list[list[str]]
    proc: subprocess.Popen[str]
    batch: bool

    def outputs(self) -> list[str]:
        """Each command's stdout; every command must have exited 0."""
        try:
            out, err = self.proc.communicate(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        assert self.proc.returncode == 0, f"{self.commands} failed: {err}"
        if not self.batch:
            return [out]
        results: list[str] = []
        current: list[str] = []
        for line in out.splitlines():
            if line == BEGIN:
                current = []
            elif line.startswith(END):
                args = self.commands[len(results)]
                assert line == f"{END} 0", f"credit-ledger {' '.join(args)}: {line}; {err}"
                results.append("\n".join(current))
            else:
                current.append(line)
        assert len(results) == len(self.commands), out
        return results


def _spawn(env: dict[str, str], workdir: Path, *commands: list[str]) -> _Running:
    """One command runs the installed console script itself; several share a process."""
    batch = len(commands) > 1
    argv = ([sys.executable, "-c", _BATCH_DRIVER, json.dumps(list(commands))] if batch
            else [_cli_path(), *commands[0]])
    proc = subprocess.Popen(argv, env=env, cwd=workdir, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    return _Running(list(commands), proc, batch)


def _user_command(name: str) -> list[str]:
    flag = USERS[name]
    return ["users", "create", name, *([flag] if flag else [])]


def _token(out: str) -> str:
    """`users create` prints the token as its last line."""
    token = out.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{40}", token), out
    return token


def _start(env: dict[str, str], workdir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start gunicorn on a free loopback port; retry another port if the bind lost a race."""
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [_cli_path(), "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "2"],
                env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        last_error = log.read_text(errors="replace")[-3000:]
        _stop(proc)
    raise RuntimeError(f"credit-ledger serve did not become healthy:\n{last_error}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the gunicorn master (it stops its workers); bounded waits, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started: master + workers
            proc.wait(timeout=5)


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerServer]:
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"conformance-{backend}")
    schema: str | None = None
    database = ""
    if backend == "sqlite":
        database_url = f"sqlite:///{workdir / 'ledger.db'}"
    else:
        database = request.getfixturevalue("postgres_database")
        schema = f"conformance_{secrets.token_hex(4)}"
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        database_url = f"{database}?schema={schema}"
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url}
    log = workdir / "server.log"
    # users are made while gunicorn boots (each runs the idempotent DDL first); the staff
    # user with the installed `credit-ledger` script itself, the others in one batch
    others = [name for name in USERS if name != "staff"]
    making = [_spawn(env, workdir, _user_command("staff")),
              _spawn(env, workdir, *(_user_command(name) for name in others))]
    try:
        proc, base = _start(env, workdir, log)
    finally:
        outputs = [out for running in making for out in running.outputs()]
    running = LedgerServer(backend, base, env, workdir, log)
    try:
        running.tokens = {name: _token(out)
                          for name, out in zip(["staff", *others], outputs, strict=True)}
        yield running
    finally:
        running.close_clients()
        _stop(proc)
        if schema:
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    errors = running.server_errors()
    assert not errors, f"the server logged unhandled errors: {errors}"


@pytest.fixture(scope="session")
def staff(server: LedgerServer) -> Staff:
    return Staff(server, server.http("staff"))


@pytest.fixture(scope="session")
def world(server: LedgerServer, staff: Staff) -> World:
    org = staff.customer("Acme")
    project = staff.project(org, "Acme Web")
    credit = staff.customer_credit(org, "100000")
    project_credit = staff.project_credit(project, "1000")
    foreign_org = staff.customer("Globex")
    foreign_project = staff.project(foreign_org, "Globex Web")
    staff.customer_credit(foreign_org, "500")
    foreign_credit = staff.project_credit(foreign_project, "200")
    server.grant(("owner", "owner", "customer", org["uuid"]),
                 ("manager", "manager", "customer", org["uuid"]),
                 ("member", "member", "project", project["uuid"]))
    return World(org, project, project_credit, credit, foreign_org, foreign_project,
                 foreign_credit)


@pytest.fixture(scope="session")
def staff_api(server: LedgerServer) -> AuthenticatedClient:
    return server.client("staff")


@pytest.fixture(scope="session")
def owner_api(server: LedgerServer, world: World) -> AuthenticatedClient:
    return server.client("owner")
