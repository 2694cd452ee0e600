"""A live server speaking Waldur's API, for the import tests.

Preferred: the Django + DRF peer in ../shared/peer-drf, on SQLite, loaded by its own
`load.py`. Its venv is built once into a cache directory outside the repository (about
10 s; keyed by its requirements). When the peer or its venv cannot be had, the fallback
is credit-ledger itself under gunicorn, filled through its API (it speaks the same API).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conformance.conftest import _cli_path, _free_port, _start, _stop, _token

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-drf"
PEER_N = 300
PEER_TOKEN = "import-test-staff-token"
SETUP_TIMEOUT = 300
START_TIMEOUT = 30.0


@dataclass
class Source:
    """A running source: its base URL, a staff token, and what it is."""

    kind: str
    url: str
    token: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0,
                            headers={"Authorization": f"Token {self.token}"})

    def all(self, collection: str) -> list[dict[str, Any]]:
        """Every item of a collection in its list order, page by page."""
        items: list[dict[str, Any]] = []
        with self.http() as http:
            url: str | None = f"/api/{collection}/?page_size=300"
            while url:
                response = http.get(url)
                assert response.status_code == 200, response.text
                items.extend(response.json())
                url = response.links.get("next", {}).get("url")
        return items


def peer_venv() -> Path | None:
    """The peer's venv from the cache, built on first use; None if it cannot be built."""
    if os.environ.get("LEDGER_TEST_NO_PEER") or not (PEER / "setup.sh").exists():
        return None
    digest = hashlib.sha256((PEER / "requirements.txt").read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "credit-ledger"
    venv = cache / f"peer-venv-{digest}"
    complete = venv / "complete"  # written last: a half-built venv is rebuilt, not used
    if complete.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([str(PEER / "setup.sh"), str(venv)], check=True, capture_output=True,
                       timeout=SETUP_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    complete.touch()
    return venv


@contextmanager
def peer(venv: Path, workdir: Path) -> Iterator[Source]:
    env = {**os.environ, "PEER_DATABASE_URL": f"sqlite:///{workdir / 'peer.sqlite3'}",
           "PEER_WORKERS": "1"}
    subprocess.run([str(venv / "bin" / "python"), str(PEER / "load.py"), str(PEER_N),
                    "--offerings", "5", "--token", PEER_TOKEN],
                   check=True, env=env, capture_output=True, timeout=120)
    port = _free_port()
    with (workdir / "peer.log").open("ab") as log:
        proc = subprocess.Popen([str(PEER / "serve.sh"), str(venv), str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(proc, f"{url}/api/customers/", PEER_TOKEN)
        yield Source("peer-drf", url, PEER_TOKEN)
    finally:
        _stop(proc)  # type: ignore[arg-type]


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, token: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, headers={"Authorization": f"Token {token}"},
                         timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the source at {url} did not start")


@contextmanager
def ledger_as_source(workdir: Path) -> Iterator[Source]:
    """credit-ledger under gunicorn on SQLite, with offerings, organisations and credits."""
    env = {**os.environ, "LEDGER_DATABASE_URL": f"sqlite:///{workdir / 'source.db'}",
           "LEDGER_ACCESS_LOG": "/dev/null"}
    made = subprocess.run([_cli_path(), "users", "create", "staff", "--staff"], env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    proc, url = _start(env, workdir, workdir / "source.log")
    source = Source("credit-ledger", url, _token(made.stdout))
    try:
        _fill(source)
        yield source
    finally:
        _stop(proc)


def _fill(source: Source, organisations: int = 12) -> None:
    with source.http() as http:
        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = http.post(path, json=body)
            assert response.status_code == 201, response.text
            return response.json()  # type: ignore[no-any-return]

        offerings = [post("/api/marketplace-public-offerings/",
                          {"name": f"Offering {k}", "type": "Marketplace.Slurm"})
                     for k in range(3)]
        for i in range(organisations):
            customer = post("/api/customers/", {"name": f"Customer {i:06d}"})
            post("/api/customer-credits/", {
                "customer": customer["url"], "value": f"{1000 + i}.00000",
                "expected_consumption": "10.00000", "grace_coefficient": i % 3 * 10,
                "offerings": [o["url"] for o in offerings[: i % 3]]})
            for j in range(2):
                project = post("/api/projects/", {"name": f"Project {i:04d}{j:02d}",
                                                  "customer": customer["url"]})
                post("/api/project-credits/", {
                    "project": project["url"], "value": f"{100 + 7 * i + j}.50000",
                    "end_date": f"2027-0{1 + j}-01", "minimal_consumption_logic":
                    ("fixed", "linear")[j], "apply_as_minimal_consumption": j == 0,
                    "mark_unused_credit_as_spent_on_project_termination": i % 2 == 0})


@contextmanager
def waldur_source(workdir: Path) -> Iterator[Source]:
    venv = peer_venv()
    if venv is not None:
        with peer(venv, workdir) as source:
            yield source
    else:
        print("peer-drf unavailable; importing from credit-ledger itself", file=sys.stderr)
        with ledger_as_source(workdir) as source:
            yield source
