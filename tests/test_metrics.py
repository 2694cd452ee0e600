"""Metrics in one process (the live, multi-worker case is in tests/conformance)."""

from __future__ import annotations

import falcon.testing
import pytest
from prometheus_client import REGISTRY

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
    from api.app import create_app

    monkeypatch.setenv("LEDGER_METRICS_TOKEN", "s3cret")
    client = falcon.testing.TestClient(create_app(directory.services))
    refused = client.simulate_get("/metrics", headers=directory.staff)
    assert (refused.status_code, refused.json) == (
        401, {"detail": "A valid metrics bearer token is required."})
    allowed = client.simulate_get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200
    assert "ledger_projector_lag_events 0.0" in allowed.text
