"""`credit-ledger import waldur` against a live server speaking Waldur's API (both backends).

Values, names, uuids, terms and list order are compared through the ledger's own API with
what the source serves; a re-run records nothing; a changed source value is reported and
not applied; records the ledger must refuse are named and the rest imported.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import uuid4

import falcon.testing
import httpx
import pytest

from api.cli import importer
from api.server.wiring import Services
from projections.verify import verify
from tests.support import Directory
from tests.waldur_source import Source, waldur_source

PROJECT_CREDIT_FIELDS = (
    "uuid", "value", "project_uuid", "project_name", "project_slug", "customer_uuid",
    "customer_name", "customer_slug", "end_date", "expected_consumption",
    "minimal_consumption_logic", "grace_coefficient", "apply_as_minimal_consumption",
    "mark_unused_credit_as_spent_on_project_termination")
CUSTOMER_CREDIT_FIELDS = (
    "uuid", "value", "customer_uuid", "customer_name", "customer_slug", "end_date",
    "expected_consumption", "minimal_consumption_logic", "grace_coefficient",
    "apply_as_minimal_consumption")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    with waldur_source(tmp_path_factory.mktemp("waldur-source")) as running:
        yield running


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_import(services: Services, source: Source,
               transport: httpx.BaseTransport | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    client = httpx.Client(transport=transport, timeout=30.0) if transport else None
    code = importer.run(services, source.url, source.token, out, err, client)
    return Result(code, out.getvalue(), err.getvalue())


def ledger_all(client: falcon.testing.TestClient, headers: dict[str, str],
               collection: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        result = client.simulate_get(f"/api/{collection}/",
                                     params={"page_size": "300", "page": str(page)},
                                     headers=headers)
        assert result.status_code == 200, result.text
        items.extend(result.json)
        if len(items) >= int(result.headers["X-Result-Count"]):
            return items
        page += 1


def same_shape(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The fields the import carries, numbers compared as numbers (DRF may render 0 or '0')."""
    shaped = {}
    for name in names:
        value = item[name]
        if name in ("value", "expected_consumption", "grace_coefficient"):
            value = Decimal(str(value))
        shaped[name] = value
    return shaped


def offering_uuids(item: dict[str, Any]) -> list[str]:
    return sorted(offering["uuid"] for offering in item["offerings"])


def test_import_keeps_uuids_names_values_terms_and_order(
        services: Services, client: falcon.testing.TestClient, directory: Directory,
        source: Source) -> None:
    result = run_import(services, source)
    assert result.code == 0, result.err

    staff = directory.staff
    expected = source.all("project-credits")
    imported = ledger_all(client, staff, "project-credits")
    assert [same_shape(c, PROJECT_CREDIT_FIELDS) for c in imported] == [
        same_shape(c, PROJECT_CREDIT_FIELDS) for c in expected]  # same order: created
    assert [offering_uuids(c) for c in imported] == [offering_uuids(c) for c in expected]
    expected_orgs = source.all("customer-credits")
    imported_orgs = ledger_all(client, staff, "customer-credits")
    assert [same_shape(c, CUSTOMER_CREDIT_FIELDS) for c in imported_orgs] == [
        same_shape(c, CUSTOMER_CREDIT_FIELDS) for c in expected_orgs]
    assert [offering_uuids(c) for c in imported_orgs] == [
        offering_uuids(c) for c in expected_orgs]
    assert any(offering_uuids(c) for c in expected_orgs)  # restrictions were exercised
    for collection, names in (("customers", ("uuid", "name", "slug")),
                              ("projects", ("uuid", "name", "slug", "customer_uuid"))):
        assert [{k: c[k] for k in names} for c in ledger_all(client, staff, collection)] == [
            {k: c[k] for k in names} for c in source.all(collection)]

    n = len(expected)
    assert f"project-credits: {n} created, 0 unchanged, 0 differs, 0 rejected" in result.out
    assert f"customer-credits: {len(expected_orgs)} created" in result.out
    assert f"project-credits: {n}/{n} read" in result.err  # progress with totals
    history = client.simulate_get(f"/api/project-credits/{expected[0]['uuid']}/history/",
                                  headers=staff)
    assert history.status_code == 200, history.text
    assert {e["actor"] for e in history.json} == {f"import:{source.url}"}


def test_rerun_records_nothing_and_reports_no_difference(
        services: Services, source: Source) -> None:
    assert run_import(services, source).code == 0
    position = services.ledger.recorder.max_notification_id()

    again = run_import(services, source)

    assert again.code == 0, again.out + again.err
    assert services.ledger.recorder.max_notification_id() == position
    n = len(source.all("project-credits"))
    assert f"project-credits: 0 created, {n} unchanged, 0 differs, 0 rejected" in again.out
    assert "differs " not in again.out and "rejected " not in again.err
    assert verify(services.ledger, services.engine).differences == []  # read models = replay


def test_changed_source_value_is_reported_and_not_applied(
        services: Services, client: falcon.testing.TestClient, directory: Directory,
        source: Source) -> None:
    assert run_import(services, source).code == 0
    credit = next(c for c in source.all("project-credits") if Decimal(c["value"]) > 1)
    lowered = f"{Decimal(credit['value']) - 1:.5f}"
    with source.http() as http:
        assert http.patch(f"/api/project-credits/{credit['uuid']}/",
                          json={"value": lowered}).status_code == 200
        try:
            again = run_import(services, source)
        finally:
            http.patch(f"/api/project-credits/{credit['uuid']}/",
                       json={"value": credit["value"]})

    assert again.code == 1
    assert (f"differs project credit {credit['uuid']}: value: {lowered} in the source, "
            f"{credit['value']} in the ledger") in again.out
    assert "1 differs" in again.out
    shown = client.simulate_get(f"/api/project-credits/{credit['uuid']}/",
                                headers=directory.staff)
    assert shown.json["value"] == credit["value"]


class Tampering(httpx.BaseTransport):
    """The source as a real server, with chosen list items altered on the way."""

    def __init__(self, edits: dict[str, Callable[[list[Any]], None]]) -> None:
        self.inner = httpx.HTTPTransport()
        self.edits = edits

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        collection = request.url.path.strip("/").split("/")[-1]
        if collection not in self.edits or response.status_code != 200:
            return response
        items = response.json()
        self.edits[collection](items)
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(200, headers=headers, content=json.dumps(items).encode())


def test_rejected_records_are_named_and_the_rest_imported(
        services: Services, client: falcon.testing.TestClient, directory: Directory,
        source: Source) -> None:
    credits = source.all("project-credits")
    projects = source.all("projects")
    orphan_project = projects[1]["uuid"]
    orphan_credit = next(c["uuid"] for c in credits if c["project_uuid"] == orphan_project)
    assert orphan_credit not in {c["uuid"] for c in credits[2:5]}
    bad_number, too_big, bad_date = (c["uuid"] for c in credits[2:5])
    stranger = uuid4().hex

    def edit_projects(items: list[Any]) -> None:
        for item in items:
            if item["uuid"] == orphan_project:
                item["customer_uuid"] = stranger

    def edit_credits(items: list[Any]) -> None:
        for item in items:
            if item["uuid"] == bad_number:
                item["value"] = "lots"
            elif item["uuid"] == too_big:
                item["value"] = "99999999.00000"
            elif item["uuid"] == bad_date:
                item["end_date"] = "2027-01-15"

    result = run_import(services, source, Tampering(
        {"projects": edit_projects, "project-credits": edit_credits}))

    assert result.code == 1
    rejected = sorted(line for line in result.err.splitlines() if line.startswith("rejected "))
    assert rejected == sorted([
        f"rejected project {orphan_project}: No Customer {stranger}.",
        f"rejected project credit {bad_number}: value: A valid number is required.",
        f"rejected project credit {too_big}: The sum of project credits cannot exceed the "
        "credit for organization.",
        f"rejected project credit {bad_date}: end_date: End date must be the first day of "
        "the month.",
        f"rejected project credit {orphan_credit}: No Project {orphan_project}.",
    ]), result.err
    assert f"project-credits: {len(credits) - 4} created, 0 unchanged, 0 differs, 4 rejected" \
        in result.out
    staff = directory.staff
    imported = {c["uuid"] for c in ledger_all(client, staff, "project-credits")}
    assert imported == {c["uuid"] for c in credits} - {
        bad_number, too_big, bad_date, orphan_credit}
    # nothing of a refused record reached the store: the project holds no credit
    too_big_project = next(c["project_uuid"] for c in credits if c["uuid"] == too_big)
    shown = client.simulate_get(f"/api/projects/{too_big_project}/", headers=staff)
    assert shown.json["project_credit"] is None
    assert client.simulate_get(f"/api/projects/{orphan_project}/",
                               headers=staff).status_code == 404


def test_an_interrupted_import_is_completed_by_a_rerun(
        services: Services, client: falcon.testing.TestClient, directory: Directory,
        source: Source) -> None:
    """A killed import recorded the first chunks; the re-run adds the rest, and only them."""

    def first_half(items: list[Any]) -> None:
        items[:] = items[: len(items) // 2]

    first = run_import(services, source, Tampering({"project-credits": first_half}))
    assert first.code == 0, first.err
    n = len(source.all("project-credits"))
    half = len(ledger_all(client, directory.staff, "project-credits"))
    assert 0 < half < n

    rest = run_import(services, source)

    assert rest.code == 0, rest.err
    assert f"project-credits: {n - half} created, {half} unchanged, 0 differs, 0 rejected" \
        in rest.out
    assert [c["uuid"] for c in ledger_all(client, directory.staff, "project-credits")] == [
        c["uuid"] for c in source.all("project-credits")]


def test_the_cli_command_imports(database_url: str, source: Source,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    code = main(["import", "waldur", "--url", source.url, "--token", source.token])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    n = len(source.all("project-credits"))
    assert f"project-credits: {n} created, 0 unchanged, 0 differs, 0 rejected" in captured.out
    assert "credits/s" in captured.out
    assert main(["import", "waldur", "--url", source.url, "--token", "wrong"]) == 2
    assert "answered 401" in capsys.readouterr().err


# --- issue 21 row 11: a source whose pagination loops ends the import with an error --------

def looping_source(next_of: Callable[[httpx.URL], str], items: list[Any]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=items, headers={
            "X-Result-Count": "1", "Link": f'<{next_of(request.url)}>; rel="next"'})
    return httpx.MockTransport(answer)


@pytest.mark.parametrize("next_of", [
    lambda url: str(url),  # the page itself
    lambda url: "http://w/api/marketplace-public-offerings/?page=2" if url.params.get(
        "page") != "2" else "http://w/api/marketplace-public-offerings/?page_size=300"])
def test_a_next_link_seen_before_ends_the_import_with_an_error(
        services: Services, next_of: Callable[[httpx.URL], str]) -> None:
    offering = {"uuid": uuid4().hex, "name": "VM", "type": "OpenStack.Instance"}
    out, err = io.StringIO(), io.StringIO()
    client = httpx.Client(transport=looping_source(next_of, [offering]))
    code = importer.run(services, "http://w", "t", out, err, client)
    assert code == 2
    assert "was already read: the source's next links loop" in err.getvalue()


def test_an_empty_page_with_a_next_link_ends_the_import(services: Services) -> None:
    pages = iter(range(1, 10**6))
    out, err = io.StringIO(), io.StringIO()
    client = httpx.Client(transport=looping_source(
        lambda url: f"http://w/api/x/?page={next(pages)}", []))
    assert importer.run(services, "http://w", "t", out, err, client) == 2
    assert "the source's pages never end" in err.getvalue()


def analysed_tables(services: Services) -> set[str]:
    """The tables the planner has statistics for (PostgreSQL: analysed in this schema)."""
    with services.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            return {row[0] for row in conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1")}
        return {row[0] for row in conn.exec_driver_sql(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
            "AND last_analyze IS NOT NULL")}


def test_an_import_ends_with_planner_statistics(services: Services, source: Source) -> None:
    """Right after a bulk load the planner would take the tables for empty and scan all of
    a table for one page (issue 18); the import analyses them before it returns."""
    assert run_import(services, source).code == 0

    analysed = analysed_tables(services)

    assert {"project_credits", "customer_credits"} <= analysed
    if services.engine.dialect.name == "postgresql":
        assert "ledger_events" in analysed
