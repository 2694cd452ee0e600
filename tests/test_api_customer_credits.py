"""/api/customer-credits/ and the directory endpoints through Falcon's TestClient."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import CUSTOMER_CREDIT_FIELDS, Directory


@pytest.fixture
def org(directory: Directory) -> dict[str, Any]:
    return directory.customer("Org")


def test_create_with_offerings_and_read_nested(directory: Directory,
                                               org: dict[str, Any]) -> None:
    vm = directory.offering("VM", "OpenStack.Instance")
    created = directory.client.simulate_post("/api/customer-credits/", headers=directory.staff,
                                             json={"customer": org["url"], "value": "1000",
                                                   "offerings": [vm["url"]],
                                                   "end_date": "2027-01-01"})
    assert created.status_code == 201, created.text
    assert list(created.json) == CUSTOMER_CREDIT_FIELDS
    base = "http://falconframework.org/api"
    assert created.json["offerings"] == [
        f"{base}/marketplace-provider-offerings/{vm['uuid']}/"]
    assert created.json["customer"] == f"{base}/customers/{org['uuid']}/"
    retrieved = directory.client.simulate_get(f"/api/customer-credits/{created.json['uuid']}/",
                                              headers=directory.staff).json
    assert retrieved["offerings"] == [{
        "uuid": vm["uuid"], "url": f"{base}/marketplace-provider-offerings/{vm['uuid']}/",
        "type": "OpenStack.Instance", "name": "VM"}]
    assert (retrieved["value"], retrieved["allocated_to_projects"],
            retrieved["consumption_last_month"]) == ("1000.00000", "0.00000", None)
    project = directory.project(org, "P")
    project_credit = directory.project_credit(project, "10")
    assert [o["name"] for o in project_credit["offerings"]] == ["VM"]
    assert project_credit["offerings"][0]["url"].startswith(f"{base}/marketplace-public-")


@pytest.mark.parametrize(("body", "errors"), [
    ({"end_date": "2020-01-01"}, {"end_date": ["The end date must be greater than today's date."]}),
    ({"end_date": "2027-01-15"}, {"end_date": ["End date must be the first day of the month."]}),
    ({"value": "10", "expected_consumption": "10"},
     {"non_field_errors": ["Expected consumption must be smaller than the credit."]}),
    ({"value": "10", "minimal_consumption_logic": "linear"},
     {"non_field_errors": ["End date is required if minimal consumption logic is linear."]}),
    ({"offerings": ["http://x/api/marketplace-public-offerings/" + "0" * 32 + "/"]},
     {"offerings": ["Invalid hyperlink - Object does not exist."]}),
    ({"customer": None}, {"customer": ["This field may not be null."]}),
])
def test_validation(directory: Directory, org: dict[str, Any], body: dict[str, Any],
                    errors: Any) -> None:
    result = directory.client.simulate_post("/api/customer-credits/", headers=directory.staff,
                                            json={"customer": org["url"], **body})
    assert (result.status_code, result.json) == (400, errors)


def test_linear_end_date_must_not_be_this_month(directory: Directory, org: dict[str, Any],
                                                clock: Any) -> None:
    from datetime import date

    clock.today = date(2026, 11, 1)
    result = directory.client.simulate_post("/api/customer-credits/", headers=directory.staff,
                                            json={"customer": org["url"], "value": "10",
                                                  "end_date": "2026-11-01",
                                                  "minimal_consumption_logic": "linear"})
    assert result.json == {"non_field_errors": [
        "End date must be greater if minimal consumption logic is linear."]}


def test_one_per_customer_and_staff_only_writes(directory: Directory,
                                                org: dict[str, Any]) -> None:
    client = directory.client
    credit = directory.customer_credit(org, "100")
    duplicate = client.simulate_post("/api/customer-credits/", headers=directory.staff,
                                     json={"customer": org["url"]})
    assert duplicate.json == {"customer": ["customer credit with this customer already exists."]}
    owner = directory.user("owner")
    directory.grant("owner", "customer", org["uuid"], "owner")
    path = f"/api/customer-credits/{credit['uuid']}/"
    assert client.simulate_get(path, headers=owner).json["value"] == "100.00000"
    assert client.simulate_patch(path, json={"value": "1"}, headers=owner).status_code == 403
    assert client.simulate_delete(path, headers=owner).status_code == 403
    assert client.simulate_post("/api/customer-credits/", json={"customer": org["url"]},
                                headers=owner).status_code == 403
    stranger = directory.user("stranger")
    assert client.simulate_get(path, headers=stranger).status_code == 404
    assert client.simulate_get(path).status_code == 401


def test_update_and_list(directory: Directory, org: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    other = directory.customer("Beta Org")
    first = directory.customer_credit(org, "100")
    directory.customer_credit(other, "300")
    patched = client.simulate_patch(f"/api/customer-credits/{first['uuid']}/", headers=staff,
                                    json={"value": "500", "grace_coefficient": "10",
                                          "expected_consumption": "100"})
    assert patched.status_code == 200, patched.text
    assert (patched.json["value"], patched.json["minimal_consumption"]) == (
        "500.00000", "90.000000")
    put = client.simulate_put(f"/api/customer-credits/{first['uuid']}/", headers=staff,
                              json={"value": "50", "expected_consumption": "100"})
    assert put.json == {"non_field_errors": [
        "Expected consumption must be smaller than the credit."]}

    def names(**params: str) -> list[str]:
        result = client.simulate_get("/api/customer-credits/", params=params, headers=staff)
        return [row["customer_name"] for row in result.json]

    assert names() == ["Org", "Beta Org"]
    assert names(o="-value") == ["Org", "Beta Org"]
    assert names(o="value") == ["Beta Org", "Org"]
    assert names(customer_name="beta") == ["Beta Org"]
    assert names(query="org") == ["Org", "Beta Org"]
    assert names(customer_uuid=other["uuid"]) == ["Beta Org"]
    count = client.simulate_head("/api/customer-credits/", headers=staff)
    assert count.headers["X-Result-Count"] == "2"


def test_directory(directory: Directory, org: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    assert org["slug"] == "org"
    project = directory.project(org, "My Project")
    assert (project["slug"], project["customer"]) == ("my-project", org["url"])
    bad = client.simulate_post("/api/projects/", headers=staff, json={"name": "x"})
    assert bad.json == {"customer": ["This field is required."]}
    member = directory.user("member")
    assert client.simulate_post("/api/customers/", json={"name": "x"},
                                headers=member).status_code == 403
    directory.grant("member", "project", project["uuid"], "member")
    visible = client.simulate_get("/api/projects/", headers=member).json
    assert [p["name"] for p in visible] == ["My Project"]
    directory.customer_credit(org, "100")
    directory.project_credit(project, "40")
    customer = client.simulate_get(f"/api/customers/{org['uuid']}/", headers=staff).json
    assert (customer["customer_credit"], customer["customer_unallocated_credit"]) == (
        "100.00000", "60.00000")


def test_idempotency_key_replays_the_first_answer(directory: Directory,
                                                  org: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    headers = {**staff, "Idempotency-Key": "create-org-credit-1"}
    body = {"customer": org["url"], "value": "100"}
    first = client.simulate_post("/api/customer-credits/", json=body, headers=headers)
    again = client.simulate_post("/api/customer-credits/", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.simulate_head("/api/customer-credits/", headers=staff
                                ).headers["X-Result-Count"] == "1"
    other = client.simulate_post("/api/customer-credits/", headers=headers,
                                 json={**body, "value": "5"})
    assert other.status_code == 422
