"""The OpenAPI document: valid, in step with the Falcon routes, and true of the running API.

The schemathesis part drives every documented operation through a live gunicorn (a fresh
SQLite file or PostgreSQL schema, staff token, a small world of fixtures) with a bounded
number of generated requests and checks that no answer is a 5xx and that status codes,
content types, headers and bodies are the documented ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from uuid import uuid4

import falcon
import falcon.testing
import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import (
    load_all_checks,
    negative_data_rejection,
    positive_data_acceptance,
)
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation

from api.app import create_app
from api.http import fields
from api.http.fields import FieldError
from api.http.forms import object_schema
from api.http.openapi import document
from api.resources import project_credits
from api.server.wiring import build_services
from tests.conftest import BACKENDS
from tests.live import Live, backend_url, live_server
from tests.support import Clock, Directory, messages

MAX_EXAMPLES = int(os.environ.get("LEDGER_TEST_SCHEMATHESIS_EXAMPLES", "8"))
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Rules that need the ledger's state or the clock (a linked object exists and is live, one
# credit per project/customer, a period has started, terms against the credit's value): the
# document says them in words and lists the 400, but no schema can express them, so a
# schema-valid request refused for one of these reasons only is not a failure.
LEDGER_RULES = (
    "Invalid hyperlink - Object does not exist.",
    "already exists.",
    "has not started yet.",
    "The project is terminated.",
    "Expected consumption must be smaller than the credit.",
    "End date is required if minimal consumption logic is linear.",
    "End date must be greater if minimal consumption logic is linear.",
    "The end date must be greater than today's date.",
    "End date must be the first day of the month.",
    "The sum of project credits cannot exceed the credit for organization.",
    # Webhook targets: where a host name points is known only by resolving it.
    "a loopback, private or reserved address: not allowed.",
    "does not resolve.",
    "Duplicate id in this request.",
    "Reduction would exceed the withdrawable balance.",
    "Adjustment would make the credit value negative.",
    "is not closed.",  # a journal or statement through a month still open
)


def refused_by_ledger_rules_only(response: Any) -> bool:
    if response.status_code != 400:
        return False
    if response.request.method == "HEAD":  # no body: ask GET why
        response = httpx.get(response.request.url, headers=dict(response.request.headers))
    found = list(messages(response.json()))
    return bool(found) and all(any(message.endswith(rule) for rule in LEDGER_RULES)
                               for message in found)


def positive_data_acceptance_but_ledger_rules(ctx: Any, response: Any, case: Any) -> Any:
    """positive_data_acceptance, but a 400 that names only LEDGER_RULES is accepted."""
    if refused_by_ledger_rules_only(response):
        return None
    return positive_data_acceptance(ctx, response, case)


def negative_data_rejection_of_negative_data(ctx: Any, response: Any, case: Any) -> Any:
    """negative_data_rejection for cases that send something invalid: schemathesis labels
    a case negative whose optional body it dropped (nothing invalid is sent)."""
    components = case.meta.components.items() if case.meta is not None else []
    if not any(component.mode.is_negative for location, component in components
               if location != ParameterLocation.BODY or not isinstance(case.body, NotSet)):
        return None
    return negative_data_rejection(ctx, response, case)


load_all_checks()
# Every check schemathesis has, but use_after_free: DELETE of a project terminates it and
# the project stays readable (upstream's behaviour), which that check calls a failure.
WRAPPED = {positive_data_acceptance: positive_data_acceptance_but_ledger_rules,
           negative_data_rejection: negative_data_rejection_of_negative_data}
CHECKS = [WRAPPED.get(check, check) for check in REGISTERED_CHECKS.get_all()
          if check.__name__ != "use_after_free"]


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A fresh ledger with customers, projects, an offering, credits and usage, served by
    a live gunicorn (`live`) as well as in-process (`app`).

    `known` holds ids for reads and updates, `victims` other ids for DELETE (so that reads
    keep finding data), `links` values to put in generated bodies (hyperlinks, an open
    period), `query` values for query parameters (a past period).
    """
    workdir: Path = tmp_path_factory.mktemp("openapi")
    admin = request.getfixturevalue("postgres_database") if request.param != "sqlite" else ""
    with backend_url(request.param, workdir, admin) as url:
        yield from _world(url, workdir)


def _world(url: str, workdir: Path) -> Iterator[dict[str, Any]]:
    services = build_services(url, create_tables=True, today=Clock(date(2026, 11, 26)))
    app = create_app(services)
    directory = Directory(services, falcon.testing.TestClient(app))
    org, other, spare = (directory.customer(name) for name in ("Org", "Other", "Spare"))
    alpha, beta, gamma, delta = (directory.project(org, name)
                                 for name in ("Alpha", "Beta", "Gamma", "Delta"))
    offering = directory.offering("VM")
    customer_credit = directory.customer_credit(
        org, "1000", offerings=[offering["url"]], expected_consumption="100",
        end_date="2027-06-01")
    doomed_customer_credit = directory.customer_credit(other, "50")
    project_credit = directory.project_credit(alpha, "300", grace_coefficient="10",
                                              expected_consumption="50")
    doomed_project_credit = directory.project_credit(beta, "20")
    directory.post("/api/consumptions/", [
        {"id": "item-0", "project": alpha["url"], "amount": "0", "period": "2026-09"},
        {"id": "item-1", "project": alpha["url"], "offering": offering["url"],
         "amount": "12.5", "period": "2026-10"},
        {"id": "item-2", "project": alpha["url"], "amount": "40", "period": "2026-11"}])
    directory.post("/api/billing-periods/2026-09/close/", None)
    transactions = directory.client.simulate_get("/api/credit-transactions/",
                                                 headers=directory.staff).json
    with live_server(url, workdir) as live:
        yield _world_values(app, live, directory, transactions, org, other, spare, alpha,
                            beta, gamma, delta, offering, customer_credit,
                            doomed_customer_credit, project_credit, doomed_project_credit)
        assert live.server_errors() == []
    services.close()


def _world_values(app: falcon.App, live: Live, directory: Directory,
                  transactions: list[Any], *objects: dict[str, Any]) -> dict[str, Any]:
    (org, other, spare, alpha, beta, gamma, delta, offering, customer_credit,
     doomed_customer_credit, project_credit, doomed_project_credit) = objects
    return {
        "app": app, "live": live, "headers": directory.staff,
        "known": {
            "/api/project-credits/": {"uuid": project_credit["uuid"]},
            "/api/customer-credits/": {"uuid": customer_credit["uuid"]},
            "/api/credit-transactions/": {"uuid": transactions[0]["uuid"]},
            "/api/customers/": {"uuid": org["uuid"]},
            "/api/projects/": {"uuid": alpha["uuid"]},
            "/api/marketplace-public-offerings/": {"uuid": offering["uuid"]},
            "/api/marketplace-provider-offerings/": {"uuid": offering["uuid"]},
            "/api/consumptions/": {"item_id": "item-1"},
            "/api/billing-periods/": {"period": "2026-10"},
        },
        "victims": {
            "/api/project-credits/": {"uuid": doomed_project_credit["uuid"]},
            "/api/customer-credits/": {"uuid": doomed_customer_credit["uuid"]},
            "/api/projects/": {"uuid": gamma["uuid"]},
            "/api/consumptions/": {"item_id": "item-2"},
        },
        "links": {"project": delta["url"], "customer": spare["url"],
                  "offering": offering["url"], "offerings": [offering["url"]],
                  "period": "2026-11"},
        "query": {"period": "2026-10"},
    }


# --- (1) the document itself --------------------------------------------------------------

def falcon_operations(app: falcon.App) -> set[tuple[str, str]]:
    """(URI template, method) for every responder a resource implements (not Falcon's)."""
    found: set[tuple[str, str]] = set()

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            for method, responder in (node.method_map or {}).items():
                if method in METHODS and getattr(responder, "__self__", None) is not None:
                    found.add((node.uri_template, method))
            walk(node.children)

    walk(app._router._roots)
    return found


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(route, method.upper()) for route, item in doc["paths"].items()
            for method in item if method.upper() in METHODS}


def test_document_is_valid_openapi_3() -> None:
    validate(document())


def test_every_route_is_documented_and_every_documented_route_exists(
        world: dict[str, Any]) -> None:
    served = falcon_operations(world["app"])
    documented = documented_operations(document())
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented operations the app does not serve"


def test_schema_is_served_to_anonymous_callers(world: dict[str, Any]) -> None:
    result = falcon.testing.TestClient(world["app"]).simulate_get("/api/schema/")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    assert result.json == document()


def test_documented_security_is_enforced(world: dict[str, Any]) -> None:
    """Every operation not marked public answers 401 without a token, the public ones not."""
    client = falcon.testing.TestClient(world["app"])
    doc = document()
    for route, method in sorted(documented_operations(doc)):
        operation = doc["paths"][route][method.lower()]
        url = route.format(uuid="0" * 32, item_id="x", period="2026-10", delivery_uuid="0" * 32)
        result = client.simulate_request(method, url)
        if operation.get("security") == []:
            assert result.status_code == 200, (method, route)
        else:
            assert result.status_code == 401, (method, route, result.status_code)
            assert "401" in operation["responses"]


# --- (2) schemathesis against the live server ----------------------------------------------

schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(max_examples=MAX_EXAMPLES, with_security_parameters=False,
                                database="none", deterministic=True)
schema.config.phases.update(phases=["examples", "fuzzing"])


def valid_at(case: Any, location: ParameterLocation) -> bool:
    """Whether that part of the request was generated valid (so it may be made realistic)."""
    return case.meta is not None and not case.meta.is_negative_at(location)


def known_parameters(world: dict[str, Any], method: str, route: str) -> dict[str, str]:
    table = world["victims"] if method == "DELETE" else world["known"]
    return next((values for prefix, values in table.items() if route.startswith(prefix)), {})


def with_known_links(body: Any, links: dict[str, Any]) -> Any:
    """The same body, its hyperlinks (and period) replaced by ones that exist (and is open)."""
    if isinstance(body, list):
        return [with_known_links(item, links) for item in body]
    if isinstance(body, dict):
        return {key: links.get(key, value) for key, value in body.items()}
    return body


@schema.parametrize()
@schema.given(use_known=st.booleans())
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, use_known: bool,
                                      world: dict[str, Any]) -> None:
    """Generated requests, half of the valid ones about existing objects: no 5xx,
    documented answers; a HEAD counts what the GET with the same query lists.

    Invalid requests are sent as generated (making them about existing objects could undo
    what makes them invalid)."""
    if case.headers and valid_at(case, ParameterLocation.HEADER):
        if "Idempotency-Key" in case.headers:  # generated keys repeat across bodies (422)
            case.headers["Idempotency-Key"] = uuid4().hex
        case.headers.pop("If-Match", None)  # a generated version is stale (412)
    if use_known and case.path_parameters and valid_at(case, ParameterLocation.PATH):
        case.path_parameters.update(known_parameters(
            world, case.operation.method.upper(), case.operation.path))
    if use_known and valid_at(case, ParameterLocation.BODY):
        case.body = with_known_links(case.body, world["links"])
    if use_known and case.query and valid_at(case, ParameterLocation.QUERY):
        case.query.update({key: value for key, value in world["query"].items()
                           if key in case.query})
    response = case.call_and_validate(base_url=world["live"].url, headers=world["headers"],
                                      checks=CHECKS)
    counts = case.operation.definition.raw["operationId"].endswith("_count")
    if counts and response.status_code == 200:
        listed = case.operation.Case(method="GET", query=case.query).call(
            base_url=world["live"].url, headers=world["headers"])
        assert listed.status_code == 200
        assert count_of(listed) == count_of(response), "HEAD must count what GET lists"


def count_of(response: Any) -> Any:
    return {name.lower(): value for name, value in response.headers.items()}["x-result-count"]


# --- (3) what schemathesis found, pinned on both backends ---------------------------------

def test_null_characters_are_refused_before_they_reach_the_ledger(
        directory: Directory) -> None:
    """PostgreSQL cannot store NUL: a name with one used to poison the projector (every
    later request failed); DRF refuses it with this message."""
    client, staff = directory.client, directory.staff
    created = client.simulate_post("/api/customers/", json={"name": "a\x00b"}, headers=staff)
    assert (created.status_code, created.json) == (
        400, {"name": ["Null characters are not allowed."]})
    assert client.simulate_get("/health").status_code == 200
    listed = client.simulate_get("/api/customers/", query_string="name=a%00b", headers=staff)
    assert (listed.status_code, listed.json) == (
        400, {"name": ["Null characters are not allowed."]})
    item = client.simulate_get("/api/consumptions/a%00b/", headers=staff)
    assert item.status_code == 404


def test_lone_surrogates_are_refused_not_a_server_error(directory: Directory) -> None:
    headers = {**directory.staff, "Content-Type": "application/json"}
    created = directory.client.simulate_post("/api/customers/", body='{"name": "a\\ud800"}',
                                             headers=headers)
    assert (created.status_code, created.json) == (
        400, {"name": ["Surrogate characters are not allowed: U+D800."]})
    org = directory.customer("Org")
    body = f'{{"customer": "{org["url"]}", "minimal_consumption_logic": "\\udfff"}}'
    refused = directory.client.simulate_post("/api/customer-credits/", body=body,
                                             headers=headers)
    assert (refused.status_code, refused.json) == (
        400, {"minimal_consumption_logic": ['"\\udfff" is not a valid choice.']})


def test_minimal_consumption_is_a_plain_decimal(directory: Directory) -> None:
    """(100 − 9)/100 × 0.00000 is Decimal('0E-7'); the wire shows 0.0000000."""
    credit = directory.customer_credit(directory.customer("Org"), "10", grace_coefficient="9")
    assert credit["minimal_consumption"] == "0.0000000"


# --- (4) one declaration: what a field's schema admits, its parser accepts ---------------

HEX = "0123456789abcdef" * 2
AGREEMENT = [
    (fields.MONEY, ["0", "12.5", "99999999999.99999", 300, "000000000000001"],
     ["-1", "1.123456", "123456789012", "abc", "", True, None, "١٢٣", "１２３", "5_000", "+5",
      " 5 ", "5\n", "1e3", ".5", "5.", "Infinity", "NaN"]),
    (fields.GRACE, ["-10", "999", 25, 5.0], ["1000", "1.5", "x", "+5", "-", "٥"]),
    (fields.path_segment(9), ["a", "c-5", "...", "a.b", "!$&'()*+,", ";=:@", 7],
     ["", ".", "..", "a/b", "a b", "a\n", "é", "a%20", "1234567890", True, None]),
    (fields.string(5), ["a", " a ", "abcde", 7], [" ", "", "a\x00", "abcdef", True, []]),
    (fields.hyperlink("/api/projects/"),
     [f"/api/projects/{HEX}/", f"http://h:1/api/projects/{HEX}/?x=1",
      f"https://[x/api/projects/{HEX.upper()}/"],
     [f"/api/projects/{HEX}", f"/api/customers/{HEX}/", f"http://h/api/projects/{'-' * 36}/",
      "https://0.com", 5]),
    (fields.PERIOD, ["2026-01", "0001-12"], ["2026-13", "0000-01", "2026-1", "202611",
                                              "2026-01\n", "２０２６-01", " 2026-01"]),
    (fields.choice("fixed", "linear"), ["fixed"], ["Fixed", "", 1]),
    (fields.date_field, ["2026-12-01"], ["2026-13-01", "01.12.2026", 20261201, "2026-12-01\n",
                                         "２０２６-12-01"]),
]


@pytest.mark.parametrize(("parser", "valid", "invalid"), AGREEMENT)
def test_a_parser_accepts_exactly_what_its_schema_admits(parser: Any, valid: list[Any],
                                                         invalid: list[Any]) -> None:
    """Each value is either admitted by the schema and parsed, or refused by both."""
    checker = jsonschema.Draft7Validator(parser.schema,
                                         format_checker=jsonschema.FormatChecker())
    for value in valid:
        assert checker.is_valid(value), value
        parser(value)
    for value in invalid:
        assert not checker.is_valid(value), value
        with pytest.raises(FieldError):
            parser(value)


def test_request_bodies_come_from_the_validators_field_lists() -> None:
    schemas = document()["components"]["schemas"]
    assert schemas["ProjectCreditRequest"] == object_schema(project_credits.FIELDS)
    assert schemas["CreateCustomerCreditRequest"]["required"] == ["customer"]
    assert "required" not in schemas["UpdateCustomerCreditRequest"]
    item = schemas["ConsumptionItemRequest"]
    assert item["required"] == ["id", "project", "amount", "period"]
    assert item["properties"]["offering"]["nullable"] is True


def test_an_empty_ordering_key_is_refused(directory: Directory) -> None:
    listed = directory.client.simulate_get("/api/project-credits/", query_string="o=value,",
                                           headers=directory.staff)
    assert (listed.status_code, listed.json) == (
        400, {"o": ["Select a valid choice.  is not one of the available choices."]})


def test_docs_are_found_where_drf_users_look(client: falcon.testing.TestClient) -> None:
    """drf-spectacular serves Swagger UI at /api/schema/swagger-ui/: so do we, with links
    that resolve from there to the same assets and schema."""
    ours = client.simulate_get("/api/docs/")
    assert ours.status_code == 200 and 'src="static/swagger-ui-bundle.js"' in ours.text
    there = client.simulate_get("/api/schema/swagger-ui/")
    assert there.status_code == 200
    assert 'src="../../docs/static/swagger-ui-bundle.js"' in there.text
    assert 'url: "../",' in there.text
    asset = client.simulate_get("/api/docs/static/swagger-ui-bundle.js")
    assert asset.status_code == 200


@pytest.mark.parametrize(("path", "location"), [
    ("/", "api/docs/"), ("/api", "api/docs/"), ("/api/", "docs/"), ("/api/docs", "docs/")])
def test_where_people_look_for_the_docs_redirects_there(client: falcon.testing.TestClient,
                                                        path: str, location: str) -> None:
    """Issue 21 row 15: relative Locations, so a reverse proxy's prefix is kept."""
    answer = client.simulate_get(path)
    assert (answer.status_code, answer.headers["Location"]) == (302, location)
    assert urljoin(f"http://h{path}", location) == "http://h/api/docs/"
    assert client.simulate_post(path).status_code == 405


def test_the_docs_page_calls_no_external_validator(client: falcon.testing.TestClient) -> None:
    page = client.simulate_get("/api/docs/").text
    assert "validatorUrl: null" in page and "https://" not in page
