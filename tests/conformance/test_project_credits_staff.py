"""/api/project-credits/ as staff, through waldur_api_client.api.project_credits.*"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.customer_credits import customer_credits_retrieve
from waldur_api_client.api.project_credits import (
    project_credits_count,
    project_credits_create,
    project_credits_destroy,
    project_credits_list,
    project_credits_partial_update,
    project_credits_retrieve,
    project_credits_update,
)
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models.minimal_consumption_logic_enum import MinimalConsumptionLogicEnum
from waldur_api_client.models.patched_project_credit_request import PatchedProjectCreditRequest
from waldur_api_client.models.project_credit_o_enum import ProjectCreditOEnum
from waldur_api_client.models.project_credit_request import ProjectCreditRequest
from waldur_api_client.types import Unset

from tests.conformance.conftest import (
    HEX32,
    NO_PROJECT_CREDIT,
    LedgerServer,
    Staff,
    money,
)
from tests.support import PROJECT_CREDIT_FIELDS


def _months_ahead(months: int) -> date:
    today = datetime.now(UTC).date()
    index = today.year * 12 + today.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _error(raised: pytest.ExceptionInfo[UnexpectedStatus]) -> tuple[int, Any]:
    return raised.value.status_code, json.loads(raised.value.content)


def test_create_returns_upstreams_representation(
        server: LedgerServer, staff: Staff, staff_api: AuthenticatedClient) -> None:
    vm = staff.offering("VM")
    org = staff.customer("Initech")
    project = staff.project(org, "Data Lake")
    staff.customer_credit(org, "1000", offerings=[vm["url"]])
    end = _months_ahead(3)
    response = project_credits_create.sync_detailed(client=staff_api, body=ProjectCreditRequest(
        project=project["url"], value="300", end_date=end, expected_consumption="80",
        minimal_consumption_logic=MinimalConsumptionLogicEnum.FIXED, grace_coefficient="25",
        apply_as_minimal_consumption=True,
        mark_unused_credit_as_spent_on_project_termination=True))
    assert response.status_code == 201
    body = json.loads(response.content)
    assert list(body) == PROJECT_CREDIT_FIELDS
    uuid = body["uuid"]
    assert HEX32.match(uuid) and HEX32.match(body["project_uuid"])
    assert body == {
        "uuid": uuid,
        "url": f"{server.base_url}/api/project-credits/{uuid}/",
        "value": "300.00000",
        "project": f"{server.base_url}/api/projects/{project['uuid']}/",
        "project_name": "Data Lake",
        "project_uuid": project["uuid"],
        "project_slug": "data-lake",
        "customer_name": org["name"],
        "customer_slug": org["slug"],
        "customer_uuid": org["uuid"],
        "customer_credit": "1000.00000",
        "allocated_customer_credit": "300.00000",
        "consumption_last_month": None,  # nothing posted last month: upstream's "no invoice"
        "creditable_cost_this_month": None,
        "spendable_value": "300.00000",
        "is_limited_by_organization_credit": False,
        "offerings": [{"uuid": vm["uuid"], "type": "OpenStack.Instance", "name": vm["name"],
                       "url": f"{server.base_url}/api/marketplace-public-offerings/{vm['uuid']}/"}],
        "end_date": end.isoformat(),
        "expected_consumption": "80.00000",
        "minimal_consumption": body["minimal_consumption"],
        "minimal_consumption_logic": "fixed",
        "grace_coefficient": "25",
        "apply_as_minimal_consumption": True,
        "mark_unused_credit_as_spent_on_project_termination": True,
        "low_balance_thresholds": [], "runway_months": None,  # ours, after upstream's
    }
    # a raw Decimal upstream ((100 - 25) / 100 * 80): any scale, same number
    assert Decimal(body["minimal_consumption"]) == Decimal(60)

    created = response.parsed
    assert created is not None and created.uuid == UUID(uuid)
    assert created.end_date == end
    assert created.minimal_consumption_logic is MinimalConsumptionLogicEnum.FIXED
    assert [o.uuid.hex for o in created.offerings] == [vm["uuid"]]
    fetched = project_credits_retrieve.sync(UUID(uuid), client=staff_api)
    assert fetched.to_dict() == created.to_dict()
    # hex with hyphens resolves too, like Waldur's StringUUID
    hyphenated = server.http("staff").get(f"/api/project-credits/{UUID(uuid)}/")
    assert hyphenated.status_code == 200 and hyphenated.json() == body


@pytest.fixture(scope="module")
def three(staff: Staff) -> dict[str, Any]:
    """Alpha 50, Beta 300, Gamma 120 in one organisation, created in that order."""
    org = staff.customer("Umbrella")
    staff.customer_credit(org, "1000")
    credits = {}
    for name, value, expected, months in (("Alpha", "50", "5", 2), ("Beta", "300", "1", 4),
                                          ("Gamma", "120", "30", 3)):
        project = staff.project(org, f"{name} Lab")
        credits[name] = staff.project_credit(project, value, expected_consumption=expected,
                                             end_date=_months_ahead(months).isoformat())
    return {"org": org, **credits}


def _names(rows: list[Any]) -> list[str]:
    return [row.project_name.split()[0] for row in rows]


def test_list_filters(staff_api: AuthenticatedClient, three: dict[str, Any]) -> None:
    org = three["org"]
    org_uuid = UUID(org["uuid"])
    listed = project_credits_list.sync(client=staff_api, customer_uuid=org_uuid)
    assert _names(listed) == ["Alpha", "Beta", "Gamma"]  # default: creation order
    assert [row.value for row in listed] == ["50.00000", "300.00000", "120.00000"]
    assert {row.allocated_customer_credit for row in listed} == {"470.00000"}
    assert {row.customer_credit for row in listed} == {"1000.00000"}

    by_name = project_credits_list.sync(client=staff_api, customer_uuid=org_uuid,
                                        project_name="AMM")  # icontains
    assert _names(by_name) == ["Gamma"]
    beta = three["Beta"]
    by_project = project_credits_list.sync(client=staff_api,
                                           project_uuid=UUID(beta["project_uuid"]))
    assert [row.uuid.hex for row in by_project] == [beta["uuid"]]
    assert _names(project_credits_list.sync(client=staff_api,
                                            customer_name=org["name"].upper())) == [
        "Alpha", "Beta", "Gamma"]
    assert _names(project_credits_list.sync(client=staff_api,
                                            customer_slug=org["slug"])) == [
        "Alpha", "Beta", "Gamma"]
    assert project_credits_list.sync(client=staff_api, customer_slug=org["slug"][:-1]) == []
    assert _names(project_credits_list.sync(client=staff_api, customer_uuid=org_uuid,
                                            query="lpha")) == ["Alpha"]
    assert _names(project_credits_list.sync(client=staff_api,
                                            query=org["name"])) == [
        "Alpha", "Beta", "Gamma"]


def test_count_is_head_with_x_result_count(staff_api: AuthenticatedClient,
                                           three: dict[str, Any]) -> None:
    org_uuid = UUID(three["org"]["uuid"])
    response = project_credits_count.sync_detailed(client=staff_api, customer_uuid=org_uuid)
    assert response.status_code == 200 and response.content == b""
    assert response.parsed == 3
    assert project_credits_count.sync(client=staff_api, customer_uuid=org_uuid,
                                      project_name="beta") == 1
    assert project_credits_count.sync(client=staff_api, customer_uuid=org_uuid,
                                      project_name="nothing like it") == 0


@pytest.mark.parametrize(("order", "expected"), [
    ([ProjectCreditOEnum.VALUE], ["Alpha", "Gamma", "Beta"]),
    ([ProjectCreditOEnum.VALUE_3], ["Beta", "Gamma", "Alpha"]),
    ([ProjectCreditOEnum.PROJECT_NAME], ["Alpha", "Beta", "Gamma"]),
    ([ProjectCreditOEnum.VALUE_2], ["Gamma", "Beta", "Alpha"]),
    ([ProjectCreditOEnum.END_DATE], ["Alpha", "Gamma", "Beta"]),
    ([ProjectCreditOEnum.VALUE_0], ["Beta", "Gamma", "Alpha"]),
    ([ProjectCreditOEnum.EXPECTED_CONSUMPTION], ["Beta", "Alpha", "Gamma"]),
    ([ProjectCreditOEnum.VALUE_1], ["Gamma", "Alpha", "Beta"]),
    # the client repeats `o`; like django-filter, only the last one applies
    ([ProjectCreditOEnum.VALUE, ProjectCreditOEnum.VALUE_2], ["Gamma", "Beta", "Alpha"]),
])
def test_ordering(staff_api: AuthenticatedClient, three: dict[str, Any],
                  order: list[ProjectCreditOEnum], expected: list[str]) -> None:
    rows = project_credits_list.sync(client=staff_api, customer_uuid=UUID(three["org"]["uuid"]),
                                     o=order)
    assert _names(rows) == expected


def test_bad_filter_values_are_drf_errors(server: LedgerServer) -> None:
    http = server.http("staff")
    bad_order = http.get("/api/project-credits/", params={"o": "-foo"})
    assert bad_order.status_code == 400
    assert bad_order.json() == {"o": [
        "Select a valid choice. -foo is not one of the available choices."]}
    bad_uuid = http.get("/api/project-credits/", params={"customer_uuid": "nope"})
    assert bad_uuid.status_code == 400
    assert bad_uuid.json() == {"customer_uuid": ["Enter a valid UUID."]}


def test_update_and_partial_update(staff: Staff, staff_api: AuthenticatedClient) -> None:
    org = staff.customer("Hooli")
    first = staff.project(org, "Search")
    second = staff.project(org, "Mail")
    cc = staff.customer_credit(org, "1000")
    credit = staff.project_credit(first, "300")
    uuid = UUID(credit["uuid"])
    end = _months_ahead(2)

    put = project_credits_update.sync_detailed(uuid, client=staff_api, body=ProjectCreditRequest(
        project=first["url"], value="250", expected_consumption="20", end_date=end,
        minimal_consumption_logic=MinimalConsumptionLogicEnum.LINEAR, grace_coefficient="-5",
        apply_as_minimal_consumption=False))
    assert put.status_code == 200
    updated = put.parsed
    assert updated is not None
    assert (updated.value, updated.expected_consumption, updated.end_date) == (
        "250.00000", "20.00000", end)
    assert updated.minimal_consumption_logic is MinimalConsumptionLogicEnum.LINEAR
    assert updated.grace_coefficient == "-5"
    assert updated.apply_as_minimal_consumption is False
    assert Decimal(str(updated.minimal_consumption)) == 0  # no floor when not applied
    assert updated.allocated_customer_credit == "250.00000"
    # PUT leaves fields it does not send alone
    assert updated.mark_unused_credit_as_spent_on_project_termination is False

    patched = project_credits_partial_update.sync(
        uuid, client=staff_api, body=PatchedProjectCreditRequest(value="275.5"))
    assert patched.value == "275.50000"
    assert (patched.expected_consumption, patched.end_date, patched.grace_coefficient) == (
        "20.00000", end, "-5")
    assert patched.spendable_value == "275.50000"

    # `project` is writable: the credit moves within the organisation
    moved = project_credits_partial_update.sync(
        uuid, client=staff_api,
        body=PatchedProjectCreditRequest(project=second["url"], end_date=None))
    assert (moved.project, moved.project_name, moved.project_uuid.hex) == (
        second["url"], "Mail", second["uuid"])
    assert moved.end_date is None and not isinstance(moved.end_date, Unset)
    projects = staff.http.get("/api/projects/", params={"customer_uuid": org["uuid"]}).json()
    assert {p["name"]: p["project_credit"] for p in projects} == {
        "Search": None, "Mail": "275.50000"}

    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_partial_update.sync(uuid, client=staff_api,
                                            body=PatchedProjectCreditRequest(end_date=date(
                                                end.year, end.month, 15)))
    assert _error(raised) == (400, {"end_date": "End date must be the first day of the month."})
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_partial_update.sync(uuid, client=staff_api,
                                            body=PatchedProjectCreditRequest(value="1000.01"))
    assert _error(raised) == (400, [
        "The sum of project credits cannot exceed the credit for organization."])
    # nothing of the refused writes stuck
    again = project_credits_retrieve.sync(uuid, client=staff_api)
    assert (again.value, again.end_date) == ("275.50000", None)
    org_credit = customer_credits_retrieve.sync(UUID(cc["uuid"]), client=staff_api)
    assert (org_credit.value, org_credit.allocated_to_projects) == ("1000.00000", "275.50000")


def test_destroy_returns_the_allocation_to_the_pool(
        staff: Staff, staff_api: AuthenticatedClient) -> None:
    org = staff.customer("Stark")
    project = staff.project(org, "Armour")
    cc = staff.customer_credit(org, "500")
    credit = staff.project_credit(project, "400")
    uuid = UUID(credit["uuid"])

    deleted = project_credits_destroy.sync_detailed(uuid, client=staff_api)
    assert (deleted.status_code, deleted.content, deleted.parsed) == (204, b"", None)
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_retrieve.sync(uuid, client=staff_api)
    assert _error(raised) == (404, NO_PROJECT_CREDIT)
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_destroy.sync_detailed(uuid, client=staff_api)
    assert _error(raised) == (404, NO_PROJECT_CREDIT)
    assert project_credits_count.sync(client=staff_api, customer_uuid=UUID(org["uuid"])) == 0
    org_credit = customer_credits_retrieve.sync(UUID(cc["uuid"]), client=staff_api)
    assert (org_credit.value, org_credit.allocated_to_projects) == ("500.00000", "0.00000")

    # the project is free again and the whole pool can be allocated
    again = project_credits_create.sync(client=staff_api, body=ProjectCreditRequest(
        project=project["url"], value="500"))
    assert again.uuid != uuid and again.value == "500.00000"
    assert money(again.allocated_customer_credit) == Decimal(500)


def test_create_refusals(server: LedgerServer, staff: Staff,
                         staff_api: AuthenticatedClient) -> None:
    org = staff.customer("Wayne")
    taken = staff.project(org, "Cave")
    free = staff.project(org, "Manor")
    staff.customer_credit(org, "100")
    staff.project_credit(taken, "60")
    bare_org = staff.customer("No Credit")
    bare_project = staff.project(bare_org, "Lonely")

    def refused(body: ProjectCreditRequest) -> tuple[int, Any]:
        with pytest.raises(UnexpectedStatus) as raised:
            project_credits_create.sync(client=staff_api, body=body)
        return _error(raised)

    assert refused(ProjectCreditRequest(project=taken["url"], value="1")) == (
        400, {"project": ["project credit with this project already exists."]})
    # the intended rule (Σ allocations ≤ organisation value), not upstream's precedence bug
    assert refused(ProjectCreditRequest(project=free["url"], value="40.00001")) == (
        400, ["The sum of project credits cannot exceed the credit for organization."])
    assert refused(ProjectCreditRequest(project=bare_project["url"], value="1")) == (
        400, ["Customer credit does not exist."])
    assert refused(ProjectCreditRequest(project=free["url"], value="-1")) == (
        400, {"value": ["Ensure this value is greater than or equal to 0."]})
    assert refused(ProjectCreditRequest(project=free["url"], value="1.123456")) == (
        400, {"value": ["Ensure that there are no more than 5 decimal places."]})
    assert refused(ProjectCreditRequest(project=f"{server.base_url}/api/nothing/")) == (
        400, {"project": ["Invalid hyperlink - No URL match."]})
    assert refused(ProjectCreditRequest(
        project=f"{server.base_url}/api/projects/{'0' * 32}/")) == (
        400, {"project": ["Invalid hyperlink - Object does not exist."]})
    missing = server.http("staff").post("/api/project-credits/", json={"value": "1"})
    assert (missing.status_code, missing.json()) == (
        400, {"project": ["This field is required."]})

    # exactly the remainder fits
    fits = project_credits_create.sync(client=staff_api, body=ProjectCreditRequest(
        project=free["url"], value="40"))
    assert fits.allocated_customer_credit == "100.00000"


def test_the_client_parses_credits_with_thresholds_and_keeps_them_as_extras(
        server: LedgerServer, staff: Staff, staff_api: AuthenticatedClient) -> None:
    """Ours after upstream's fields: Waldur's client parses the credit and keeps them."""
    org = staff.customer("Thresholds Inc")
    project = staff.project(org, "Runway")
    staff.customer_credit(org, "1000")
    made = staff.project_credit(project, "200", low_balance_thresholds=["50%", "0"])
    fetched = project_credits_retrieve.sync(UUID(made["uuid"]), client=staff_api)
    assert fetched is not None and fetched.value == "200.00000"
    assert fetched.additional_properties == {"low_balance_thresholds": ["50%", "0"],
                                             "runway_months": None}
    patched = project_credits_partial_update.sync(
        UUID(made["uuid"]), client=staff_api, body=PatchedProjectCreditRequest(value="150"))
    assert patched is not None
    assert patched.additional_properties["low_balance_thresholds"] == ["50%", "0"]
