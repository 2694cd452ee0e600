"""Issue 15 item 3: a live gunicorn worker is killed (SIGKILL) after a keyed command's
events commit and before its answer is stored; the retry with the same key, after the
lease, applies nothing again and answers what a survivor would have sent. The fault hook
is api.http.idempotency.crash_point (LEDGER_TEST_KILL_AFTER_COMMIT=1): it fires only for a
request that holds a key and saved events, so the setup calls (unkeyed) and the retry
(which saves nothing) survive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.live import Live, backend_url, live_server, make_users

LEASE = "1"


@pytest.fixture(params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    admin = request.getfixturevalue("postgres_database") if request.param != "sqlite" else ""
    with backend_url(request.param, tmp_path, admin) as url:
        headers = make_users(url, staff=True)
        with live_server(url, tmp_path, workers=1, LEDGER_IDEMPOTENCY_LEASE_SECONDS=LEASE,
                         LEDGER_TEST_KILL_AFTER_COMMIT="1") as server:
            server.headers = headers
            yield server


def call(live: Live, method: str, path: str, body: Any = None,
         key: str | None = None) -> httpx.Response:
    with live.client("staff") as client:
        return client.request(method, path, json=body,
                              headers={"Idempotency-Key": key} if key else {})


def killed_then_retried(live: Live, path: str, body: Any, key: str) -> httpx.Response:
    """The first attempt dies with its worker; the client retries until it is answered."""
    with pytest.raises(httpx.HTTPError):
        call(live, "POST", path, body, key)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer = call(live, "POST", path, body, key)
        except httpx.HTTPError:  # the worker is being restarted
            time.sleep(0.2)
            continue
        assert answer.status_code < 500, answer.text
        if answer.status_code != 409:  # 409: in progress until the lease lapses
            return answer
        time.sleep(0.2)
    raise AssertionError("the key was never answered")


def made(live: Live, path: str, body: Any) -> Any:
    answer = call(live, "POST", path, body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def local(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_a_creation_killed_after_commit_is_created_once(live: Live) -> None:
    answer = killed_then_retried(live, "/api/customers/", {"name": "Killed"}, "create")
    assert answer.status_code == 201
    listed = call(live, "GET", "/api/customers/?name=Killed")
    assert [row["uuid"] for row in listed.json()] == [answer.json()["uuid"]]
    survivor = made(live, "/api/customers/", {"name": "Killed"})  # unkeyed: not killed
    assert answer.json() == {**survivor, "uuid": answer.json()["uuid"],
                             "url": answer.json()["url"]}


def test_an_adjustment_killed_after_commit_is_applied_once(live: Live) -> None:
    credits = [made(live, "/api/customer-credits/", {
        "customer": made(live, "/api/customers/", {"name": f"Org {n}"})["url"],
        "value": "100"}) for n in range(2)]
    adjust = {"amount": "5", "comment": "top-up"}
    answer = killed_then_retried(live, local(credits[0]["url"]) + "adjust_withdrawable/",
                                 adjust, "adjust")
    survivor = call(live, "POST", local(credits[1]["url"]) + "adjust_withdrawable/", adjust)
    assert (answer.status_code, survivor.status_code) == (200, 200)
    assert (answer.json()["value"], answer.json()["withdrawable_balance"]) == (
        "105.00000", "5.00000")
    assert call(live, "GET", local(credits[0]["url"])).json() == answer.json()
    different = {"uuid", "url", "customer", "customer_name", "customer_uuid", "customer_slug"}
    assert ({k: v for k, v in answer.json().items() if k not in different}
            == {k: v for k, v in survivor.json().items() if k not in different})


def test_a_posting_killed_after_commit_is_drawn_once(live: Live) -> None:
    projects, credits = [], []
    for n in range(2):
        org = made(live, "/api/customers/", {"name": f"Org {n}"})
        projects.append(made(live, "/api/projects/", {"name": "P", "customer": org["url"]}))
        credits.append(made(live, "/api/customer-credits/", {"customer": org["url"],
                                                             "value": "100"}))
    period = time.strftime("%Y-%m", time.gmtime())

    def batch(n: int) -> list[dict[str, Any]]:
        return [{"id": f"use-{n}", "project": projects[n]["url"], "amount": "30",
                 "period": period}]

    answer = killed_then_retried(live, "/api/consumptions/", batch(0), "post")
    survivor = call(live, "POST", "/api/consumptions/", batch(1))
    assert (answer.status_code, survivor.status_code) == (201, 201)
    assert answer.json() == [{**survivor.json()[0], "id": "use-0",
                              "project_uuid": projects[0]["uuid"]}]
    assert answer.json()[0]["replayed"] is False
    assert call(live, "GET", local(credits[0]["url"])).json()["value"] == "70.00000"
    assert call(live, "GET", "/api/consumptions/use-0/").json()[
        "drawn_from_customer_credit"] == "30.00000"
