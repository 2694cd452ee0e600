"""Who sees what (reference §2.3, §2.7), with plain httpx where the 8.1.3 client cannot parse.

The client's `ProjectCredit.from_dict` pops `customer_credit`, `allocated_customer_credit`
and `offerings` unconditionally, so it raises KeyError on the stripped objects that project
members and non-owner customer roles receive (reference §4.14-9) — upstream behaves the same.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from waldur_api_client.api.project_credits import project_credits_list, project_credits_retrieve

from tests.conformance.conftest import (
    NO_PROJECT_CREDIT,
    NOT_AUTHENTICATED,
    PERMISSION_DENIED,
    LedgerServer,
    Staff,
    World,
    money,
)
from tests.support import ORGANIZATION_SCOPED_FIELDS, PROJECT_CREDIT_FIELDS

STRIPPED_FIELDS = [name for name in PROJECT_CREDIT_FIELDS
                   if name not in ORGANIZATION_SCOPED_FIELDS]


def _item(credit: dict[str, Any]) -> str:
    return f"/api/project-credits/{credit['uuid']}/"


def test_anonymous_requests_are_not_authenticated(server: LedgerServer, world: World) -> None:
    anonymous = server.http()
    for response in (
        anonymous.get("/api/project-credits/"),
        anonymous.get(_item(world.project_credit)),
        anonymous.post("/api/project-credits/", json={"project": world.project["url"]}),
        anonymous.patch(_item(world.project_credit), json={"value": "1"}),
        anonymous.delete(_item(world.project_credit)),
        anonymous.get("/api/customer-credits/"),
    ):
        assert response.status_code == 401, response.request
        assert response.json() == NOT_AUTHENTICATED
        assert response.headers["www-authenticate"] == "Token"
    head = anonymous.head("/api/project-credits/")
    assert head.status_code == 401 and head.content == b""


def test_a_wrong_token_is_refused(server: LedgerServer) -> None:
    response = server.http().get("/api/project-credits/",
                                 headers={"Authorization": "Token " + "0" * 40})
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid token."})


def test_project_member_sees_its_project_credit_without_organisation_totals(
        server: LedgerServer, staff: Staff, world: World) -> None:
    member = server.http("member")
    listed = member.get("/api/project-credits/")
    assert listed.status_code == 200
    assert listed.headers["x-result-count"] == "1"
    (row,) = listed.json()
    assert list(row) == STRIPPED_FIELDS  # keys absent, not null, order otherwise kept
    # everything else is exactly what staff sees
    full = server.http("staff").get(_item(world.project_credit)).json()
    assert row == {name: value for name, value in full.items()
                   if name not in ORGANIZATION_SCOPED_FIELDS}
    assert row["uuid"] == world.project_credit["uuid"]
    assert row["url"] == f"{server.base_url}/api/project-credits/{row['uuid']}/"
    assert row["project"] == f"{server.base_url}/api/projects/{world.project['uuid']}/"
    assert row["customer_uuid"] == world.org["uuid"]
    assert money(row["value"]) == money(row["spendable_value"]) > 0
    assert row["is_limited_by_organization_credit"] is False

    retrieved = member.get(_item(world.project_credit))
    assert retrieved.status_code == 200
    assert retrieved.json() == row
    assert member.head("/api/project-credits/").headers["x-result-count"] == "1"

    # read-only for project roles: visible, so 403 rather than 404
    fresh = staff.project(world.org, "Member Try")
    for response in (member.patch(_item(world.project_credit), json={"value": "1"}),
                     member.put(_item(world.project_credit),
                                json={"project": world.project["url"], "value": "1"}),
                     member.delete(_item(world.project_credit)),
                     member.post("/api/project-credits/",
                                 json={"project": fresh["url"], "value": "1"})):
        assert (response.status_code, response.json()) == (403, PERMISSION_DENIED)
    # upstream checks the `project` field itself (uniqueness) before the permission
    taken = member.post("/api/project-credits/",
                        json={"project": world.project["url"], "value": "1"})
    assert (taken.status_code, taken.json()) == (
        400, {"project": ["project credit with this project already exists."]})
    # organisation credits are for customer roles only
    customer_credits = member.get("/api/customer-credits/")
    assert (customer_credits.json(), customer_credits.headers["x-result-count"]) == ([], "0")
    # nothing changed
    assert member.get(_item(world.project_credit)).json()["value"] == row["value"]


def test_the_8_1_3_client_cannot_parse_a_members_view(server: LedgerServer,
                                                      world: World) -> None:
    member_api = server.client("member")
    with pytest.raises(KeyError, match="customer_credit"):
        project_credits_list.sync(client=member_api)
    with pytest.raises(KeyError, match="customer_credit"):
        project_credits_retrieve.sync(UUID(world.project_credit["uuid"]), client=member_api)


def test_non_owner_customer_role_reads_stripped_and_cannot_write(
        server: LedgerServer, staff: Staff, world: World) -> None:
    manager = server.http("manager")
    rows = manager.get("/api/project-credits/", params={"page_size": 300}).json()
    assert world.project_credit["uuid"] in {row["uuid"] for row in rows}
    assert {row["customer_uuid"] for row in rows} == {world.org["uuid"]}
    assert all(list(row) == STRIPPED_FIELDS for row in rows)
    # a customer role does see the organisation credit itself
    customer_credits = manager.get("/api/customer-credits/").json()
    assert [row["uuid"] for row in customer_credits] == [world.customer_credit["uuid"]]
    fresh = staff.project(world.org, "Manager Try")
    create = manager.post("/api/project-credits/", json={"project": fresh["url"], "value": "1"})
    assert (create.status_code, create.json()) == (403, PERMISSION_DENIED)
    patch = manager.patch(_item(world.project_credit), json={"value": "1"})
    assert (patch.status_code, patch.json()) == (403, PERMISSION_DENIED)


def test_global_support_reads_everything_and_writes_nothing(
        server: LedgerServer, staff: Staff, world: World) -> None:
    support_api = server.client("support")
    mine = project_credits_retrieve.sync(UUID(world.foreign_credit["uuid"]), client=support_api)
    assert (mine.value, mine.customer_credit, mine.allocated_customer_credit) == (
        "200.00000", "500.00000", "200.00000")
    listed = project_credits_list.sync(client=support_api,
                                       customer_uuid=UUID(world.org["uuid"]))
    assert world.project_credit["uuid"] in {row.uuid.hex for row in listed}
    support = server.http("support")
    fresh = staff.project(world.foreign_org, "Support Try")
    create = support.post("/api/project-credits/", json={"project": fresh["url"], "value": "1"})
    assert (create.status_code, create.json()) == (403, PERMISSION_DENIED)
    delete = support.delete(_item(world.foreign_credit))
    assert (delete.status_code, delete.json()) == (403, PERMISSION_DENIED)


def test_unrelated_user_sees_nothing(server: LedgerServer, staff: Staff, world: World) -> None:
    outsider = server.http("outsider")
    listed = outsider.get("/api/project-credits/")
    assert (listed.status_code, listed.json(), listed.headers["x-result-count"]) == (
        200, [], "0")
    assert listed.headers["link"] == (
        f'<{server.base_url}/api/project-credits/>; rel="first", '
        f'<{server.base_url}/api/project-credits/>; rel="last"')
    assert outsider.get("/api/customer-credits/").json() == []
    for response in (outsider.get(_item(world.project_credit)),
                     outsider.patch(_item(world.project_credit), json={"value": "1"}),
                     outsider.delete(_item(world.project_credit))):
        assert (response.status_code, response.json()) == (404, NO_PROJECT_CREDIT)
    fresh = staff.project(world.org, "Outsider Try")
    create = outsider.post("/api/project-credits/", json={"project": fresh["url"], "value": "1"})
    assert (create.status_code, create.json()) == (403, PERMISSION_DENIED)
    not_a_uuid = outsider.get("/api/project-credits/not-a-uuid/")
    assert (not_a_uuid.status_code, not_a_uuid.json()) == (404, NO_PROJECT_CREDIT)
