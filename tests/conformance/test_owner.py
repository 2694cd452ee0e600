"""A customer owner manages the project credits of its own organisation with the real client."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.customer_credits import (
    customer_credits_consumptions_list,
    customer_credits_count,
    customer_credits_create,
    customer_credits_list,
    customer_credits_partial_update,
)
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
from waldur_api_client.models.create_customer_credit_request import CreateCustomerCreditRequest
from waldur_api_client.models.patched_create_customer_credit_request import (
    PatchedCreateCustomerCreditRequest,
)
from waldur_api_client.models.patched_project_credit_request import PatchedProjectCreditRequest
from waldur_api_client.models.project_credit_o_enum import ProjectCreditOEnum
from waldur_api_client.models.project_credit_request import ProjectCreditRequest

from tests.conformance.conftest import (
    NO_PROJECT_CREDIT,
    PERMISSION_DENIED,
    LedgerServer,
    Staff,
    World,
    money,
    this_month,
)


def _error(raised: pytest.ExceptionInfo[UnexpectedStatus]) -> tuple[int, Any]:
    return raised.value.status_code, json.loads(raised.value.content)


def test_owner_creates_edits_and_deletes_its_project_credits(
        server: LedgerServer, staff: Staff, world: World,
        owner_api: AuthenticatedClient) -> None:
    project = staff.project(world.org, "Owner Sandbox")
    spare = staff.project(world.org, "Owner Spare")

    created = project_credits_create.sync_detailed(client=owner_api, body=ProjectCreditRequest(
        project=project["url"], value="300", expected_consumption="12.5"))
    assert created.status_code == 201
    credit = created.parsed
    assert credit is not None
    assert credit.url == f"{server.base_url}/api/project-credits/{credit.uuid.hex}/"
    assert (credit.value, credit.expected_consumption, credit.project_name) == (
        "300.00000", "12.50000", "Owner Sandbox")
    assert credit.customer_uuid.hex == world.org["uuid"]
    # an owner sees the organisation totals
    assert credit.customer_credit == "100000.00000"
    everything = project_credits_list.sync_all(client=owner_api,
                                               customer_uuid=UUID(world.org["uuid"]))
    allocated = sum(money(row.value) for row in everything)
    assert credit.uuid in {row.uuid for row in everything}
    assert {money(row.allocated_customer_credit) for row in everything} == {allocated}
    assert credit.offerings == []

    put = project_credits_update.sync(credit.uuid, client=owner_api, body=ProjectCreditRequest(
        project=project["url"], value="320", grace_coefficient="50",
        mark_unused_credit_as_spent_on_project_termination=True))
    assert (put.value, put.grace_coefficient, put.expected_consumption) == (
        "320.00000", "50", "12.50000")
    assert put.mark_unused_credit_as_spent_on_project_termination is True
    patched = project_credits_partial_update.sync(
        credit.uuid, client=owner_api, body=PatchedProjectCreditRequest(value="310"))
    assert patched.value == "310.00000" and patched.grace_coefficient == "50"
    moved = project_credits_partial_update.sync(
        credit.uuid, client=owner_api, body=PatchedProjectCreditRequest(project=spare["url"]))
    assert moved.project_name == "Owner Spare"
    assert project_credits_retrieve.sync(credit.uuid, client=owner_api).to_dict() == (
        moved.to_dict())

    assert project_credits_count.sync(client=owner_api, project_name="owner spare") == 1
    named = project_credits_list.sync(client=owner_api, project_name="Owner S",
                                      o=[ProjectCreditOEnum.VALUE_3])
    assert [row.uuid for row in named] == [credit.uuid]

    deleted = project_credits_destroy.sync_detailed(credit.uuid, client=owner_api)
    assert deleted.status_code == 204
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_retrieve.sync(credit.uuid, client=owner_api)
    assert _error(raised) == (404, NO_PROJECT_CREDIT)


def test_owner_sees_only_its_organisation(world: World, owner_api: AuthenticatedClient,
                                         staff_api: AuthenticatedClient) -> None:
    mine = project_credits_list.sync_all(client=owner_api)
    assert mine and {row.customer_uuid.hex for row in mine} == {world.org["uuid"]}
    assert world.project_credit["uuid"] in {row.uuid.hex for row in mine}
    assert project_credits_count.sync(client=owner_api) == len(mine)
    assert project_credits_count.sync(client=staff_api) > len(mine)
    assert project_credits_list.sync(client=owner_api,
                                     customer_uuid=UUID(world.foreign_org["uuid"])) == []
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_retrieve.sync(UUID(world.foreign_credit["uuid"]), client=owner_api)
    assert _error(raised) == (404, NO_PROJECT_CREDIT)
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_partial_update.sync(UUID(world.foreign_credit["uuid"]), client=owner_api,
                                            body=PatchedProjectCreditRequest(value="1"))
    assert _error(raised) == (404, NO_PROJECT_CREDIT)


def test_owner_cannot_create_in_another_organisation(
        world: World, owner_api: AuthenticatedClient, staff: Staff) -> None:
    foreign = staff.project(world.foreign_org, "Not Yours")
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_create.sync(client=owner_api, body=ProjectCreditRequest(
            project=foreign["url"], value="1"))
    assert _error(raised) == (403, PERMISSION_DENIED)
    # and cannot move its own credit there either
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_partial_update.sync(UUID(world.project_credit["uuid"]), client=owner_api,
                                            body=PatchedProjectCreditRequest(
                                                project=foreign["url"]))
    assert _error(raised) == (403, PERMISSION_DENIED)


def test_owner_reads_but_does_not_write_its_customer_credit(
        world: World, staff: Staff, owner_api: AuthenticatedClient) -> None:
    listed = customer_credits_list.sync(client=owner_api)
    assert [row.uuid.hex for row in listed] == [world.customer_credit["uuid"]]
    assert customer_credits_count.sync(client=owner_api) == 1
    credit_uuid = UUID(world.customer_credit["uuid"])
    before = customer_credits_consumptions_list.sync(credit_uuid, client=owner_api)
    assert before == []
    # staff posts this month's usage of the member's project: it draws the project credit
    # and, by the same amount, the organisation credit the owner reads
    drawn = staff.consume([{"id": f"owner-{world.project['uuid']}", "offering": None,
                            "project": world.project["url"], "amount": "12.345",
                            "period": this_month()}])
    assert drawn[0]["drawn_from_project_credit"] == "12.34500"
    history = customer_credits_consumptions_list.sync(credit_uuid, client=owner_api)
    assert [(row.date.strftime("%Y-%m"), row.price) for row in history] == [
        (this_month(), "12.35")]
    assert money(customer_credits_list.sync(client=owner_api)[0].value) == (
        money(listed[0].value) - Decimal("12.345"))
    credit = project_credits_retrieve.sync(UUID(world.project_credit["uuid"]), client=owner_api)
    assert credit.creditable_cost_this_month == "12.34500"
    assert money(credit.value) == money(world.project_credit["value"]) - Decimal("12.345")
    with pytest.raises(UnexpectedStatus) as raised:
        customer_credits_create.sync(client=owner_api, body=CreateCustomerCreditRequest(
            customer=world.foreign_org["url"], value="1"))
    assert _error(raised) == (403, PERMISSION_DENIED)
    with pytest.raises(UnexpectedStatus) as raised:
        customer_credits_partial_update.sync(
            UUID(world.customer_credit["uuid"]), client=owner_api,
            body=PatchedCreateCustomerCreditRequest(value="1000000"))
    assert _error(raised) == (403, PERMISSION_DENIED)
