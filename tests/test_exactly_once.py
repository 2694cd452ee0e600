"""Every keyed command exactly once: a retry after its answer was lost (the process died
between the commit and storing the answer) finds the key recorded in the event store with
the command's events, and answers from it without executing again. Through the WSGI app on
SQLite and PostgreSQL; tests/test_edge_idempotency.py kills live workers at that instant."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import delete, update

from api.http.common import Resource
from api.http.idempotency import idempotent_requests
from api.server.wiring import Services
from tests.support import Clock, Directory, read_model_rows
from tests.test_settlement_api import item, post_items

Case = Callable[[Directory], tuple[str, Any]]


def path(resource: dict[str, Any], suffix: str = "") -> str:
    return str(resource["url"].split("falconframework.org")[1]) + suffix


def funded(directory: Directory) -> dict[str, Any]:
    org = directory.customer("Org")
    project = directory.project(org, "P")
    credit = directory.customer_credit(org, "100")
    return {"org": org, "project": project, "credit": credit}


def compensation(directory: Directory) -> tuple[str, Any]:
    setup = funded(directory)
    post_items(directory, item("big", setup["project"], "150", "2026-11"))
    directory.client.simulate_patch(path(setup["credit"]), json={"value": "500"},
                                    headers=directory.staff)
    return path(setup["credit"], "apply_compensations/"), None


def close_month(directory: Directory) -> tuple[str, Any]:
    funded(directory)
    return "/api/billing-periods/2026-11/close/", None


def reopen(directory: Directory) -> tuple[str, Any]:
    directory.customer_credit(directory.customer("Org"), "100", expected_consumption="10")
    directory.client.simulate_post("/api/billing-periods/2026-11/close/",
                                   headers=directory.staff)
    return "/api/billing-periods/2026-11/reopen/", None


CASES: dict[str, Case] = {
    "customer": lambda d: ("/api/customers/", {"name": "Keyed"}),
    "project": lambda d: ("/api/projects/", {"name": "K", "customer": d.customer()["url"]}),
    "offering": lambda d: ("/api/marketplace-public-offerings/",
                           {"name": "VM", "type": "OpenStack.Instance"}),
    "customer credit": lambda d: ("/api/customer-credits/",
                                  {"customer": d.customer()["url"], "value": "100"}),
    "project credit": lambda d: ("/api/project-credits/",
                                 {"project": funded(d)["project"]["url"], "value": "10"}),
    "adjustment": lambda d: (path(funded(d)["credit"], "adjust_withdrawable/"),
                             {"amount": "5", "comment": "top-up"}),
    "compensation": compensation,
    "close": close_month,
    "reopen": reopen,
    "consumption": lambda d: ("/api/consumptions/",
                              [item("c1", funded(d)["project"], "30", "2026-11")]),
}


def send(directory: Directory, where: str, body: Any, key: str) -> Any:
    return directory.client.simulate_post(
        where, json=body, headers={**directory.staff, "Idempotency-Key": key})


def lose_answer(services: Services, key: str) -> None:
    """What a worker killed after the commit leaves: a reservation with no answer whose
    lease has lapsed."""
    with services.engine.begin() as conn:
        conn.execute(update(idempotent_requests).where(idempotent_requests.c.key == key)
                     .values(status=None, body=None, lease_until=0))


def purge_answers(services: Services) -> None:
    with services.engine.begin() as conn:
        conn.execute(delete(idempotent_requests))


def position(services: Services) -> int:
    return services.ledger.recorder.max_notification_id() or 0


@pytest.mark.parametrize("case", list(CASES))
def test_a_retry_after_a_lost_answer_does_not_execute_again(
        directory: Directory, services: Services, case: str) -> None:
    where, body = CASES[case](directory)
    first = send(directory, where, body, "once")
    assert first.status_code in (200, 201), first.text
    recorded = position(services)
    lose_answer(services, "once")
    retry = send(directory, where, body, "once")
    assert (retry.status_code, retry.json) == (first.status_code, first.json)
    assert position(services) == recorded  # nothing executed again
    before = read_model_rows(services.engine)
    services.projector.rebuild()  # the key's records are no part of any read model
    assert read_model_rows(services.engine) == before


def test_a_key_is_used_once_ever_even_after_its_answer_expired(
        directory: Directory, services: Services) -> None:
    first = send(directory, "/api/customers/", {"name": "Once"}, "forever")
    purge_answers(services)  # the answer's 24 h are over
    recorded = position(services)
    other = send(directory, "/api/customers/", {"name": "Other"}, "forever")
    assert (other.status_code, other.json) == (
        422, {"detail": "This Idempotency-Key was used with a different request."})
    purge_answers(services)
    again = send(directory, "/api/customers/", {"name": "Once"}, "forever")
    assert (again.status_code, again.json) == (201, first.json)
    assert position(services) == recorded


def test_the_same_json_formatted_otherwise_replays(directory: Directory,
                                                    clock: Clock) -> None:
    clock.today = date(2026, 11, 26)
    headers = {**directory.staff, "Idempotency-Key": "spaces",
               "Content-Type": "application/json"}
    first = directory.client.simulate_post("/api/customers/", headers=headers,
                                           body=b'{"name":"Spaced","slug":"s"}')
    again = directory.client.simulate_post("/api/customers/", headers=headers,
                                           body=b'{ "slug" : "s",\n  "name": "Spaced" }')
    assert (again.status_code, again.json) == (201, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = directory.client.simulate_post("/api/customers/", headers=headers,
                                           body=b'{"name": "Spaced", "slug": "t"}')
    assert other.status_code == 422
    listed = directory.client.simulate_get("/api/customers/", params={"name": "Spaced"},
                                           headers=directory.staff).json
    assert [row["uuid"] for row in listed] == [first.json["uuid"]]


def test_a_server_error_after_the_commit_frees_the_key_for_a_rebuilt_answer(
        directory: Directory, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database went away after the ledger committed: 500, and the key is not kept, so
    the retry answers from the key's record instead of a dead end."""
    def broken(resource: Any) -> None:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(Resource, "settle_reads", broken)
        failed = send(directory, "/api/customers/", {"name": "Lost"}, "lost")
    assert failed.status_code == 500
    recorded = position(services)
    retry = send(directory, "/api/customers/", {"name": "Lost"}, "lost")
    assert retry.status_code == 201
    assert position(services) == recorded
    listed = directory.client.simulate_get("/api/customers/", params={"name": "Lost"},
                                           headers=directory.staff).json
    assert [(row["uuid"], row["name"]) for row in listed] == [(retry.json["uuid"], "Lost")]


def test_a_rebuilt_answer_waits_for_the_commands_events_on_another_worker(
        directory: Directory, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry after a lost answer may reach another worker, whose own last save is older
    than the key's record. Read-your-writes must still wait for the command's events:
    on PostgreSQL a request does not wait for a catch-up another connection has under
    way, so without that wait the rebuilt answer read a customer not yet projected and
    answered 404 (seen when PostgreSQL restarted under load)."""
    def broken(resource: Any) -> None:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(Resource, "settle_reads", broken)
        assert send(directory, "/api/customers/", {"name": "Lost"}, "lost").status_code == 500
    recorded = position(services)
    settle = Resource.settle_reads
    waited_for: list[int] = []

    def noted(resource: Any) -> None:
        waited_for.append(services.ledger.last_saved_position())
        settle(resource)

    retried: list[Any] = []
    with monkeypatch.context() as patched:
        patched.setattr(Resource, "settle_reads", noted)
        worker = threading.Thread(target=lambda: retried.append(
            send(directory, "/api/customers/", {"name": "Lost"}, "lost")))
        worker.start()
        worker.join()
    assert (retried[0].status_code, retried[0].json["name"]) == (201, "Lost")
    assert waited_for and waited_for[0] >= recorded
    assert position(services) == recorded


@pytest.mark.parametrize("case", ["customer credit", "project credit", "adjustment"])
def test_a_rebuilt_credit_answer_shows_the_credit_as_the_lost_answer_did(
        directory: Directory, services: Services, case: str) -> None:
    """Between the lost answer and the retry someone else moved the credit: the retry
    still answers what the survivor would have sent (the credit as of the first run)."""
    where, body = CASES[case](directory)
    first = send(directory, where, body, "once")
    lose_answer(services, "once")
    changed = directory.client.simulate_patch(path(first.json), json={"value": "42"},
                                              headers=directory.staff)
    assert changed.status_code == 200 and changed.json["value"] == "42.00000"
    retry = send(directory, where, body, "once")
    assert (retry.status_code, retry.json) == (first.status_code, first.json)
