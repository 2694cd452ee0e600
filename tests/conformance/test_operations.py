"""Operating the live service (2 gunicorn workers): tokens, metrics, logs, docs, a generated
client.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conformance.conftest import LedgerServer, Staff, this_month, unique

METRIC_LINE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def metrics(server: LedgerServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics keyed by (name, labels)."""
    response = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if match := METRIC_LINE.match(line):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            samples[(match["name"], labels)] = float(match["value"])
    return samples


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def request_lines(server: LedgerServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"credit_ledger.requests"' in line:
            lines.append(json.loads(line))
    return lines


def test_rotated_and_deactivated_tokens_are_refused(server: LedgerServer) -> None:
    name = unique("rotor").replace(" ", "-")
    created, rotated = server.cli(["users", "create", name], ["users", "rotate-token", name])
    old, new = (out.strip().splitlines()[-1] for out in (created, rotated))

    def status(token: str) -> int:
        return httpx.get(f"{server.base_url}/api/customers/",
                         headers={"Authorization": f"Token {token}"}, timeout=10).status_code

    assert (status(old), status(new)) == (401, 200)
    deactivated, listing = server.cli(["users", "deactivate", name], ["users", "list"])
    assert deactivated == f"Deactivated {name}."
    assert status(new) == 401
    listed = listing.splitlines()
    assert [line.split()[:3] for line in listed if line.startswith(name)] == [
        [name, "user", "no"]]


def test_metrics_move_and_add_up_over_both_workers(server: LedgerServer, staff: Staff) -> None:
    route = dict(method="GET", route="/api/billing-periods/", status="200")
    before = metrics(server)
    headers = {"Authorization": f"Token {server.tokens['staff']}", "Connection": "close"}

    def get(_: int) -> int:
        return httpx.get(f"{server.base_url}/api/billing-periods/", headers=headers,
                         timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(get, range(40))) == {200}
    staff.customer("Metered")
    key = {"Idempotency-Key": unique("key").replace(" ", "-")}
    body = {"name": unique("Replayed")}
    first = staff.http.post("/api/customers/", json=body, headers=key)
    again = staff.http.post("/api/customers/", json=body, headers=key)
    assert (first.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    after = metrics(server)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("ledger_http_requests_total", **route) == 40
    assert moved("ledger_http_request_duration_seconds_count", **route) == 40
    assert moved("ledger_http_request_duration_seconds_sum", **route) > 0
    assert moved("ledger_events_appended_total", type="Customer.Registered") == 2
    assert moved("ledger_idempotent_replays_total") == 1
    assert sample(after, "ledger_projector_lag_events") == 0
    assert sample(after, "ledger_projector_position") == sample(after, "ledger_event_log_head")
    for family in ("ledger_save_retries_total", "ledger_conflicts_total",
                   "ledger_consumption_items_posted_total", "ledger_period_closes_total"):
        assert (family, frozenset()) in after, family
    served_by = {line["pid"] for line in request_lines(server)
                 if line["route"] == "/api/billing-periods/"}
    assert len(served_by) == 2, "both workers answered, and /metrics summed them"


def test_each_request_logs_one_json_line_with_its_request_id(server: LedgerServer) -> None:
    given = unique("trace").replace(" ", "-")
    response = httpx.get(f"{server.base_url}/api/customers/", timeout=10,
                         headers={"Authorization": f"Token {server.tokens['owner']}",
                                  "X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given
    generated = httpx.get(f"{server.base_url}/health", timeout=10).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    lines = request_lines(server)
    mine = [line for line in lines if line.get("request_id") == given]
    assert len(mine) == 1
    line = mine[0]
    assert (line["level"], line["method"], line["route"], line["status"], line["user"]) == (
        "info", "GET", "/api/customers/", 200, "owner")
    assert line["duration_ms"] > 0 and line["time"].endswith("+00:00")
    assert [line["route"] for line in lines if line.get("request_id") == generated] == [
        "/health"]
    access_lines = [line for line in server.log.read_text(errors="replace").splitlines()
                    if '"gunicorn.access"' in line]
    assert access_lines == []  # one line per request: gunicorn writes none of its own


# --- the docs page in a real browser ------------------------------------------------------

def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed")
def test_docs_page_lists_every_tag_and_operation(server: LedgerServer,
                                                 tmp_path: Path) -> None:
    browser = chromium()
    assert browser is not None
    schema = httpx.get(f"{server.base_url}/api/schema/", timeout=10).json()
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--dump-dom", f"{server.base_url}/api/docs/"],
        capture_output=True, text=True, timeout=120).stdout
    operations = {(op["tags"][0], op["operationId"]) for item in schema["paths"].values()
                  for op in item.values() if isinstance(op, dict) and "operationId" in op}
    tags = {tag for tag, _ in operations}
    assert len(tags) >= 9
    for tag in tags:
        assert f'id="operations-tag-{tag}"' in dom, tag
    missing = [op for tag, op in operations if f'id="operations-{tag}-{op}"' not in dom]
    assert missing == []


# --- a client generated from the live schema ------------------------------------------------

@pytest.fixture(scope="session")
def generated_client(tmp_path_factory: pytest.TempPathFactory,
                     server: LedgerServer) -> Iterator[ModuleType]:
    """openapi-python-client's package for /api/schema/, importable as ledger_client."""
    folder = tmp_path_factory.mktemp("generated")
    schema = folder / "schema.json"
    schema.write_text(httpx.get(f"{server.base_url}/api/schema/", timeout=10).text)
    config = folder / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [str(generator), "generate", "--path", str(schema), "--meta", "none",
         "--output-path", str(folder / "ledger_client"), "--config", str(config)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("ledger_client")
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n.split(".")[0] == "ledger_client"]:
            del sys.modules[name]


def test_generated_client_calls_json_and_csv_operations(
        server: LedgerServer, staff: Staff, generated_client: ModuleType) -> None:
    client_module = importlib.import_module("ledger_client.client")
    api = "ledger_client.api."
    health = importlib.import_module(api + "service.health")
    customers_list = importlib.import_module(api + "customers.customers_list")
    report_json = importlib.import_module(api + "reconciliation.reconciliation_retrieve")
    report_csv = importlib.import_module(api + "reconciliation.reconciliation_csv_retrieve")
    org = staff.customer("Generated")
    staff.customer_credit(org, "250")
    period = this_month()
    with client_module.AuthenticatedClient(base_url=server.base_url,
                                           token=server.tokens["staff"],
                                           prefix="Token") as client:
        assert health.sync(client=client).status == "ok"
        names = [c.name for c in customers_list.sync(client=client, page_size=300)]
        assert org["name"] in names
        as_json = report_json.sync(client=client, period=period)
        assert org["uuid"] in {row.customer_uuid for row in as_json.rows}
        as_csv = report_csv.sync(client=client, period=period)
    assert isinstance(as_csv, str)
    header, *rows = as_csv.splitlines()
    assert header.startswith("\ufeffmonth,kind,uuid,customer_uuid,")
    assert [row.endswith(",250.00000,true") for row in rows
            if org["uuid"] in row and row.split(",")[1] == "customer_credit"] == [True]
