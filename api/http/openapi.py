"""The OpenAPI 3 document of our API, served at GET /api/schema/: assembled, not written.

Every resource class declares its routes (paths, parameters, responses; api/http/routes.py)
and the component schemas it owns, next to its handlers; request bodies come from the
field lists the resources validate with (`object_schema(FIELDS)`), each field's schema from
its parser (api/http/fields.py). This module adds only the frame: the components several
resources share, HEAD beside every GET, the security scheme. So the document, the router
and the validators cannot drift; tests/test_openapi.py checks they agree and runs
schemathesis against the app with this document.

The credits schemas keep upstream's component names and fields
(reference/waldur-openapi-credits.yaml) but say what we actually serve: every decimal is a
string (upstream declares some as numbers), uuids are 32 hex digits (upstream says
`format: uuid`, which promises hyphens), and fields only owners see are not required.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import falcon

from api.http import routes
from api.http.routes import Route
from api.http.schema import (
    PARAMETERS,
    RESPONSES,
    STRING,
    Json,
    array,
    json_response,
    obj,
    offering_schema,
    operation,
)

TRANSACTION_TYPES = ["staff_grant", "compensation", "minimal_draw", "affiliate_fee",
                     "transfer_in", "transfer_out", "payout", "expiry", "rollback",
                     "adjustment", "withdrawable_adjustment"]

# The components more than one resource refers to.
SHARED_SCHEMAS: Json = {
    "MinimalConsumptionLogicEnum": {"type": "string", "enum": ["fixed", "linear"]},
    "NestedPublicOffering": offering_schema(""),
    "NestedProviderOffering": offering_schema(""),
    "CreditTransactionTypeEnum": {"type": "string", "enum": TRANSACTION_TYPES},
    "Detail": obj({"detail": STRING}, ["detail"], "DRF's error body."),
    "ValidationError": {
        "description": "DRF's validation body: field name to messages (a list; a string for "
                       "model-level rules), or one object per item of a list body.",
        "oneOf": [
            {"type": "object", "additionalProperties": {
                "oneOf": [array(STRING), STRING]}},
            {"type": "array", "items": {"oneOf": [STRING, {"type": "object"}]}},
        ],
    },
}


def with_head(paths: Json) -> Json:
    """HEAD wherever GET (the app answers it by running GET): same answers, no bodies."""
    for item in paths.values():
        get = item.get("get")
        if get is not None and "head" not in item:
            responses = {code: _without_content(response)
                         for code, response in get["responses"].items()}
            item["head"] = {**get, "operationId": get["operationId"] + "_head",
                            "summary": get["summary"] + " (headers only)",
                            "responses": responses}
    return paths


def _without_content(response: Json) -> Json:
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        response = RESPONSES[name]
    return {key: value for key, value in response.items() if key != "content"}


def document(resource_types: Sequence[Any] | None = None) -> Json:
    """The document of every resource the app serves (api/app.py's RESOURCE_TYPES)."""
    if resource_types is None:
        from api.app import RESOURCE_TYPES  # the app imports this module: import when asked
        resource_types = RESOURCE_TYPES
    schemas = dict(SHARED_SCHEMAS)
    for resource_type in resource_types:
        schemas.update(resource_type.schemas)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "credit-ledger",
            "version": "0.1.0",
            "description": "An event-sourced credit ledger serving Waldur's credits API "
                           "(project-credits, customer-credits, credit-transactions) with "
                           "history, as-of reads, consumption posting, month settlement "
                           "and reconciliation on top.",
        },
        "security": [{"tokenAuth": []}],
        "paths": with_head(routes.paths(resource_types)),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "securitySchemes": {"tokenAuth": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <key>`"}},
        },
    }


class OpenApiSchema:
    """GET /api/schema/: this document; anonymous callers allowed."""

    routes = [Route("/api/schema/", {"get": operation("schema", "service", "This document", {
        "200": json_response({"type": "object"})}, public=True)})]
    schemas: Json = {}

    def __init__(self) -> None:
        self.document = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
