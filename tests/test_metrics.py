"""Metrics in one process (the live, multi-worker case is in tests/conformance)."""

from __future__ import annotations

import os
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest
from prometheus_client import REGISTRY

from api.server import gunicorn_conf, metrics
from tests.live import ROOT, free_port
from tests.support import Directory


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_period_closes_consumption_and_events_are_counted(directory: Directory) -> None:
    org = directory.customer("Org")
    project = directory.project(org, "P")
    directory.customer_credit(org, "100")
    before = {name: value(name) for name in (
        "ledger_period_closes_total", "ledger_consumption_items_posted_total")}
    directory.post("/api/consumptions/", [{"id": "m-1", "project": project["url"],
                                           "amount": "5", "period": "2026-10"}])
    directory.post("/api/consumptions/", [{"id": "m-1", "project": project["url"],
                                           "amount": "5", "period": "2026-10"}])
    directory.post("/api/billing-periods/2026-10/close/", {})
    assert value("ledger_consumption_items_posted_total") - before[
        "ledger_consumption_items_posted_total"] == 1
    assert value("ledger_period_closes_total") - before["ledger_period_closes_total"] == 1


def test_metrics_can_require_a_bearer_token(directory: Directory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With LEDGER_METRICS_TOKEN: the token as a Bearer or a staff token reads them."""
    from api.app import create_app

    monkeypatch.setenv("LEDGER_METRICS_TOKEN", "s3cret")
    client = falcon.testing.TestClient(create_app(directory.services))
    for headers in ({}, {"Authorization": "Bearer wrong"}, directory.user("someone")):
        refused = client.simulate_get("/metrics", headers=headers)
        assert (refused.status_code, refused.json) == (401, {
            "detail": "A staff token, or the metrics bearer token, is required."})
    unknown = client.simulate_get("/metrics", headers={"Authorization": "Token nope"})
    assert (unknown.status_code, unknown.json) == (401, {"detail": "Invalid token."})
    for headers in ({"Authorization": "Bearer s3cret"}, directory.staff):
        allowed = client.simulate_get("/metrics", headers=headers)
        assert allowed.status_code == 200
        assert "ledger_projector_lag_events 0.0" in allowed.text


# --- issue 21 row 3: /metrics is not open beyond loopback; its labels are bounded ---------

@pytest.mark.parametrize(("bound", "loopback"), [
    ("127.0.0.1:8000", True), ("[::1]:8000", True), ("localhost:8000", True),
    ("unix:/run/ledger.sock", True), ("127.0.0.1:1 [::1]:2", True),
    ("0.0.0.0:8000", False), ("[::]:8000", False), ("10.0.0.5:8000", False),
    ("ledger.example.org:80", False), ("127.0.0.1:1 0.0.0.0:2", False)])
def test_loopback_only(bound: str, loopback: bool) -> None:
    assert metrics.loopback_only(bound) is loopback


def test_metrics_beyond_loopback_without_a_token_need_staff(
        directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.app import create_app

    monkeypatch.delenv("LEDGER_METRICS_TOKEN", raising=False)
    monkeypatch.setenv("LEDGER_BOUND", "0.0.0.0:8000")
    client = falcon.testing.TestClient(create_app(directory.services))
    assert client.simulate_get("/metrics").status_code == 401
    assert client.simulate_get("/metrics", headers=directory.user("u")).status_code == 401
    assert client.simulate_get("/metrics", headers=directory.staff).status_code == 200
    monkeypatch.setenv("LEDGER_BOUND", "127.0.0.1:8000")
    local = falcon.testing.TestClient(create_app(directory.services))
    assert local.simulate_get("/metrics").status_code == 200


def series(text: str) -> int:
    return text.count("\nledger_http_requests_total{")


def labels_of(text: str, name: str) -> set[str]:
    return set(re.findall(rf'ledger_http_requests_total{{[^}}]*{name}="([^"]*)"', text))


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")
def test_made_up_methods_and_paths_fold_into_one_label_each(
        client: falcon.testing.TestClient, directory: Directory) -> None:
    rng = random.Random(21)
    before = series(client.simulate_get("/metrics").text)
    for n in range(2000):
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 12)))
        client.simulate_request(method, f"/made-up/{n}/")
        client.simulate_request(method, "/api/customers/")
    client.simulate_get("/api/customers/", headers={"Authorization": "Token wrong"})
    client.simulate_get("/api/docs/static/swagger-ui.css")
    text = client.simulate_get("/metrics").text
    assert labels_of(text, "method") <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                         "OPTIONS", "other"}
    assert "other" in labels_of(text, "method")
    routes = labels_of(text, "route")
    assert not any(route.startswith("/made-up/") for route in routes)
    assert {"unmatched", "/api/customers/", "/api/docs/static/{file}"} <= routes
    # this process's registry holds the whole test session's requests: count what these
    # 4,002 requests added (the live test, tests/test_edge_anonymous.py, measures bytes)
    assert series(text) - before <= 8
    unauthorised = re.findall(r'ledger_http_requests_total{method="GET",route="([^"]*)",'
                              r'status="401"}', text)
    assert "/api/customers/" in unauthorised and "unmatched" not in unauthorised


# --- issue 21 row 6: the metrics directory setting cannot delete other files -------------

def test_an_unmarked_directory_with_other_files_is_refused_and_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PROMETHEUS_MULTIPROC_DIR pointed at the data folder: start-up stops, nothing goes."""
    (tmp_path / "credit-ledger.db").write_text("the ledger")
    (tmp_path / "counter_1.db").write_text("someone else's")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="holds files credit-ledger did not put there"):
        gunicorn_conf.prepare_metrics_directory()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_1.db", "credit-ledger.db"]


def test_a_marked_directory_loses_only_prometheus_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    gunicorn_conf.prepare_metrics_directory()  # made and marked
    for name in ("counter_12.db", "gauge_livesum_12.db", "histogram_3.db", "notes.db",
                 "counter_x.db"):
        (folder / name).write_text("x")
    gunicorn_conf.prepare_metrics_directory()  # the next start
    assert sorted(p.name for p in folder.iterdir()) == [
        gunicorn_conf.METRICS_MARK, "counter_x.db", "notes.db"]


def test_gunicorn_refuses_to_start_on_a_data_folder(tmp_path: Path) -> None:
    """The real start-up: exit with the reason, the database file still there."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "ledger.db").write_text("the ledger")
    settings = {**os.environ, "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/l.db",
                "LEDGER_BIND": f"127.0.0.1:{free_port()}", "PROMETHEUS_MULTIPROC_DIR": str(data)}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                          cwd=ROOT, env=settings, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "holds files credit-ledger did not put there" in done.stderr
    assert (data / "ledger.db").read_text() == "the ledger"
