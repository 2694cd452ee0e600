"""/api/credit-transactions/: one row per balance change, matching the credits' histories.

The scripted scenario (also used by test_history_asof.py) drives everything through the
real HTTP API: grants, consumption and a reversal, a month close, re-open and re-close,
project termination and deletion of a project credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

import falcon.testing
import httpx
import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.credit_transactions import (
    credit_transactions_count,
    credit_transactions_list,
    credit_transactions_retrieve,
)
from waldur_api_client.models.credit_transaction_o_enum import CreditTransactionOEnum

from api.app import create_app
from tests.support import Clock, Directory

PERIOD = "2026-10"
FIELDS = ["uuid", "created", "amount", "transaction_type", "transaction_type_display",
          "comment", "customer_uuid", "customer_name", "project_uuid", "project_name",
          "billing_period", "balance_after", "credit_uuid", "project_credit_uuid"]

# (transaction_type, amount, balance_after, billing_period) per credit, in order
EXPECTED_A = [
    ("staff_grant", "300.00000", "300.00000", None),
    ("compensation", "-120.00000", "180.00000", "2026-10-01"),
    ("compensation", "-10.00000", "170.00000", "2026-10-01"),
    ("rollback", "10.00000", "180.00000", "2026-10-01"),
    ("adjustment", "-180.00000", "0.00000", None),
]
EXPECTED_B = [
    ("staff_grant", "100.00000", "100.00000", None),
    ("compensation", "-30.00000", "70.00000", "2026-10-01"),
    ("minimal_draw", "-30.00000", "40.00000", "2026-10-01"),
    ("rollback", "30.00000", "70.00000", "2026-10-01"),
    ("minimal_draw", "-30.00000", "40.00000", "2026-10-01"),
    ("adjustment", "-40.00000", "0.00000", None),
]
EXPECTED_ORG = [
    ("staff_grant", "1000.00000", "1000.00000", None),
    ("compensation", "-30.00000", "970.00000", "2026-10-01"),
    ("compensation", "-120.00000", "850.00000", "2026-10-01"),
    ("compensation", "-200.00000", "650.00000", "2026-10-01"),
    ("compensation", "-10.00000", "640.00000", "2026-10-01"),
    ("rollback", "10.00000", "650.00000", "2026-10-01"),
    ("staff_grant", "550.00000", "1200.00000", None),
    ("adjustment", "-180.00000", "1020.00000", None),
]


@dataclass
class Scenario:
    """What the script made; uuids as hex."""

    directory: Directory
    org: dict[str, Any]
    org_credit: dict[str, Any]
    projects: dict[str, dict[str, Any]]
    credits: dict[str, dict[str, Any]]
    other_org_credit: dict[str, Any]
    steps: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> falcon.testing.TestClient:
        return self.directory.client

    @property
    def staff(self) -> dict[str, str]:
        return self.directory.staff

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        result = self.client.simulate_get(path, params=params or None,
                                          headers=headers or self.staff)
        assert result.status_code == 200, (path, result.status_code, result.text)
        return result.json


def consume(directory: Directory, *items: tuple[str, dict[str, Any], str]) -> Any:
    body = [{"id": item_id, "project": project["url"], "amount": amount, "period": PERIOD}
            for item_id, project, amount in items]
    return directory.post("/api/consumptions/", body)


def call(directory: Directory, method: str, path: str, status: int, body: Any = None) -> Any:
    result = directory.client.simulate_request(method, path, json=body,
                                               headers=directory.staff)
    assert result.status_code == status, (method, path, result.status_code, result.text)
    return result.json if result.text else None


def run_scenario(directory: Directory) -> Scenario:
    """The script; each step is one API call (one command), in this order. The credits are
    recorded during PERIOD (they pay its floor), which closes on the fixture's day."""
    clock = directory.services.today
    assert isinstance(clock, Clock)
    day, clock.today = clock.today, date(2026, 10, 15)
    org = directory.customer("Org")
    projects = {name: directory.project(org, name) for name in "ABC"}
    org_credit = directory.customer_credit(org, "1000")
    credits = {
        "A": directory.project_credit(
            projects["A"], "300", mark_unused_credit_as_spent_on_project_termination=True),
        "B": directory.project_credit(projects["B"], "100", expected_consumption="80",
                                      grace_coefficient="25"),
    }
    other = directory.customer("Other")
    other_credit = directory.customer_credit(other, "50")
    consume(directory, ("a1", projects["A"], "120"), ("b1", projects["B"], "30"),
            ("c1", projects["C"], "200"))
    consume(directory, ("a2", projects["A"], "10"))
    call(directory, "DELETE", "/api/consumptions/a2/", 204)
    clock.today = day
    call(directory, "POST", f"/api/billing-periods/{PERIOD}/close/", 200, {})
    call(directory, "POST", f"/api/billing-periods/{PERIOD}/reopen/", 200, {})
    call(directory, "POST", f"/api/billing-periods/{PERIOD}/close/", 200, {})
    call(directory, "PATCH", f"/api/customer-credits/{org_credit['uuid']}/", 200,
         {"value": "1200"})
    call(directory, "DELETE", f"/api/projects/{projects['A']['uuid']}/", 204)
    call(directory, "DELETE", f"/api/project-credits/{credits['B']['uuid']}/", 204)
    return Scenario(directory, org, org_credit, projects, credits, other_credit)


@pytest.fixture
def scenario(directory: Directory) -> Scenario:
    return run_scenario(directory)


def rows(scenario: Scenario, headers: dict[str, str] | None = None,
         **params: Any) -> list[dict[str, Any]]:
    return scenario.get("/api/credit-transactions/", headers, page_size=300,  # type: ignore
                        **params)


def in_order(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The list is newest first; the expectations read oldest first."""
    return [(r["transaction_type"], r["amount"], r["balance_after"], r["billing_period"])
            for r in reversed(found)]


def test_rows_per_credit_match_the_script(scenario: Scenario) -> None:
    a, b = scenario.credits["A"]["uuid"], scenario.credits["B"]["uuid"]
    assert in_order(rows(scenario, project_credit_uuid=a)) == EXPECTED_A
    assert in_order(rows(scenario, project_credit_uuid=b)) == EXPECTED_B
    assert in_order(rows(scenario, credit_uuid=scenario.org_credit["uuid"])) == EXPECTED_ORG


def test_rows_are_the_balance_moving_events_of_every_history(scenario: Scenario) -> None:
    """Each row is one history entry with a non-zero amount, or one item line of a draw
    event: same uuid, time, numbers."""
    histories = [
        scenario.get(f"/api/project-credits/{scenario.credits[n]['uuid']}/history/")
        for n in "AB"
    ] + [scenario.get(f"/api/customer-credits/{c['uuid']}/history/")
         for c in (scenario.org_credit, scenario.other_org_credit)]
    expected = {moved["transaction_uuid"]: (entry, moved) for history in histories
                for entry in history for moved in entry.get("lines", [entry])
                if moved["transaction_uuid"]}
    found = {row["uuid"]: row for row in rows(scenario)}
    assert found.keys() == expected.keys()
    assert len(found) == len(EXPECTED_A) + len(EXPECTED_B) + len(EXPECTED_ORG) + 1
    for uuid, row in found.items():
        entry, moved = expected[uuid]
        assert (row["amount"], row["balance_after"], row["transaction_type"]) == (
            moved["amount"], moved["balance_after"], entry["transaction_type"])
        assert row["created"] == entry["timestamp"]
        period = entry["changes"].get("period")
        assert row["billing_period"] == (f"{period}-01" if period else None)


def test_field_set_order_and_attribution(scenario: Scenario) -> None:
    found = rows(scenario, credit_uuid=scenario.org_credit["uuid"])
    assert all(list(row) == FIELDS for row in found)
    write_off = found[0]
    assert write_off["transaction_type"] == "adjustment"
    assert write_off["transaction_type_display"] == "Adjustment"
    assert write_off["comment"] == "Written off: project terminated."
    assert write_off["project_uuid"] == scenario.projects["A"]["uuid"]
    assert write_off["project_name"] == "A"
    assert write_off["customer_uuid"] == scenario.org["uuid"]
    assert write_off["customer_name"] == "Org"
    assert write_off["credit_uuid"] == scenario.org_credit["uuid"]
    assert write_off["project_credit_uuid"] is None
    grant = found[-1]
    assert (grant["project_uuid"], grant["project_name"], grant["billing_period"]) == (
        "", "", None)
    one = scenario.get(f"/api/credit-transactions/{write_off['uuid']}/")
    assert one == write_off


def test_deleted_project_credit_keeps_its_rows_and_names(scenario: Scenario) -> None:
    found = rows(scenario, project_credit_uuid=scenario.credits["B"]["uuid"])
    assert {(r["project_name"], r["customer_name"]) for r in found} == {("B", "Org")}
    assert found[0]["comment"] == "Credit deleted."


FILTERS: list[tuple[dict[str, str], int]] = [
    ({}, 20),
    ({"customer_uuid": "ORG"}, 19),
    ({"project_uuid": "A"}, 9),
    ({"transaction_type": "minimal_draw"}, 2),
    ({"transaction_type": "nonsense"}, 0),
    ({"project_uuid": "not-a-uuid"}, 0),
    ({"billing_period": "2026-10-01"}, 12),
    ({"billing_period_after": "2026-10-01", "billing_period_before": "2026-10-01"}, 12),
    ({"billing_period_after": "2026-11-01"}, 0),
    ({"billing_period_before": "2026-09-01"}, 0),
]


def test_filters(scenario: Scenario) -> None:
    names = {"ORG": scenario.org["uuid"], "A": scenario.projects["A"]["uuid"]}
    for raw, count in FILTERS:
        params = {k: names.get(v, v) for k, v in raw.items()}
        result = scenario.client.simulate_get("/api/credit-transactions/", params=params,
                                              headers=scenario.staff)
        assert result.headers["X-Result-Count"] == str(count), raw
        assert len(result.json) == min(count, 10)
        head = scenario.client.simulate_head("/api/credit-transactions/", params=params,
                                             headers=scenario.staff)
        assert head.headers["X-Result-Count"] == str(count), raw


def test_project_uuid_filter_accepts_hyphenated_uuid(scenario: Scenario) -> None:
    hyphenated = str(UUID(scenario.projects["A"]["uuid"]))
    assert len(rows(scenario, project_uuid=hyphenated)) == 9


def test_invalid_dates_are_400(scenario: Scenario) -> None:
    for name in ("billing_period", "billing_period_after", "billing_period_before"):
        for text in ("2026-13-01", "2026-10", "tomorrow"):
            result = scenario.client.simulate_get(
                "/api/credit-transactions/", params={name: text}, headers=scenario.staff)
            assert result.status_code == 400
            assert result.json == {name: ["Enter a valid date."]}


def test_invalid_uuid_filter_and_ordering_are_400(scenario: Scenario) -> None:
    bad = scenario.client.simulate_get("/api/credit-transactions/",
                                       params={"credit_uuid": "nope"}, headers=scenario.staff)
    assert (bad.status_code, bad.json) == (400, {"credit_uuid": ["Enter a valid UUID."]})
    bad = scenario.client.simulate_get("/api/credit-transactions/", params={"o": "amount"},
                                       headers=scenario.staff)
    assert bad.status_code == 400
    assert bad.json == {"o": ["Select a valid choice. amount is not one of the available "
                              "choices."]}


def test_ordering(scenario: Scenario) -> None:
    newest_first = rows(scenario)
    assert [r["created"] for r in newest_first] == sorted(
        (r["created"] for r in newest_first), reverse=True)
    oldest_first = rows(scenario, o="created")
    assert [r["uuid"] for r in oldest_first] == [r["uuid"] for r in reversed(newest_first)]
    by_period = rows(scenario, o="billing_period")
    periods = [r["billing_period"] for r in by_period if r["billing_period"]]
    assert periods == sorted(periods) and len(periods) == 12
    descending = rows(scenario, o="-billing_period,created")
    dated = [r for r in descending if r["billing_period"]]
    assert [r["created"] for r in dated] == sorted(r["created"] for r in dated)


def test_pagination(scenario: Scenario) -> None:
    result = scenario.client.simulate_get("/api/credit-transactions/",
                                          params={"page_size": 7, "page": 3},
                                          headers=scenario.staff)
    assert result.headers["X-Result-Count"] == "20"
    assert len(result.json) == 6
    assert 'rel="prev"' in result.headers["Link"] and 'rel="next"' not in result.headers["Link"]
    assert [r["uuid"] for r in result.json] == [r["uuid"] for r in rows(scenario)[14:]]


def test_visibility(scenario: Scenario) -> None:
    directory = scenario.directory
    owner = directory.user("owner")
    directory.grant("owner", "customer", scenario.org["uuid"], "owner")
    member = directory.user("member")
    directory.grant("member", "project", scenario.projects["A"]["uuid"], "member")
    outsider = directory.user("outsider")
    support = directory.user("support", support=True)
    assert len(rows(scenario, owner)) == 19
    assert len(rows(scenario, support)) == 20
    mine = rows(scenario, member)
    assert len(mine) == 9
    assert {r["project_uuid"] for r in mine} == {scenario.projects["A"]["uuid"]}
    # the organisation's balance is an organisation total: not for project members
    assert {r["balance_after"] is None for r in mine} == {True, False}
    assert all(r["balance_after"] is None for r in mine if r["credit_uuid"])
    assert all(r["balance_after"] is not None for r in rows(scenario, owner))
    assert rows(scenario, outsider) == []
    hidden = rows(scenario, credit_uuid=scenario.other_org_credit["uuid"])[0]["uuid"]
    result = scenario.client.simulate_get(f"/api/credit-transactions/{hidden}/",
                                          headers=owner)
    assert (result.status_code, result.json) == (
        404, {"detail": "No CreditTransaction matches the given query."})
    anonymous = scenario.client.simulate_get("/api/credit-transactions/")
    assert anonymous.status_code == 401


def test_the_waldur_client_reads_the_ledger(scenario: Scenario) -> None:
    token = scenario.directory.tokens["staff"]
    transport = httpx.WSGITransport(app=create_app(scenario.directory.services))
    api = AuthenticatedClient(base_url="http://testserver", token=token, prefix="Token",
                              httpx_args={"transport": transport})
    a = UUID(scenario.credits["A"]["uuid"])
    listed = credit_transactions_list.sync(client=api, project_credit_uuid=a,
                                           o=[CreditTransactionOEnum.CREATED])
    assert listed is not None
    assert [(t.transaction_type.value, t.amount) for t in listed] == [
        (kind, amount) for kind, amount, _, _ in EXPECTED_A]
    assert listed[1].billing_period == date(2026, 10, 1)
    assert listed[0].customer_uuid == UUID(scenario.org["uuid"])
    assert listed[0].additional_properties["balance_after"] == "300.00000"
    count = credit_transactions_count.sync(
        client=api, customer_uuid=UUID(scenario.org["uuid"]),
        billing_period_after=date(2026, 10, 1))
    assert count == 12
    one = credit_transactions_retrieve.sync(listed[-1].uuid, client=api)
    assert one is not None and one.amount == "-180.00000"
    everything = credit_transactions_list.sync_all(client=api)
    assert len(everything) == 20
