"""/api/customer-credits/ through waldur_api_client.api.customer_credits.*, and consumption."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.customer_credits import (
    customer_credits_consumptions_list,
    customer_credits_count,
    customer_credits_create,
    customer_credits_destroy,
    customer_credits_list,
    customer_credits_partial_update,
    customer_credits_retrieve,
    customer_credits_update,
)
from waldur_api_client.api.project_credits import project_credits_list, project_credits_retrieve
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models.create_customer_credit_request import CreateCustomerCreditRequest
from waldur_api_client.models.customer_credit_o_enum import CustomerCreditOEnum
from waldur_api_client.models.patched_create_customer_credit_request import (
    PatchedCreateCustomerCreditRequest,
)

from tests.conformance.conftest import (
    HEX32,
    NO_PROJECT_CREDIT,
    LedgerServer,
    Staff,
    last_month,
    this_month,
)
from tests.support import CUSTOMER_CREDIT_FIELDS


def _error(raised: pytest.ExceptionInfo[UnexpectedStatus]) -> tuple[int, Any]:
    return raised.value.status_code, json.loads(raised.value.content)


def test_customer_credit_lifecycle(server: LedgerServer, staff: Staff,
                                   staff_api: AuthenticatedClient) -> None:
    vm = staff.offering("VM")
    storage = staff.offering("Storage")
    org = staff.customer("Cyberdyne")
    project = staff.project(org, "Skynet")
    created = customer_credits_create.sync_detailed(
        client=staff_api, body=CreateCustomerCreditRequest(
            customer=org["url"], value="1000", offerings=[vm["url"]],
            expected_consumption="100", grace_coefficient="10"))
    assert created.status_code == 201
    body = json.loads(created.content)
    assert list(body) == CUSTOMER_CREDIT_FIELDS
    uuid = body["uuid"]
    assert HEX32.match(uuid)
    provider_vm = f"{server.base_url}/api/marketplace-provider-offerings/{vm['uuid']}/"
    assert body == {
        "uuid": uuid, "url": f"{server.base_url}/api/customer-credits/{uuid}/",
        "value": "1000.00000", "customer": f"{server.base_url}/api/customers/{org['uuid']}/",
        "customer_name": org["name"], "customer_uuid": org["uuid"],
        "customer_slug": org["slug"],
        "offerings": [provider_vm],  # CreateCustomerCredit: links, not nested objects
        "end_date": None, "expected_consumption": "100.00000",
        "minimal_consumption": body["minimal_consumption"], "minimal_consumption_logic": "fixed",
        "grace_coefficient": "10", "apply_as_minimal_consumption": True,
        "allocated_to_projects": "0.00000", "consumption_last_month": None,
        "withdrawable_balance": "0.00000", "protect_allocations": False,
        "low_balance_thresholds": [], "runway_months": None,  # ours, after upstream's
    }
    assert Decimal(body["minimal_consumption"]) == Decimal(90)
    credit_uuid = UUID(uuid)

    fetched = customer_credits_retrieve.sync(credit_uuid, client=staff_api)
    assert [(o.uuid.hex, o.name, o.type_, o.url) for o in fetched.offerings] == [
        (vm["uuid"], vm["name"], "OpenStack.Instance", provider_vm)]
    assert (fetched.value, fetched.customer_uuid.hex) == ("1000.00000", org["uuid"])

    listed = customer_credits_list.sync(client=staff_api, customer_uuid=UUID(org["uuid"]))
    assert [row.uuid for row in listed] == [credit_uuid]
    assert customer_credits_count.sync(client=staff_api, customer_uuid=UUID(org["uuid"])) == 1
    assert customer_credits_count.sync(client=staff_api, customer_slug=org["slug"]) == 1
    assert [row.uuid for row in customer_credits_list.sync(
        client=staff_api, customer_name=org["name"].lower())] == [credit_uuid]

    with pytest.raises(UnexpectedStatus) as raised:
        customer_credits_create.sync(client=staff_api, body=CreateCustomerCreditRequest(
            customer=org["url"], value="5"))
    assert _error(raised) == (400, {"customer": [
        "customer credit with this customer already exists."]})

    updated = customer_credits_update.sync(credit_uuid, client=staff_api,
                                           body=CreateCustomerCreditRequest(
        customer=org["url"], value="1500", offerings=[vm["url"], storage["url"]]))
    assert updated.value == "1500.00000"
    assert updated.offerings == [
        provider_vm, f"{server.base_url}/api/marketplace-provider-offerings/{storage['uuid']}/"]
    assert updated.expected_consumption == "100.00000"  # not sent, kept

    with pytest.raises(UnexpectedStatus) as raised:
        customer_credits_partial_update.sync(credit_uuid, client=staff_api,
                                             body=PatchedCreateCustomerCreditRequest(
                                                 expected_consumption="1500"))
    assert _error(raised) == (400, {"non_field_errors": [
        "Expected consumption must be smaller than the credit."]})
    patched = customer_credits_partial_update.sync(
        credit_uuid, client=staff_api,
        body=PatchedCreateCustomerCreditRequest(value="1200", offerings=[]))
    assert (patched.value, patched.offerings, patched.expected_consumption) == (
        "1200.00000", [], "100.00000")

    # deleting the organisation credit takes its project credits with it
    project_credit = staff.project_credit(project, "200")
    assert customer_credits_retrieve.sync(
        credit_uuid, client=staff_api).allocated_to_projects == "200.00000"
    deleted = customer_credits_destroy.sync_detailed(credit_uuid, client=staff_api)
    assert (deleted.status_code, deleted.content) == (204, b"")
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_retrieve.sync(UUID(project_credit["uuid"]), client=staff_api)
    assert _error(raised) == (404, NO_PROJECT_CREDIT)
    with pytest.raises(UnexpectedStatus) as raised:
        customer_credits_retrieve.sync(credit_uuid, client=staff_api)
    assert _error(raised) == (404, {"detail": "No CustomerCredit matches the given query."})
    assert customer_credits_count.sync(client=staff_api, customer_uuid=UUID(org["uuid"])) == 0


def test_customer_credit_ordering(staff: Staff, staff_api: AuthenticatedClient) -> None:
    tag = staff.customer("Tag")["name"].split()[1]  # a fresh token shared by three names
    for name, value in (("Bravo", "30"), ("Alpha", "20"), ("Charlie", "10")):
        org = staff.post("/api/customers/", {"name": f"{name} {tag}"})
        staff.customer_credit(org, value)

    def names(order: list[CustomerCreditOEnum]) -> list[str]:
        rows = customer_credits_list.sync(client=staff_api, query=tag, o=order)
        return [row.customer_name.split()[0] for row in rows]

    assert names([]) == ["Bravo", "Alpha", "Charlie"]  # creation order
    assert names([CustomerCreditOEnum.CUSTOMER_NAME]) == ["Alpha", "Bravo", "Charlie"]
    assert names([CustomerCreditOEnum.VALUE]) == ["Charlie", "Alpha", "Bravo"]
    assert names([CustomerCreditOEnum.VALUE_3]) == ["Bravo", "Alpha", "Charlie"]


def _first_day(period: str) -> date:
    year, month = period.split("-")
    return date(int(year), int(month), 1)


def test_consumption_worked_example_a(server: LedgerServer, staff: Staff,
                                      staff_api: AuthenticatedClient) -> None:
    """Reference §4.13-A for last month, then the month close (no floor for B, which this
    server recorded this month)."""
    vm = staff.offering("VM")
    org = staff.customer("Worked")
    a, b, c = (staff.project(org, name) for name in ("A", "B", "C"))
    cc = staff.customer_credit(org, "1000")
    pa = staff.project_credit(a, "300")
    pb = staff.project_credit(b, "100", expected_consumption="80", grace_coefficient="25")
    period = last_month()
    items = [
        {"id": f"{org['uuid']}-a-120", "project": a["url"], "offering": vm["url"],
         "amount": "120", "period": period},
        {"id": f"{org['uuid']}-a-250", "project": a["url"], "offering": None, "amount": "250",
         "period": period},
        {"id": f"{org['uuid']}-b-30", "project": b["url"], "offering": vm["url"], "amount": "30",
         "period": period},
        {"id": f"{org['uuid']}-c-200", "project": c["url"], "offering": None, "amount": "200",
         "period": period},
    ]
    posted = staff.consume(items)

    def result(item: dict[str, Any], project: dict[str, Any], from_project: str,
               from_customer: str, uncovered: str) -> dict[str, Any]:
        return {"id": item["id"], "project_uuid": project["uuid"],
                "amount": f"{Decimal(item['amount']):.5f}",
                "drawn_from_project_credit": from_project,
                "drawn_from_customer_credit": from_customer, "uncovered": uncovered,
                "replayed": False}

    assert posted == [  # answered in request order, applied cheapest first
        result(items[0], a, "120.00000", "0.00000", "0.00000"),
        result(items[1], a, "180.00000", "0.00000", "70.00000"),
        result(items[2], b, "30.00000", "0.00000", "0.00000"),
        result(items[3], c, "0.00000", "200.00000", "0.00000"),
    ]
    # the same ids again: the original answers, nothing drawn twice
    replay = staff.consume(items, status=200)
    assert [row["replayed"] for row in replay] == [True] * 4
    assert [row["drawn_from_project_credit"] for row in replay] == [
        row["drawn_from_project_credit"] for row in posted]

    def state() -> dict[str, Any]:
        rows = project_credits_list.sync(client=staff_api, customer_uuid=UUID(org["uuid"]))
        return {row.project_name: row for row in rows}

    credits = state()
    assert (credits["A"].value, credits["B"].value) == ("0.00000", "70.00000")
    assert {row.customer_credit for row in credits.values()} == {"470.00000"}
    assert {row.allocated_customer_credit for row in credits.values()} == {"70.00000"}
    # drawn last month; nothing posted this month yet, so no "this month" figure
    assert (credits["A"].consumption_last_month, credits["B"].consumption_last_month) == (
        "300.00000", "30.00000")
    assert {row.creditable_cost_this_month for row in credits.values()} == {None}
    assert (credits["B"].spendable_value, credits["B"].is_limited_by_organization_credit) == (
        "70.00000", False)

    org_credit = customer_credits_retrieve.sync(UUID(cc["uuid"]), client=staff_api)
    assert (org_credit.value, org_credit.consumption_last_month,
            org_credit.allocated_to_projects) == ("470.00000", "530.00000", "70.00000")
    history = customer_credits_consumptions_list.sync(UUID(cc["uuid"]), client=staff_api)
    assert [(row.date, row.price) for row in history] == [(_first_day(period), "530.00")]

    # this month: A's allocation is used up, the cost is eligible but uncovered
    now = staff.consume([{"id": f"{org['uuid']}-a-now", "project": a["url"], "offering": None,
                          "amount": "40", "period": this_month()}])
    assert now[0]["uncovered"] == "40.00000"
    credits = state()
    assert (credits["A"].creditable_cost_this_month, credits["B"].creditable_cost_this_month) == (
        "40.00000", "0.00000")
    history = customer_credits_consumptions_list.sync(UUID(cc["uuid"]), client=staff_api)
    assert [(row.date, row.price) for row in history] == [(_first_day(period), "530.00")]

    # closing last month: upstream's example charges B the 30 it fell short of its 60 floor,
    # but this server recorded B this month, so it pays no floor for last month (a credit
    # pays floors only for months it existed in; tests/test_settlement_api.py runs the
    # example with B recorded in the month it settles)
    http = server.http("staff")
    closed = http.post(f"/api/billing-periods/{period}/close/")
    assert closed.status_code == 200, closed.text
    assert closed.json()["period"] == period and closed.json()["state"] == "closed"
    assert closed.json()["already_closed"] is False
    again = http.post(f"/api/billing-periods/{period}/close/")
    assert again.json()["already_closed"] is True
    b_after = project_credits_retrieve.sync(UUID(pb["uuid"]), client=staff_api)
    assert (b_after.value, b_after.customer_credit, b_after.allocated_customer_credit) == (
        "70.00000", "470.00000", "70.00000")
    assert project_credits_retrieve.sync(UUID(pa["uuid"]), client=staff_api).value == "0.00000"
    late = http.post("/api/consumptions/", json=[{
        "id": f"{org['uuid']}-late", "project": c["url"], "amount": "1", "period": period}])
    assert (late.status_code, late.json()) == (
        409, {"detail": f"Billing period {period} is closed."})


def test_consumption_is_staff_only(server: LedgerServer, world: Any) -> None:
    item = [{"id": "x", "project": world.project["url"], "amount": "1", "period": this_month()}]
    denied = server.http("owner").post("/api/consumptions/", json=item)
    assert (denied.status_code, denied.json()) == (
        403, {"detail": "You do not have permission to perform this action."})
