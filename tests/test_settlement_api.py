"""Consumption, month close and termination through the HTTP API (reference §4.13)."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import event

from api.app import create_app
from api.server.wiring import Services, build_services
from tests.support import (
    Clock,
    Directory,
    capture_statements,
    count_log_end_queries,
    read_model_rows,
)


def post_items(directory: Directory, *items: dict[str, Any]) -> Any:
    result = directory.client.simulate_post("/api/consumptions/", json=list(items),
                                            headers=directory.staff)
    assert result.status_code in (200, 201), result.text
    return result.json


def close(directory: Directory, period: str) -> Any:
    result = directory.client.simulate_post(f"/api/billing-periods/{period}/close/",
                                            headers=directory.staff)
    assert result.status_code == 200, result.text
    return result.json


def get(directory: Directory, credit: dict[str, Any]) -> Any:
    return directory.client.simulate_get(credit["url"].split("falconframework.org")[1],
                                         headers=directory.staff).json


def item(item_id: str, project: dict[str, Any], amount: str, period: str = "2025-02",
         offering: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": item_id, "project": project["url"], "amount": amount, "period": period,
            "offering": offering["url"] if offering else None}


def test_example_a_mixed_project_credits(directory: Directory, services: Services,
                                         clock: Clock) -> None:
    clock.today = date(2025, 2, 10)
    org = directory.customer("Org")
    a, b, c = (directory.project(org, name) for name in "ABC")
    cc = directory.customer_credit(org, "1000")
    pa = directory.project_credit(a, "300")
    pb = directory.project_credit(b, "100", expected_consumption="80", grace_coefficient="25")
    clock.today = date(2025, 3, 10)
    results = post_items(directory, item("a1", a, "120"), item("a2", a, "250"),
                         item("b1", b, "30"), item("c1", c, "200"))
    assert [(r["id"], r["drawn_from_project_credit"], r["drawn_from_customer_credit"],
             r["uncovered"], r["replayed"]) for r in results] == [
        ("a1", "120.00000", "0.00000", "0.00000", False),
        ("a2", "180.00000", "0.00000", "70.00000", False),
        ("b1", "30.00000", "0.00000", "0.00000", False),
        ("c1", "0.00000", "200.00000", "0.00000", False)]
    assert close(directory, "2025-02")["customers_settled"] == 1
    a_now, b_now, org_now = get(directory, pa), get(directory, pb), get(directory, cc)
    assert (a_now["value"], b_now["value"], org_now["value"]) == (
        "0.00000", "40.00000", "470.00000")
    assert (b_now["spendable_value"], b_now["is_limited_by_organization_credit"]) == (
        "40.00000", False)
    assert (a_now["consumption_last_month"], b_now["consumption_last_month"]) == (
        "300.00000", "30.00000")
    assert org_now["consumption_last_month"] == "530.00000"
    history = directory.client.simulate_get(f"/api/customer-credits/{cc['uuid']}/consumptions/",
                                            headers=directory.staff).json
    assert history == [{"date": "2025-02-01", "price": "530.00"}]
    before = read_model_rows(services.engine)
    services.projector.rebuild()
    assert read_model_rows(services.engine) == before


def test_example_b_organisation_floor(directory: Directory, clock: Clock) -> None:
    clock.today = date(2025, 2, 10)
    org = directory.customer("Org")
    a = directory.project(org, "A")
    cc = directory.customer_credit(org, "1000", expected_consumption="300")
    clock.today = date(2025, 3, 10)
    post_items(directory, item("u", a, "100"))
    close(directory, "2025-02")
    assert get(directory, cc)["value"] == "700.00000"


def test_example_d_linear_recalculation(directory: Directory, clock: Clock) -> None:
    clock.today = date(2025, 2, 10)
    org = directory.customer("Org")
    p, q = directory.project(org, "P"), directory.project(org, "Q")
    directory.customer_credit(org, "5000")
    linear = {"end_date": "2025-07-01", "expected_consumption": "200",
              "minimal_consumption_logic": "linear"}
    pc = directory.project_credit(p, "1200", **linear)
    qc = directory.project_credit(q, "1200", grace_coefficient="50", **linear)
    post_items(directory, item("p", p, "150"), item("q", q, "120"))
    clock.today = date(2025, 3, 1)
    close(directory, "2025-02")
    assert (get(directory, pc)["value"], get(directory, pc)["expected_consumption"]) == (
        "1000.00000", "254.09836")
    assert (get(directory, qc)["value"], get(directory, qc)["expected_consumption"]) == (
        "1080.00000", "334.09836")


def test_example_d_near_the_end(directory: Directory, clock: Clock) -> None:
    clock.today = date(2026, 2, 10)
    org = directory.customer("Org")
    p = directory.project(org, "P")
    directory.customer_credit(org, "5000")
    pc = directory.project_credit(p, "500", end_date="2026-04-01", expected_consumption="100",
                                  minimal_consumption_logic="linear")
    post_items(directory, item("p", p, "300", "2026-02"))
    close(directory, "2026-02")
    assert (get(directory, pc)["value"], get(directory, pc)["expected_consumption"]) == (
        "200.00000", "200.00000")


def test_example_e_expiry(directory: Directory, clock: Clock) -> None:
    clock.today = date(2025, 12, 20)
    org = directory.customer("Org")
    p = directory.project(org, "P")
    cc = directory.customer_credit(org, "100000")
    pc = directory.project_credit(p, "50000", end_date="2026-01-01")
    clock.today = date(2026, 1, 20)
    december = post_items(directory, item("dec", p, "10", "2025-12"))[0]
    assert december["drawn_from_project_credit"] == "10.00000"
    close(directory, "2025-12")
    assert get(directory, pc)["value"] == "0.00000"  # expired at once, not a month later
    assert get(directory, cc)["value"] == "99990.00000"
    january = post_items(directory, item("jan", p, "40", "2026-01"))[0]
    assert (january["drawn_from_project_credit"], january["drawn_from_customer_credit"],
            january["uncovered"]) == ("0.00000", "0.00000", "40.00000")


@pytest.mark.parametrize(("mark_unused", "org_after"), [(True, "90.00000"),
                                                         (False, "100.00000")])
def test_example_g_termination(directory: Directory, mark_unused: bool,
                               org_after: str) -> None:
    org = directory.customer("Org")
    p = directory.project(org, "P")
    cc = directory.customer_credit(org, "100")
    pc = directory.project_credit(
        p, "10", mark_unused_credit_as_spent_on_project_termination=mark_unused)
    deleted = directory.client.simulate_delete(f"/api/projects/{p['uuid']}/",
                                               headers=directory.staff)
    assert deleted.status_code == 204
    assert (get(directory, pc)["value"], get(directory, cc)["value"]) == ("0.00000", org_after)
    refused = directory.client.simulate_post("/api/consumptions/", headers=directory.staff,
                                             json=[item("late", p, "1")])
    assert (refused.status_code, refused.json) == (400, [{"project": [
        "The project is terminated."]}])
    no_credit = directory.client.simulate_patch(pc["url"].split(".org")[1], json={"value": "1"},
                                                headers=directory.staff)
    assert no_credit.status_code == 400


def test_idempotent_posting_reversal_and_closed_periods(directory: Directory) -> None:
    client, staff = directory.client, directory.staff
    org = directory.customer("Org")
    p = directory.project(org, "P")
    cc = directory.customer_credit(org, "100")
    first = post_items(directory, item("x", p, "30"))
    again = client.simulate_post("/api/consumptions/", json=[item("x", p, "30")], headers=staff)
    assert again.status_code == 200
    assert again.json[0] == {**first[0], "replayed": True}
    assert get(directory, cc)["value"] == "70.00000"
    assert client.simulate_delete("/api/consumptions/x/", headers=staff).status_code == 204
    assert get(directory, cc)["value"] == "100.00000"
    twice = client.simulate_delete("/api/consumptions/x/", headers=staff)
    assert twice.status_code == 409
    assert client.simulate_delete("/api/consumptions/nope/", headers=staff).status_code == 404
    post_items(directory, item("y", p, "20"))
    assert close(directory, "2025-02")["already_closed"] is False
    assert close(directory, "2025-02") == {"period": "2025-02", "state": "closed",
                                           "already_closed": True, "customers_settled": 0}
    refused = client.simulate_post("/api/consumptions/", json=[item("z", p, "1")],
                                   headers=staff)
    assert (refused.status_code, refused.json) == (
        409, {"detail": "Billing period 2025-02 is closed."})
    assert client.simulate_delete("/api/consumptions/y/", headers=staff).status_code == 409


def test_a_bad_item_rejects_the_whole_batch(directory: Directory) -> None:
    org = directory.customer("Org")
    p = directory.project(org, "P")
    cc = directory.customer_credit(org, "100")
    result = directory.client.simulate_post("/api/consumptions/", headers=directory.staff, json=[
        item("ok", p, "10"), {**item("bad", p, "10"), "amount": "-1"},
        {**item("late", p, "1"), "period": "2025-13"}, item("ok", p, "1")])
    assert result.status_code == 400
    assert result.json == [
        {}, {"amount": ["Ensure this value is greater than or equal to 0."]},
        {"period": ["Enter a billing period as YYYY-MM."]},
        {"id": ["Duplicate id in this request."]}]
    assert get(directory, cc)["value"] == "100.00000"
    forbidden = directory.client.simulate_post("/api/consumptions/", json=[item("u", p, "1")],
                                               headers=directory.user("someone"))
    assert forbidden.status_code == 403


def test_reopen_and_close_again_gives_the_same_balances(directory: Directory,
                                                        services: Services) -> None:
    client, staff = directory.client, directory.staff
    org = directory.customer("Org")
    a, b = directory.project(org, "A"), directory.project(org, "B")
    cc = directory.customer_credit(org, "1000", expected_consumption="400",
                                   end_date="2027-01-01", minimal_consumption_logic="linear")
    pb = directory.project_credit(b, "100", expected_consumption="80", grace_coefficient="25")
    post_items(directory, item("a", a, "120"), item("b", b, "30"))
    close(directory, "2025-02")
    settled = (get(directory, cc), get(directory, pb))
    reopened = client.simulate_post("/api/billing-periods/2025-02/reopen/", headers=staff)
    assert reopened.json == {"period": "2025-02", "state": "open", "customers_reopened": 1}
    assert (get(directory, cc)["value"], get(directory, pb)["value"]) == (
        "850.00000", "70.00000")
    assert get(directory, cc)["expected_consumption"] == "400.00000"
    close(directory, "2025-02")
    assert (get(directory, cc), get(directory, pb)) == settled
    not_closed = client.simulate_post("/api/billing-periods/2025-03/reopen/", headers=staff)
    assert not_closed.status_code == 409


def test_racing_duplicate_posts_draw_once(directory: Directory, services: Services,
                                          database_url: str, clock: Clock) -> None:
    org = directory.customer("Org")
    p = directory.project(org, "P")
    cc = directory.customer_credit(org, "100")
    workers = [build_services(database_url, today=clock) for _ in range(4)]
    clients = [falcon.testing.TestClient(create_app(w)) for w in workers]
    statuses: list[int] = []

    def post(client: falcon.testing.TestClient) -> None:
        result = client.simulate_post("/api/consumptions/", json=[item("same", p, "7")],
                                      headers=directory.staff)
        statuses.append(result.status_code)

    try:
        _run_threads([lambda c=c: post(c) for c in clients for _ in range(2)])
    finally:
        for worker in workers:
            worker.close()
    assert sorted(statuses) == [200] * 7 + [201]
    assert get(directory, cc)["value"] == "93.00000"


def test_concurrent_posting_to_one_credit(directory: Directory, services: Services,
                                          database_url: str, clock: Clock) -> None:
    """Several 'workers' post to one project credit at once: no draw lost, none doubled."""
    org = directory.customer("Org")
    p = directory.project(org, "P")
    cc = directory.customer_credit(org, "1000")
    pc = directory.project_credit(p, "50")
    workers = [build_services(database_url, today=clock) for _ in range(4)]
    clients = [falcon.testing.TestClient(create_app(w)) for w in workers]
    results: list[Any] = []

    def post(client: falcon.testing.TestClient, n: int) -> None:
        for k in range(5):
            response = client.simulate_post("/api/consumptions/", headers=directory.staff,
                                            json=[item(f"w{n}-{k}", p, "3.33333")])
            assert response.status_code == 201, response.text
            results.extend(response.json)

    try:
        _run_threads([lambda c=c, n=n: post(c, n) for n, c in enumerate(clients)])
    finally:
        for worker in workers:
            worker.close()
    drawn = sum(Decimal(r["drawn_from_project_credit"]) for r in results)
    assert len(results) == 20
    assert drawn == Decimal("50.00000")  # 15 full draws of 3.33333 and a last partial one
    assert Decimal(get(directory, pc)["value"]) == Decimal(50) - drawn
    assert Decimal(get(directory, cc)["value"]) == Decimal(1000) - drawn


def test_a_batch_records_one_draw_event_per_credit(directory: Directory,
                                                   services: Services) -> None:
    """200 items over 20 projects: one event per item, one draw per credit, and no more."""
    orgs = [directory.customer(f"Org {n}") for n in range(2)]
    credits = [directory.customer_credit(org, "1000") for org in orgs]
    projects = [directory.project(orgs[n % 2], f"P{n}") for n in range(20)]
    funded = [directory.project_credit(p, "30") for p in projects[:10]]
    post_items(directory, item("first", projects[0], "0", "2025-01"))  # the calendar learns
    before = services.ledger.recorder.max_notification_id() or 0
    results = post_items(directory, *(item(f"i{k}", projects[k % 20], "2") for k in range(200)))
    events = (services.ledger.recorder.max_notification_id() or 0) - before
    assert events == 200 + len(funded) + len(credits)
    assert {r["drawn_from_project_credit"] for r in results[:10]} == {"2.00000"}
    assert {r["drawn_from_customer_credit"] for r in results[10:20]} == {"2.00000"}
    assert [get(directory, c)["value"] for c in funded] == ["10.00000"] * 10
    assert [get(directory, c)["value"] for c in credits] == ["800.00000"] * 2
    assert [get(directory, c)["allocated_to_projects"] for c in credits] == ["50.00000"] * 2
    again = directory.client.simulate_post(
        "/api/consumptions/", headers=directory.staff,
        json=[item(f"i{k}", projects[k % 20], "2") for k in range(200)])
    assert again.status_code == 200 and all(r["replayed"] for r in again.json)
    assert (services.ledger.recorder.max_notification_id() or 0) - before == events


def _run_threads(targets: list[Any]) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()


def test_month_fields_follow_posted_consumption(directory: Directory, clock: Clock) -> None:
    """creditable_cost_this_month counts eligible cost only; null means nothing was posted."""
    clock.today = date(2025, 2, 20)
    org = directory.customer("Org")
    p, q = directory.project(org, "P"), directory.project(org, "Q")
    vm, storage = directory.offering("VM"), directory.offering("Storage")
    directory.customer_credit(org, "1000", offerings=[vm["url"]])
    pc = directory.project_credit(p, "100")
    qc = directory.project_credit(q, "100")
    assert get(directory, pc)["creditable_cost_this_month"] is None
    post_items(directory, item("vm", p, "30", "2025-02", vm),
               item("st", p, "500", "2025-02", storage))
    assert get(directory, pc)["creditable_cost_this_month"] == "30.00000"
    assert get(directory, qc)["creditable_cost_this_month"] == "0.00000"
    clock.today = date(2025, 3, 3)
    assert (get(directory, pc)["consumption_last_month"],
            get(directory, qc)["consumption_last_month"]) == ("30.00000", "0.00000")
    clock.today = date(2025, 4, 3)
    assert get(directory, pc)["consumption_last_month"] is None


def test_a_write_is_projected_without_asking_where_the_log_ends(
        directory: Directory, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read-your-writes: the posting request's own save says how far the log reaches, so
    its catch-up goes straight to the projection lock, which returns the position: neither
    the log's end nor the stored position is asked first (two round trips fewer on every
    write, issue 18). The answer, and the next read, still show the item."""
    org = directory.customer("Org")
    project = directory.project(org, "P")
    credit = directory.customer_credit(org, "100")
    post_items(directory, item("warm", project, "1"))
    asked = count_log_end_queries(services, monkeypatch)
    executed: list[str] = []
    with capture_statements(services.engine, executed):
        accepted = post_items(directory, item("k1", project, "2.5"))
    statements = [" ".join(statement.split()) for statement in executed]
    assert len(asked) == 1  # the caller's token, checked before the body is read
    tracking = [s for s in statements if "projection_tracking" in s]
    assert len(tracking) == 2 and tracking[0].startswith(
        "UPDATE projection_tracking SET position=projection_tracking.position")
    assert tracking[1].startswith("UPDATE projection_tracking SET position=")
    assert [(r["id"], r["amount"]) for r in accepted] == [("k1", "2.50000")]
    after = directory.client.simulate_get(f"/api/customer-credits/{credit['uuid']}/",
                                          headers=directory.staff).json
    assert after["value"] == "96.50000"


def test_a_batch_of_uncached_aggregates_is_loaded_in_one_round(
        directory: Directory, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing cached (a worker just started, or projects it has not seen), a batch
    loaded its projects, then their customers and project credits, then the customers'
    credits: three rounds. The read models' links, read with the projects' check, are
    loaded with the projects: one round (issue 18). Stale links are only a wasted load."""
    from eventsourcing.application import LRUCache

    from ledger.store import Unit

    org = directory.customer("Org")
    funded, bare = directory.project(org, "Funded"), directory.project(org, "Bare")
    directory.customer_credit(org, "100")
    directory.project_credit(funded, "10")
    rounds: list[int] = []
    prefetch = Unit.prefetch

    def counted(unit: Unit, wanted: dict[Any, Any]) -> None:
        rounds.append(len(wanted))
        prefetch(unit, wanted)

    monkeypatch.setattr(Unit, "prefetch", counted)
    monkeypatch.setattr(services.ledger.repository, "cache", LRUCache(maxsize=100))
    posted = post_items(directory, item("a", funded, "4"), item("b", bare, "3"))
    assert rounds == [6]  # the calendar, two projects, their customer and its two credits
    assert [(r["drawn_from_project_credit"], r["drawn_from_customer_credit"]) for r in posted
            ] == [("4.00000", "0.00000"), ("0.00000", "3.00000")]
    org_credit = directory.client.simulate_get(
        "/api/customer-credits/", params={"customer_uuid": org["uuid"]},
        headers=directory.staff).json[0]
    assert org_credit["value"] == "93.00000"


def test_a_batch_looks_its_projects_up_in_one_query(directory: Directory,
                                                    services: Services) -> None:
    """Each item's project is checked (unknown, terminated), but with one query for the
    batch, not one per project (issue 18: 50 projects cost 50 round trips)."""
    org = directory.customer("Org")
    live = [directory.project(org, f"P{n}") for n in range(3)]
    ended = directory.project(org, "Ended")
    directory.customer_credit(org, "100")
    assert directory.client.simulate_delete(f"/api/projects/{ended['uuid']}/",
                                            headers=directory.staff).status_code == 204
    unknown = {"url": "/api/projects/" + "0" * 32 + "/"}
    statements: list[str] = []
    with capture_statements(services.reads, statements):
        refused = directory.client.simulate_post(
            "/api/consumptions/", headers=directory.staff,
            json=[item(f"i{n}", p, "1") for n, p in enumerate([*live, ended, unknown])])
    assert (refused.status_code, refused.json) == (400, [
        {}, {}, {}, {"project": ["The project is terminated."]},
        {"project": ["Invalid hyperlink - Object does not exist."]}])
    assert len([s for s in statements if "FROM projects" in s]) == 1
    accepted = post_items(directory, *[item(f"j{n}", p, "1") for n, p in enumerate(live)])
    assert [r["project_uuid"] for r in accepted] == [p["uuid"] for p in live]


def test_a_posted_items_projection_sends_its_writes_in_one_round_trip(
        directory: Directory, services: Services, database_url: str) -> None:
    """PostgreSQL: the read models' writes for a posted item go out in one pipeline (one
    round trip) instead of one statement at a time under the projection lock (issue 18);
    the answer and the read models show the item as before."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs in-process: there is no round trip to save")
    org = directory.customer("Org")
    project = directory.project(org, "P")
    directory.customer_credit(org, "100")
    post_items(directory, item("warm", project, "1"))
    writes: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(("INSERT", "UPDATE", "DELETE")) and \
                "projection_tracking" not in statement:
            pipelined = conn.connection.dbapi_connection.pgconn.pipeline_status
            writes.append((statement.split()[2], bool(pipelined)))

    event.listen(services.engine, "before_cursor_execute", record)
    try:
        accepted = post_items(directory, item("k1", project, "2.5"))
    finally:
        event.remove(services.engine, "before_cursor_execute", record)
    assert [(r["id"], r["amount"]) for r in accepted] == [("k1", "2.50000")]
    assert len(writes) >= 5 and all(pipelined for _, pipelined in writes), writes
    listed = directory.client.simulate_get("/api/customer-credits/", headers=directory.staff)
    assert listed.json[0]["value"] == "96.50000"
