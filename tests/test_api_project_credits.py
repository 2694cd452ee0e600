"""/api/project-credits/ through Falcon's TestClient: shapes, errors, roles, lists."""

from __future__ import annotations

from typing import Any

import pytest

from api.server.wiring import Services
from tests.support import PROJECT_CREDIT_FIELDS, Directory, capture_statements


@pytest.fixture
def world(directory: Directory) -> dict[str, Any]:
    org = directory.customer("Org")
    other_org = directory.customer("Other")
    alpha = directory.project(org, "Alpha")
    beta = directory.project(org, "Beta")
    gamma = directory.project(org, "Gamma")
    foreign = directory.project(other_org, "Foreign")
    directory.customer_credit(org, "1000")
    owner = directory.user("owner")
    directory.grant("owner", "customer", org["uuid"], "owner")
    member = directory.user("member")
    directory.grant("member", "project", alpha["uuid"], "member")
    return {"org": org, "other": other_org, "alpha": alpha, "beta": beta, "gamma": gamma,
            "foreign": foreign, "owner": owner, "member": member,
            "manager": _with_role(directory, "manager", "customer", org["uuid"], "manager"),
            "stranger": directory.user("stranger"), "support": directory.user(
                "support", support=True)}


def _with_role(directory: Directory, name: str, scope: str, uuid: str, role: str) -> Any:
    headers = directory.user(name)
    directory.grant(name, scope, uuid, role)
    return headers


def test_created_credit_has_upstreams_fields_in_order(directory: Directory,
                                                      world: dict[str, Any]) -> None:
    created = directory.client.simulate_post("/api/project-credits/", headers=world["owner"],
                                             json={"project": world["alpha"]["url"],
                                                   "value": 300, "grace_coefficient": "25",
                                                   "expected_consumption": "80"})
    assert created.status_code == 201, created.text
    body = created.json
    assert list(body) == PROJECT_CREDIT_FIELDS
    assert body["value"] == "300.00000"
    assert body["project_uuid"] == world["alpha"]["uuid"]
    assert len(body["uuid"]) == 32
    assert body["url"] == f"http://falconframework.org/api/project-credits/{body['uuid']}/"
    assert (body["customer_credit"], body["allocated_customer_credit"]) == (
        "1000.00000", "300.00000")
    assert body["minimal_consumption"] == "60.0000000"
    assert body["grace_coefficient"] == "25"
    assert (body["consumption_last_month"], body["creditable_cost_this_month"]) == (None, None)
    assert (body["spendable_value"], body["is_limited_by_organization_credit"]) == (
        "300.00000", False)


@pytest.mark.parametrize(("body", "errors"), [
    ({}, {"project": ["This field is required."]}),
    ({"project": "http://x/api/customers/00000000000000000000000000000000/"},
     {"project": ["Invalid hyperlink - No URL match."]}),
    ({"project": "http://x/api/projects/00000000000000000000000000000000/"},
     {"project": ["Invalid hyperlink - Object does not exist."]}),
    ({"project": 5}, {"project": ["Incorrect type. Expected URL string, received int."]}),
    ({"project": None}, {"project": ["This field may not be null."]}),
])
def test_project_field_errors(directory: Directory, world: dict[str, Any], body: Any,
                              errors: Any) -> None:
    result = directory.client.simulate_post("/api/project-credits/", json=body,
                                            headers=directory.staff)
    assert (result.status_code, result.json) == (400, errors)


@pytest.mark.parametrize(("field", "raw", "message"), [
    ("value", "-1", "Ensure this value is greater than or equal to 0."),
    ("value", "1.000001", "Ensure that there are no more than 5 decimal places."),
    ("value", "123456789012", "Ensure that there are no more than 11 digits before the "
                              "decimal point."),
    ("value", "12345678901.123456", "Ensure that there are no more than 16 digits in total."),
    ("value", "abc", "A valid number is required."),
    ("value", "NaN", "A valid number is required."),
    ("grace_coefficient", "1.5", "Ensure that there are no more than 0 decimal places."),
    ("grace_coefficient", "1000", "Ensure that there are no more than 3 digits in total."),
    ("minimal_consumption_logic", "foo", '"foo" is not a valid choice.'),
    ("end_date", "2025-13-01",
     "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."),
    ("apply_as_minimal_consumption", "maybe", "Must be a valid boolean."),
])
def test_field_errors_match_drf(directory: Directory, world: dict[str, Any], field: str,
                                raw: str, message: str) -> None:
    result = directory.client.simulate_post(
        "/api/project-credits/", json={"project": world["alpha"]["url"], field: raw},
        headers=directory.staff)
    assert (result.status_code, result.json) == (400, {field: [message]})


def test_model_level_errors(directory: Directory, world: dict[str, Any]) -> None:
    post = directory.client.simulate_post
    staff = directory.staff
    not_first = post("/api/project-credits/", headers=staff,
                     json={"project": world["alpha"]["url"], "end_date": "2026-01-15"})
    assert (not_first.status_code, not_first.json) == (
        400, {"end_date": "End date must be the first day of the month."})
    too_much = post("/api/project-credits/", headers=staff,
                    json={"project": world["alpha"]["url"], "value": "1000.00001"})
    assert too_much.json == ["The sum of project credits cannot exceed the credit for "
                             "organization."]
    no_org = post("/api/project-credits/", headers=staff,
                  json={"project": world["foreign"]["url"], "value": "1"})
    assert (no_org.status_code, no_org.json) == (400, ["Customer credit does not exist."])
    directory.project_credit(world["alpha"], "10")
    duplicate = post("/api/project-credits/", headers=staff,
                     json={"project": world["alpha"]["url"]})
    assert duplicate.json == {"project": ["project credit with this project already exists."]}


def test_bad_bodies_are_clean_4xx(directory: Directory, world: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    malformed = client.simulate_post("/api/project-credits/", body="{oops",
                                     headers={**staff, "Content-Type": "application/json"})
    assert malformed.status_code == 400 and "JSON parse error" in malformed.json["detail"]
    listed = client.simulate_post("/api/project-credits/", json=[1], headers=staff)
    assert listed.json == {"non_field_errors": [
        "Invalid data. Expected a dictionary, but got list."]}
    wrong_type = client.simulate_post("/api/project-credits/", body="x=1",
                                      headers={**staff, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert client.simulate_get("/api/project-credits/nonsense/", headers=staff).status_code == 404
    missing = client.simulate_get("/api/project-credits/" + "0" * 32 + "/", headers=staff)
    assert missing.json == {"detail": "No ProjectCredit matches the given query."}


def test_roles(directory: Directory, world: dict[str, Any]) -> None:
    client = directory.client
    credit = directory.project_credit(world["alpha"], "100")
    path = f"/api/project-credits/{credit['uuid']}/"
    assert client.simulate_get(path).status_code == 401
    assert client.simulate_get(path, headers=world["stranger"]).status_code == 404
    assert client.simulate_get("/api/project-credits/", headers=world["stranger"]).json == []
    member_view = client.simulate_get(path, headers=world["member"]).json
    assert "customer_credit" not in member_view and "offerings" not in member_view
    assert member_view["spendable_value"] == "100.00000"
    manager_view = client.simulate_get(path, headers=world["manager"]).json
    assert "allocated_customer_credit" not in manager_view
    assert client.simulate_get(path, headers=world["support"]).json["customer_credit"] == (
        "1000.00000")
    for headers in (world["member"], world["manager"], world["support"]):
        assert client.simulate_patch(path, json={"value": "1"}, headers=headers
                                     ).status_code == 403
        assert client.simulate_delete(path, headers=headers).status_code == 403
        created = client.simulate_post("/api/project-credits/", headers=headers,
                                       json={"project": world["beta"]["url"], "value": "-5"})
        assert created.status_code == 403  # validate_project aborts despite the bad value
    forbidden = client.simulate_post("/api/project-credits/", headers=world["member"],
                                     json={"project": world["beta"]["url"]})
    assert forbidden.json == {"detail": "You do not have permission to perform this action."}
    patched = client.simulate_patch(path, json={"value": "120"}, headers=world["owner"])
    assert patched.json["value"] == "120.00000"
    assert client.simulate_delete(path, headers=world["owner"]).status_code == 204
    assert client.simulate_get(path, headers=world["owner"]).status_code == 404


def test_put_patch_and_move(directory: Directory, world: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    credit = directory.project_credit(world["alpha"], "100")
    path = f"/api/project-credits/{credit['uuid']}/"
    put = client.simulate_put(path, headers=staff, json={"value": "50"})
    assert put.json == {"project": ["This field is required."]}
    put = client.simulate_put(path, headers=staff, json={
        "project": world["beta"]["url"], "value": "50", "end_date": "2027-01-01",
        "minimal_consumption_logic": "linear", "apply_as_minimal_consumption": False})
    assert put.status_code == 200, put.text
    assert (put.json["project_name"], put.json["value"], put.json["end_date"],
            put.json["minimal_consumption"]) == ("Beta", "50.00000", "2027-01-01", "0")
    abroad = client.simulate_patch(path, headers=staff, json={"project": world["foreign"]["url"]})
    assert abroad.status_code == 400
    unchanged = client.simulate_get(path, headers=staff).json
    assert unchanged["project_name"] == "Beta"


def test_filters_ordering_and_pagination(directory: Directory, world: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    for project, value in ((world["alpha"], "300"), (world["beta"], "100"),
                           (world["gamma"], "200")):
        directory.project_credit(project, value)

    def names(**params: str) -> list[str]:
        result = client.simulate_get("/api/project-credits/", params=params, headers=staff)
        assert result.status_code == 200, result.text
        return [row["project_name"] for row in result.json]

    assert names() == ["Alpha", "Beta", "Gamma"]
    assert names(o="-value") == ["Alpha", "Gamma", "Beta"]
    assert names(o="project_name") == ["Alpha", "Beta", "Gamma"]
    assert names(project_name="ET") == ["Beta"]
    assert names(query="gam") == ["Gamma"]
    assert names(customer_slug="org") == ["Alpha", "Beta", "Gamma"]
    assert names(customer_uuid=world["other"]["uuid"]) == []
    assert names(project_uuid=world["beta"]["uuid"]) == ["Beta"]
    bad = client.simulate_get("/api/project-credits/", params={"customer_uuid": "x"},
                              headers=staff)
    assert (bad.status_code, bad.json) == (400, {"customer_uuid": ["Enter a valid UUID."]})
    bad_order = client.simulate_get("/api/project-credits/", params={"o": "foo"}, headers=staff)
    assert bad_order.json == {"o": [
        "Select a valid choice. foo is not one of the available choices."]}
    page = client.simulate_get("/api/project-credits/", headers=staff,
                               params={"o": "-value", "page_size": "1", "page": "2"})
    assert [row["project_name"] for row in page.json] == ["Gamma"]
    assert page.headers["X-Result-Count"] == "3"
    base = "http://falconframework.org/api/project-credits/"
    assert page.headers["Link"] == (
        f'<{base}?o=-value&page_size=1>; rel="first", '
        f'<{base}?o=-value&page_size=1>; rel="prev", '
        f'<{base}?o=-value&page=3&page_size=1>; rel="next", '
        f'<{base}?o=-value&page=3&page_size=1>; rel="last"')
    head = client.simulate_head("/api/project-credits/", headers=staff)
    assert (head.status_code, head.headers["X-Result-Count"], head.text) == (200, "3", "")
    invalid = client.simulate_get("/api/project-credits/", params={"page": "4"}, headers=staff)
    assert (invalid.status_code, invalid.json) == (404, {"detail": "Invalid page."})


def test_filtered_pages_sort_like_unfiltered_ones(directory: Directory, services: Services,
                                                  world: dict[str, Any]) -> None:
    """A filtered page sorts on keys no index supplies (so PostgreSQL filters first, issue
    18); the order, missing end dates included, is the unfiltered list's."""
    for project, value, end in ((world["alpha"], "300", None), (world["beta"], "100",
                                 "2027-03-01"), (world["gamma"], "200", "2027-01-01")):
        directory.project_credit(project, value, **({"end_date": end} if end else {}))
    statements: list[str] = []

    def names(**params: str) -> list[str]:
        found = directory.client.simulate_get("/api/project-credits/", params=params,
                                              headers=directory.staff)
        assert found.status_code == 200, found.text
        return [row["project_name"] for row in found.json]

    with capture_statements(services.reads, statements):
        for order in ("end_date", "-end_date", "-value", "project_name"):
            assert names(o=order, customer_slug="org") == names(o=order), order
        second = names(o="-end_date", customer_slug="org", page_size="1", page="2")
        assert second == names(o="-end_date")[1:2]
    pages = [s for s in statements if "LIMIT" in s and "project_credits.created" in s]
    narrowed = [s for s in pages if "OVER ()" in s]  # the window count: filters given
    assert narrowed and len(narrowed) < len(pages)
    coalesced = "COALESCE(project_credits.created, project_credits.created)"
    if services.engine.dialect.name == "postgresql":
        assert all(coalesced in s for s in narrowed)
    assert not any(coalesced in s for s in pages if s not in narrowed)


def test_filtered_pages_count_in_the_page_query(directory: Directory,
                                               world: dict[str, Any]) -> None:
    """A filtered list counts with the page (no maintained count applies): the total, the
    last page and out-of-range pages must agree with an unpaged count."""
    client, staff = directory.client, directory.staff
    for project, value in ((world["alpha"], "300"), (world["beta"], "100"),
                           (world["gamma"], "200")):
        directory.project_credit(project, value)

    def page(**params: str) -> Any:
        return client.simulate_get("/api/project-credits/", headers=staff,
                                   params={"customer_slug": "org", "o": "value",
                                           "page_size": "2", **params})

    second = page(page="2")
    assert [row["project_name"] for row in second.json] == ["Alpha"]
    assert second.headers["X-Result-Count"] == "3"
    assert (second.json[0]["customer_credit"], second.json[0]["allocated_customer_credit"]) == (
        "1000.00000", "600.00000")
    last = page(page="last")
    assert ([row["project_name"] for row in last.json], last.headers["X-Result-Count"]) == (
        ["Alpha"], "3")
    for beyond in ("3", "0", "x"):
        answer = page(page=beyond)
        assert (answer.status_code, answer.json) == (404, {"detail": "Invalid page."}), beyond
    empty = client.simulate_get("/api/project-credits/", headers=staff,
                                params={"customer_uuid": world["other"]["uuid"]})
    assert (empty.status_code, empty.json, empty.headers["X-Result-Count"]) == (200, [], "0")
    head = client.simulate_head("/api/project-credits/", headers=staff,
                                params={"customer_slug": "org"})
    assert head.headers["X-Result-Count"] == "3"
    owners = client.simulate_get("/api/project-credits/", headers=world["owner"],
                                 params={"page_size": "2", "page": "2"})
    assert ([row["project_name"] for row in owners.json], owners.headers["X-Result-Count"]) == (
        ["Gamma"], "3")


def test_deleting_the_organisation_credit_removes_project_credits(
        directory: Directory, world: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    directory.project_credit(world["alpha"], "100")
    org_credit = client.simulate_get("/api/customer-credits/", headers=staff).json[0]
    deleted = client.simulate_delete(f"/api/customer-credits/{org_credit['uuid']}/",
                                     headers=staff)
    assert deleted.status_code == 204
    assert client.simulate_get("/api/project-credits/", headers=staff).json == []
    again = directory.customer_credit(world["org"], "10")
    assert again["value"] == "10.00000"
    assert directory.project_credit(world["alpha"], "5")["value"] == "5.00000"


def test_conditional_writes_with_etags(directory: Directory, world: dict[str, Any]) -> None:
    client, staff = directory.client, directory.staff
    credit = directory.project_credit(world["alpha"], "100")
    path = f"/api/project-credits/{credit['uuid']}/"
    etag = client.simulate_get(path, headers=staff).headers["ETag"]
    first = client.simulate_patch(path, json={"value": "90"}, headers={**staff, "If-Match": etag})
    assert first.status_code == 200 and first.headers["ETag"] != etag
    stale = client.simulate_patch(path, json={"value": "80"}, headers={**staff, "If-Match": etag})
    assert stale.status_code == 412
    assert client.simulate_get(path, headers=staff).json["value"] == "90.00000"
    gone = client.simulate_delete(path, headers={**staff, "If-Match": etag})
    assert gone.status_code == 412
    deleted = client.simulate_delete(path, headers={**staff, "If-Match": first.headers["ETag"]})
    assert deleted.status_code == 204


def test_an_empty_body_is_an_empty_object(directory: Directory, world: dict[str, Any]) -> None:
    """As DRF: no body means no fields, not a parse error."""
    client, staff = directory.client, directory.staff
    credit = directory.project_credit(world["alpha"], "100")
    patched = client.simulate_patch(f"/api/project-credits/{credit['uuid']}/", headers=staff)
    assert (patched.status_code, patched.json["value"]) == (200, "100.00000")
    created = client.simulate_post("/api/project-credits/", headers=staff)
    assert created.json == {"project": ["This field is required."]}


def test_a_reused_list_statement_reads_fresh_rows(directory: Directory,
                                                  world: dict[str, Any]) -> None:
    """Staff lists reuse built statements (api/http/statement_cache.py): never their results."""
    client, staff = directory.client, directory.staff

    def listed() -> tuple[list[str], str]:
        answer = client.simulate_get("/api/project-credits/", headers=staff,
                                     params={"o": "-value", "customer_slug": "org"})
        return [row["value"] for row in answer.json], answer.headers["X-Result-Count"]

    directory.project_credit(world["alpha"], "300")
    assert listed() == (["300.00000"], "1")
    directory.project_credit(world["beta"], "400")
    assert listed() == (["400.00000", "300.00000"], "2")


def test_a_new_role_widens_the_same_list_at_once(directory: Directory,
                                                 world: dict[str, Any]) -> None:
    """Statements are shared by callers who see the same: a grant changes what one sees."""
    client = directory.client
    directory.customer_credit(world["other"], "500")
    directory.project_credit(world["alpha"], "300")
    directory.project_credit(world["foreign"], "200")

    def owners_list() -> list[str]:
        answer = client.simulate_get("/api/project-credits/", headers=world["owner"],
                                     params={"o": "value"})
        return [row["project_name"] for row in answer.json]

    assert owners_list() == ["Alpha"]
    directory.grant("owner", "customer", world["other"]["uuid"], "owner")
    assert owners_list() == ["Foreign", "Alpha"]


def test_pages_and_single_credits_are_rendered_from_plain_rows(
        directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows reach the renderers as named tuples, not as SQLAlchemy's Row: a field read on
    Row is a Python-level `__getattr__` (about 0.6 µs), twenty-odd per credit rendered,
    and was half of a 100-row page's time (issue 18). Values are unchanged."""
    from sqlalchemy.engine.row import Row

    from api.resources import customer_credits, project_credits

    for n in range(3):
        org = directory.customer(f"Org {n}")
        directory.customer_credit(org, "100")
        directory.project_credit(directory.project(org, f"P{n}"), "10")
    rendered: list[Any] = []
    for module, name in ((project_credits, "project_credit"),
                         (customer_credits, "customer_credit")):
        original = getattr(module, name)

        def recording(base: str, view: dict[str, Any], flag: bool,
                      original: Any = original) -> Any:
            rendered.append(view["row"])
            return original(base, view, flag)

        monkeypatch.setattr(module, name, recording)
    staff = directory.staff
    pages = {path: directory.client.simulate_get(path, headers=staff).json
             for path in ("/api/project-credits/", "/api/customer-credits/")}
    one = directory.client.simulate_get(
        f"/api/project-credits/{pages['/api/project-credits/'][0]['uuid']}/", headers=staff)
    assert len(rendered) == 7
    assert [type(row) for row in rendered if isinstance(row, Row)] == []
    assert all(isinstance(row, tuple) and "uuid" in getattr(row, "_fields", ())
               for row in rendered)
    assert [credit["value"] for credit in pages["/api/project-credits/"]] == ["10.00000"] * 3
    assert {credit["value"] for credit in pages["/api/customer-credits/"]} == {"100.00000"}
    assert one.json == pages["/api/project-credits/"][0]


def test_a_callers_roles_come_with_the_user_in_one_statement(
        directory: Directory, services: Services, world: dict[str, Any]) -> None:
    """After every write the log has moved, so the next request loads its caller afresh:
    the user and all its roles in one statement, not two (issue 18). What each caller may
    see is unchanged: roles in two organisations, one role, none."""
    directory.customer_credit(world["other"], "50")
    other = directory.project_credit(world["foreign"], "5")
    mine = directory.project_credit(world["alpha"], "7")
    directory.grant("owner", "customer", world["other"]["uuid"], "owner")
    seen: dict[str, list[str]] = {}
    statements: list[str] = []
    for name in ("owner", "member", "stranger"):
        directory.customer("moves the log")  # so the caller is not cached
        with capture_statements(services.reads, statements):
            page = directory.client.simulate_get("/api/project-credits/",
                                                 headers=world[name])
        assert page.status_code == 200, page.text
        seen[name] = sorted(row["uuid"] for row in page.json)
    assert seen == {"owner": sorted([other["uuid"], mine["uuid"]]), "member": [mine["uuid"]],
                    "stranger": []}
    loads = [s for s in statements if "FROM users" in s or "FROM user_roles" in s]
    assert len(loads) == 3 and all("JOIN user_roles" in s for s in loads)
