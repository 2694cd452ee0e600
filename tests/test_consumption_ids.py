"""Consumption ids mean one thing forever, through the HTTP API on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.support import Clock, Directory
from tests.test_settlement_api import get, item, post_items


def post(directory: Directory, *items: dict[str, Any], key: str | None = None) -> Any:
    headers = {**directory.staff, **({"Idempotency-Key": key} if key else {})}
    return directory.client.simulate_post("/api/consumptions/", json=list(items),
                                          headers=headers)


@pytest.fixture
def org(directory: Directory, clock: Clock) -> dict[str, Any]:
    clock.today = date(2025, 2, 10)
    org = directory.customer("Org")
    return {"org": org, "p": directory.project(org, "P"), "q": directory.project(org, "Q"),
            "offering": directory.offering(),
            "cc": directory.customer_credit(org, "100")}


@pytest.mark.parametrize("change", ["amount", "project", "offering", "period"])
def test_reposting_an_id_with_other_content_is_refused(
        directory: Directory, org: dict[str, Any], change: str) -> None:
    first = item("i2", org["p"], "30")
    post_items(directory, first)
    changed = {"amount": {"amount": "31"}, "project": {"project": org["q"]["url"]},
               "offering": {"offering": org["offering"]["url"]},
               "period": {"period": "2025-01"}}[change]
    refused = post(directory, {**first, **changed}, item("new", org["p"], "1"))
    shown = directory.client.simulate_get("/api/consumptions/i2/", headers=directory.staff)
    assert refused.status_code == 409
    assert refused.json == {
        "detail": "Consumption item i2 is already recorded with other content; post new "
                  "usage under a new id.",
        "recorded": shown.json}
    assert shown.json["amount"] == "30.00000"
    assert get(directory, org["cc"])["value"] == "70.00000"  # nothing of the batch drawn
    assert directory.client.simulate_get("/api/consumptions/new/",
                                         headers=directory.staff).status_code == 404


def test_reposting_an_item_after_its_project_ended_replays_it(
        directory: Directory, org: dict[str, Any]) -> None:
    """A retry whose first answer was lost still gets that answer once the project has been
    terminated: the id is known, so it is a replay (or, with other content, 409), not a
    400 about the project. Only new usage for the ended project is refused."""
    first = post_items(directory, item("before", org["p"], "30"))
    assert directory.client.simulate_delete(f"/api/projects/{org['p']['uuid']}/",
                                            headers=directory.staff).status_code == 204
    again = post(directory, item("before", org["p"], "30"))
    assert (again.status_code, again.json) == (200, [{**first[0], "replayed": True}])
    other = post(directory, item("before", org["p"], "31"))
    assert (other.status_code, other.json["recorded"]["amount"]) == (409, "30.00000")
    new = post(directory, item("before", org["p"], "30"), item("after", org["p"], "1"))
    assert (new.status_code, new.json) == (400, [
        {}, {"project": ["The project is terminated."]}])
    for not_an_id in ({"a": 1}, ["before"]):  # looked up among the known ids: no 500
        bad = post(directory, {**item("x", org["p"], "1"), "id": not_an_id})
        assert (bad.status_code, bad.json) == (400, [{
            "id": ["Not a valid string."], "project": ["The project is terminated."]}])
    assert get(directory, org["cc"])["value"] == "70.00000"


def test_reposting_a_reversed_id_is_refused(directory: Directory,
                                            org: dict[str, Any]) -> None:
    post_items(directory, item("gone", org["p"], "30"))
    assert directory.client.simulate_delete("/api/consumptions/gone/",
                                            headers=directory.staff).status_code == 204
    refused = post(directory, item("gone", org["p"], "30"))
    assert refused.status_code == 409
    reversed_at = refused.json["reversed_at"]
    assert reversed_at.startswith("2025-02-10T12:") and reversed_at.endswith("+00:00")
    assert refused.json == {
        "detail": f"Consumption item gone was reversed at {reversed_at} by staff; its id "
                  "cannot be posted again.",
        "reversed_at": reversed_at, "reversed_by": "staff"}
    assert get(directory, org["cc"])["value"] == "100.00000"


def test_replay_repeats_the_first_answer_even_after_compensation(
        directory: Directory, org: dict[str, Any]) -> None:
    first = post_items(directory, item("big", org["p"], "150"))[0]
    assert (first["drawn_from_customer_credit"], first["uncovered"]) == ("100.00000",
                                                                         "50.00000")
    directory.client.simulate_patch(org["cc"]["url"].split("falconframework.org")[1],
                                    json={"value": "500"}, headers=directory.staff)
    applied = directory.client.simulate_post(
        f"/api/customer-credits/{org['cc']['uuid']}/apply_compensations/",
        headers=directory.staff)
    assert applied.status_code == 200
    shown = directory.client.simulate_get("/api/consumptions/big/", headers=directory.staff)
    assert shown.json["uncovered"] == "0.00000"  # coverage changed since
    again = post(directory, item("big", org["p"], "150"))
    assert (again.status_code, again.json) == (200, [{**first, "replayed": True}])


def test_a_retry_under_the_same_key_returns_the_first_answer_exactly(
        directory: Directory, org: dict[str, Any]) -> None:
    first = post(directory, item("k1", org["p"], "30"), key="batch-1")
    assert (first.status_code, first.json[0]["replayed"]) == (201, False)
    retry = post(directory, item("k1", org["p"], "30"), key="batch-1")
    assert (retry.status_code, retry.json) == (201, first.json)
    assert retry.headers["Idempotent-Replayed"] == "true"
    id_replay = post(directory, item("k1", org["p"], "30"), key="batch-2")
    assert (id_replay.status_code, id_replay.json) == (200, [{**first.json[0],
                                                              "replayed": True}])
    assert get(directory, org["cc"])["value"] == "70.00000"
