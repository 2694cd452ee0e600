"""The OpenAPI 3 document of our API, served at GET /api/schema/.

Request bodies are not restated here: each comes from the field list its resource validates
with (`object_schema(FIELDS)`), and each field's schema from its parser (api/http/fields.py), so
the document and the validators cannot drift. Responses, parameters and paths are written
here as data. A new body field goes into the resource's module-level field list (with a
parser from api/http/fields.py that carries its schema); a new route gets an entry in _paths()
built with operation()/json_body()/errors().

The credits schemas keep upstream's component names and fields
(reference/waldur-openapi-credits.yaml) but say what we actually serve: every decimal is a
string (upstream declares some as numbers), uuids are 32 hex digits (upstream says
`format: uuid`, which promises hyphens), and fields only owners see are not required.
tests/test_openapi.py checks that every route of the Falcon app is here and the reverse, and
runs schemathesis against the app with this document.
"""

from __future__ import annotations

from typing import Any

import falcon

from api.http import fields
from api.http.forms import object_schema
from api.resources import consumptions, customer_credits, directory, project_credits

Json = dict[str, Any]

MONEY_PATTERN = r"^-?[0-9]+\.[0-9]{5}$"
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
HEX_UUID_PATTERN = r"^[0-9a-f]{32}$"
TRANSACTION_TYPES = ["staff_grant", "compensation", "minimal_draw", "affiliate_fee",
                     "transfer_in", "transfer_out", "payout", "expiry", "rollback",
                     "adjustment", "withdrawable_adjustment"]


# --- schema helpers -----------------------------------------------------------------------

def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Json) -> Json:
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def obj(properties: Json, required: list[str] | None = None, description: str = "") -> Json:
    schema: Json = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


def array(items: Json) -> Json:
    return {"type": "array", "items": items}


STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}
URI = {"type": "string", "format": "uri"}
DATE = {"type": "string", "format": "date"}
DATETIME = {"type": "string", "format": "date-time"}
HEX_UUID = {"type": "string", "pattern": HEX_UUID_PATTERN}
MONEY = {"type": "string", "format": "decimal", "pattern": MONEY_PATTERN,
         "description": "Money: a decimal string with 5 places."}
GRACE = fields.GRACE.schema
PERIOD = consumptions.PERIOD.schema
MOMENT = {"type": "string", "format": "date-time"}


def read_only(schema: Json) -> Json:
    return {**schema, "readOnly": True}


# --- component schemas --------------------------------------------------------------------

def _terms() -> Json:
    """BaseCredit's terms, as served."""
    terms: Json = {
        "end_date": nullable({**DATE, "description": "The 1st of a month: the exclusive end "
                                                     "of coverage."}),
        "expected_consumption": MONEY,
        "minimal_consumption": read_only({
            "type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN,
            "description": "The monthly floor; a raw decimal, upstream's arithmetic scale."}),
    }
    terms.update({
        "minimal_consumption_logic": ref("MinimalConsumptionLogicEnum"),
        "grace_coefficient": GRACE,
        "apply_as_minimal_consumption": BOOLEAN,
    })
    return terms


def _offering(description: str) -> Json:
    return obj({"uuid": read_only(HEX_UUID), "url": read_only(URI),
                "type": {"type": "string", "maxLength": 100}, "name": STRING},
               ["uuid", "url", "type", "name"], description)


MARK_UNUSED = "mark_unused_credit_as_spent_on_project_termination"
PROTECT = ("Pool draws for projects without a project credit leave what project credits "
           "still hold (default false, as upstream).")


def _customer_credit(offerings: Json) -> Json:
    properties = {
        "uuid": read_only(HEX_UUID), "url": read_only(URI), "value": MONEY, "customer": URI,
        "customer_name": read_only(STRING), "customer_uuid": read_only(HEX_UUID),
        "customer_slug": read_only(STRING), "offerings": offerings, **_terms(),
        "allocated_to_projects": read_only(MONEY),
        "consumption_last_month": read_only(nullable(MONEY)),
        "withdrawable_balance": read_only(MONEY),
        "protect_allocations": {**BOOLEAN, "description": PROTECT},
    }
    return obj(properties, list(properties))


PROJECT_CREDIT_FIELDS: Json = {
    "uuid": read_only(HEX_UUID), "url": read_only(URI), "value": MONEY, "project": URI,
    "project_name": read_only(STRING), "project_uuid": read_only(HEX_UUID),
    "project_slug": read_only(STRING), "customer_name": read_only(STRING),
    "customer_slug": read_only(STRING), "customer_uuid": read_only(HEX_UUID),
    "customer_credit": read_only({**MONEY, "description": "Owners, staff and support only."}),
    "allocated_customer_credit": read_only(nullable(MONEY)),
    "consumption_last_month": read_only(nullable(MONEY)),
    "creditable_cost_this_month": read_only(nullable(MONEY)),
    "spendable_value": read_only(MONEY),
    "is_limited_by_organization_credit": read_only(BOOLEAN),
    "offerings": read_only({**array(ref("NestedPublicOffering")),
                            "description": "Owners, staff and support only."}),
    **_terms(),
    MARK_UNUSED: BOOLEAN,
}
OWNER_ONLY = ("customer_credit", "allocated_customer_credit", "offerings")

_MOVEMENT_COLUMNS = ("granted", "consumed", "floor_draws", "expired", "written_off",
                     "reversed", "adjustments")
_USAGE_COLUMNS = ("consumed", "floor_draws", "expired", "reversed", "total")
_CREDIT_KIND = {"type": "string", "enum": ["customer_credit", "project_credit"]}
_CREDIT_LABELS = {"kind": _CREDIT_KIND, "uuid": STRING, "customer_uuid": STRING,
                  "customer_name": STRING, "project_uuid": STRING, "project_name": STRING}
_FIGURES = {"opening": MONEY, **dict.fromkeys(_MOVEMENT_COLUMNS, MONEY), "closing": MONEY,
            "ties_out": {**BOOLEAN, "description": "opening + movements = closing"}}
_RECONCILIATION_ROW = obj({
    **_CREDIT_LABELS, **_FIGURES,
    "by_billing_period": array(obj({
        "billing_period": nullable(PERIOD), **dict.fromkeys(_MOVEMENT_COLUMNS, MONEY)},
        ["billing_period", *_MOVEMENT_COLUMNS])),
}, [*_CREDIT_LABELS, *_FIGURES, "by_billing_period"])
_STATEMENT_LINE = obj({
    "date": DATETIME, "type": STRING,
    "credit": {"type": "string", "enum": ["organisation", "project"]},
    "credit_uuid": HEX_UUID, "project_uuid": nullable(HEX_UUID),
    "project_name": nullable(STRING), "item_id": nullable(STRING),
    "billing_period": nullable(PERIOD), "amount": MONEY, "balance_after": MONEY,
    "description": STRING,
}, ["date", "type", "credit", "credit_uuid", "project_uuid", "project_name", "item_id",
    "billing_period", "amount", "balance_after", "description"])

SCHEMAS: Json = {
    # upstream's credits components
    "MinimalConsumptionLogicEnum": {"type": "string", "enum": ["fixed", "linear"]},
    "ProjectCreditOEnum": {"type": "string", "enum": [
        "-end_date", "-expected_consumption", "-project_name", "-value", "end_date",
        "expected_consumption", "project_name", "value"]},
    "CustomerCreditOEnum": {"type": "string", "enum": [
        "-customer_name", "-end_date", "-expected_consumption", "-value", "customer_name",
        "end_date", "expected_consumption", "value"]},
    "NestedPublicOffering": _offering(""),
    "NestedProviderOffering": _offering(""),
    "ProjectCredit": obj(PROJECT_CREDIT_FIELDS,
                         [name for name in PROJECT_CREDIT_FIELDS if name not in OWNER_ONLY]),
    "ProjectCreditRequest": object_schema(project_credits.FIELDS),
    "PatchedProjectCreditRequest": object_schema(project_credits.FIELDS, partial=True),
    "CustomerCredit": _customer_credit(read_only(array(ref("NestedProviderOffering")))),
    "CreateCustomerCredit": _customer_credit(array(URI)),
    "CreateCustomerCreditRequest": object_schema(customer_credits.CREATE_FIELDS),
    "UpdateCustomerCreditRequest": object_schema(customer_credits.UPDATE_FIELDS),
    "PatchedCreateCustomerCreditRequest": object_schema(customer_credits.UPDATE_FIELDS,
                                                        partial=True),
    "WithdrawableAdjustmentRequest": object_schema(customer_credits.ADJUSTMENT_FIELDS),
    "CustomerCreditConsumption": obj({
        "date": read_only(DATE),
        "price": read_only({"type": "string", "format": "decimal",
                            "pattern": r"^-?[0-9]+\.[0-9]{2}$"})}, ["date", "price"]),
    "CreditTransaction": obj({
        "uuid": read_only(HEX_UUID), "created": read_only(DATETIME), "amount": MONEY,
        "transaction_type": ref("CreditTransactionTypeEnum"),
        "transaction_type_display": read_only(STRING), "comment": STRING,
        "customer_uuid": nullable(HEX_UUID), "customer_name": nullable(STRING),
        "project_uuid": {**STRING, "description": "Empty when no project is concerned."},
        "project_name": STRING, "billing_period": nullable(DATE), "balance_after": MONEY,
        "credit_uuid": nullable(HEX_UUID), "project_credit_uuid": nullable(HEX_UUID),
    }, ["uuid", "created", "amount", "transaction_type", "transaction_type_display",
        "comment", "customer_uuid", "customer_name", "project_uuid", "project_name",
        "billing_period", "balance_after", "credit_uuid", "project_credit_uuid"]),
    "CreditTransactionTypeEnum": {"type": "string", "enum": TRANSACTION_TYPES},
    # ours
    "CreditHistoryEntry": obj({
        "version": {**INTEGER, "description": "The credit's version after this event."},
        "type": {**STRING, "description": "The event's name."},
        "timestamp": DATETIME,
        "actor": nullable(STRING),
        "changes": {"type": "object", "additionalProperties": True,
                    "description": "The event's own attributes."},
        "amount": nullable(MONEY),
        "balance_after": MONEY,
        "transaction_type": nullable(ref("CreditTransactionTypeEnum")),
        "transaction_uuid": nullable(HEX_UUID),
        "comment": {**STRING, "description": "As on the event's transaction; empty if none."},
    }, ["version", "type", "timestamp", "actor", "changes", "amount", "balance_after",
        "transaction_type", "transaction_uuid", "comment"]),
    "Customer": obj({
        "uuid": read_only(HEX_UUID), "url": read_only(URI), "name": STRING, "slug": STRING,
        "customer_credit": read_only(nullable(MONEY)),
        "customer_unallocated_credit": read_only(nullable(MONEY)),
    }, ["uuid", "url", "name", "slug", "customer_credit", "customer_unallocated_credit"]),
    "CustomerRequest": object_schema(directory.CUSTOMER_FIELDS),
    "Project": obj({
        "uuid": read_only(HEX_UUID), "url": read_only(URI), "name": STRING, "slug": STRING,
        "customer": URI, "customer_uuid": read_only(HEX_UUID),
        "customer_name": read_only(STRING), "project_credit": read_only(nullable(MONEY)),
        "is_terminated": read_only(BOOLEAN),
    }, ["uuid", "url", "name", "slug", "customer", "customer_uuid", "customer_name",
        "project_credit", "is_terminated"]),
    "ProjectRequest": object_schema(directory.PROJECT_FIELDS),
    "Offering": _offering("A marketplace offering (public and provider routes alike)."),
    "OfferingRequest": object_schema(directory.OFFERING_FIELDS),
    "ConsumptionItemRequest": {**object_schema(consumptions.ITEM_FIELDS),
                               "description": "A cost item, net of tax."},
    "ConsumptionResult": obj({
        "id": STRING, "project_uuid": HEX_UUID, "amount": MONEY,
        "drawn_from_project_credit": MONEY, "drawn_from_customer_credit": MONEY,
        "uncovered": MONEY, "replayed": BOOLEAN,
    }, ["id", "project_uuid", "amount", "drawn_from_project_credit",
        "drawn_from_customer_credit", "uncovered", "replayed"]),
    "ConsumptionItem": obj({
        "id": STRING, "project_uuid": HEX_UUID, "offering_uuid": nullable(HEX_UUID),
        "period": PERIOD, "amount": MONEY, "drawn_from_project_credit": MONEY,
        "drawn_from_customer_credit": MONEY, "uncovered": MONEY, "reversed": BOOLEAN,
        "created": DATETIME,
    }, ["id", "project_uuid", "offering_uuid", "period", "amount",
        "drawn_from_project_credit", "drawn_from_customer_credit", "uncovered", "reversed",
        "created"]),
    "BillingPeriod": obj({"period": PERIOD,
                          "state": {"type": "string", "enum": ["open", "closed"]},
                          "modified": DATETIME}, ["period", "state", "modified"]),
    "BillingPeriodClosed": obj({
        "period": PERIOD, "state": {"type": "string", "enum": ["closed"]},
        "already_closed": BOOLEAN, "customers_settled": INTEGER,
    }, ["period", "state", "already_closed", "customers_settled"]),
    "BillingPeriodReopened": obj({
        "period": PERIOD, "state": {"type": "string", "enum": ["open"]},
        "customers_reopened": INTEGER,
    }, ["period", "state", "customers_reopened"]),
    "ReconciliationRow": _RECONCILIATION_ROW,
    "Reconciliation": obj({
        "period": PERIOD, "opening_at": DATETIME, "closing_at": DATETIME,
        "attribution": STRING, "rows": array(ref("ReconciliationRow")),
        "subtotals": obj({kind: obj(_FIGURES, list(_FIGURES))
                          for kind in ("customer_credit", "project_credit")}),
        "summary": obj({
            "rows": INTEGER, "all_rows_tie_out": BOOLEAN, "subtotals_tie_out": BOOLEAN,
            "closing_compared_with": array({
                "type": "string", "enum": ["credit_transactions", "live_read_model"]}),
            "closing_matches": BOOLEAN, "mismatches": array(STRING),
        }, ["rows", "all_rows_tie_out", "subtotals_tie_out", "closing_compared_with",
            "closing_matches", "mismatches"]),
    }, ["period", "opening_at", "closing_at", "attribution", "rows", "subtotals", "summary"]),
    "Usage": obj({
        "billing_period": PERIOD, "closed": BOOLEAN,
        "rows": array(obj({**_CREDIT_LABELS, **dict.fromkeys(_USAGE_COLUMNS, MONEY)},
                          [*_CREDIT_LABELS, *_USAGE_COLUMNS])),
        "subtotals": obj({kind: obj({
            **dict.fromkeys(_USAGE_COLUMNS, MONEY),
            "recorded_in": {"type": "object", "additionalProperties": MONEY,
                            "description": "Net amount by the month it was recorded in."}})
            for kind in ("customer_credit", "project_credit")}),
    }, ["billing_period", "closed", "rows", "subtotals"]),
    "Statement": obj({
        "credit_uuid": HEX_UUID, "customer_uuid": HEX_UUID, "period": PERIOD,
        "opening_at": DATETIME, "closing_at": DATETIME, "opening": MONEY,
        "lines": array(_STATEMENT_LINE), "closing": MONEY, "ties_out": BOOLEAN,
        "project_credits": array(obj({
            "uuid": HEX_UUID, "project_uuid": HEX_UUID, "project_name": nullable(STRING),
            "opening": MONEY, "closing": MONEY},
            ["uuid", "project_uuid", "project_name", "opening", "closing"])),
    }, ["credit_uuid", "customer_uuid", "period", "opening_at", "closing_at", "opening",
        "lines", "closing", "ties_out", "project_credits"]),
    "Health": obj({"status": {"type": "string", "enum": ["ok", "lagging", "unavailable"]},
                   "database": {"type": "string", "enum": ["ok", "unreachable", "timeout"]},
                   "position": {**INTEGER, "description": "The projector's position."},
                   "lag": {**INTEGER, "description": "Events not yet in the read models."},
                   "error": STRING},
                  ["status", "database"]),
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


# --- parameters, responses ----------------------------------------------------------------

def query(name: str, schema: Json, description: str = "", required: bool = False) -> Json:
    """A query parameter; an optional one sent empty counts as absent (Django's QueryDict)."""
    param: Json = {"in": "query", "name": name, "schema": _without_nul(schema)}
    if description:
        param["description"] = description
    if required:
        param["required"] = True
    else:
        param["allowEmptyValue"] = True
    return param


def _without_nul(schema: Json) -> Json:
    """Every query parameter refuses NUL (400, api.http.listing.last_param): free strings
    say so."""
    if "anyOf" in schema:
        return {**schema, "anyOf": [_without_nul(option) for option in schema["anyOf"]]}
    if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
        return {**schema, "pattern": r"^[^\x00]*$"}
    return schema


def path(name: str, schema: Json) -> Json:
    return {"in": "path", "name": name, "required": True, "schema": schema}


def ordering(key: Json) -> Json:
    """`o=-value,project_name`: comma-separated keys, `-` for descending."""
    return {**query("o", array(key), "Ordering"), "style": "form", "explode": False}


def param_ref(name: str) -> Json:
    return {"$ref": f"#/components/parameters/{name}"}


PARAMETERS: Json = {
    "Page": query("page", INTEGER, "A page number within the paginated result set."),
    # DRF takes anything here: what is not a positive integer means the default.
    "PageSize": query("page_size", {"anyOf": [INTEGER, STRING]},
                      "Number of results to return per page (default 10, at most 300)."),
    "Uuid": path("uuid", {"type": "string", "format": "uuid"}),
    "AsOf": query("as_of", DATETIME, "The state at that moment, by replaying the events."),
    # Any value that is not the credit's current ETag is a 412 (RFC 9110), so any string
    # is a well-formed If-Match.
    "IfMatch": {"in": "header", "name": "If-Match", "required": False, "schema": STRING,
                "description": "The credit's ETag (its version), or *: act only on that "
                               "version, 412 otherwise."},
    "IdempotencyKey": {"in": "header", "name": "Idempotency-Key", "required": False,
                       "schema": {**STRING, "maxLength": 255},
                       "description": "A retry with the same key and body replays the "
                                      "first answer; with another body it is refused (422)."},
}
PAGINATION = [param_ref("Page"), param_ref("PageSize")]


RETRY_AFTER: Json = {"Retry-After": {"description": "Seconds to wait before retrying",
                                     "schema": INTEGER}}


def _detail_response(description: str, headers: Json | None = None) -> Json:
    response: Json = {"description": description,
                      "content": {"application/json": {"schema": ref("Detail")}}}
    if headers:
        response["headers"] = headers
    return response


RESPONSES: Json = {
    "ValidationError": {"description": "Invalid input (DRF's validation body), or a "
                                       "malformed JSON body (`detail`). Beyond this "
                                       "document, writes check rules that need the "
                                       "ledger's state or the clock: linked objects exist "
                                       "(projects not terminated), one credit per project "
                                       "and customer, billing periods have started, "
                                       "expected consumption below the credit, a linear "
                                       "credit ends on the 1st of a later month, project "
                                       "credits within the organisation's, item ids unique "
                                       "within a consumption batch, a withdrawable "
                                       "adjustment within the balance and the credit.",
                        "content": {"application/json": {"schema": {
                            "anyOf": [ref("ValidationError"), ref("Detail")]}}}},
    "Unauthorized": _detail_response("No token, or an invalid one.", {
        "WWW-Authenticate": {"schema": {"type": "string", "enum": ["Token"]}}}),
    "Forbidden": _detail_response("The caller's role does not allow this."),
    "NotFound": _detail_response("No such object, or not visible to the caller; for lists, "
                                 "an invalid page."),
    "Conflict": _detail_response("The state forbids it now: a closed billing period, a "
                                 "concurrent change, or an Idempotency-Key still in progress."),
    "PreconditionFailed": _detail_response("If-Match names a version that is no longer "
                                           "current, or is not an ETag of this API."),
    "UnsupportedMediaType": _detail_response("The body is not JSON."),
    "UnprocessableEntity": _detail_response("The Idempotency-Key was used with a different "
                                            "request."),
    "RequestTimeout": _detail_response("The body did not arrive within "
                                       "LEDGER_BODY_TIMEOUT_SECONDS."),
    "PayloadTooLarge": _detail_response("The body is over LEDGER_MAX_BODY_BYTES."),
    "ServiceUnavailable": _detail_response("The database is unreachable; try again after "
                                           "Retry-After seconds.", RETRY_AFTER),
}
ERROR_NAMES = {400: "ValidationError", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               408: "RequestTimeout", 409: "Conflict", 412: "PreconditionFailed",
               413: "PayloadTooLarge", 415: "UnsupportedMediaType",
               422: "UnprocessableEntity", 503: "ServiceUnavailable"}

ETAG: Json = {"ETag": {"description": "The credit's version, for If-Match",
                        "schema": {**STRING, "pattern": r'^"[0-9]+"$'}}}
LIST_HEADERS: Json = {
    "X-Result-Count": {"description": "Total number of results available",
                       "schema": INTEGER},
    "Link": {"description": "first, prev, next and last pages (RFC 8288)", "schema": STRING},
}


def errors(*codes: int) -> Json:
    return {str(code): {"$ref": f"#/components/responses/{ERROR_NAMES[code]}"}
            for code in codes}


def json_response(schema: Json, description: str = "", headers: Json | None = None) -> Json:
    response: Json = {"description": description or "OK",
                      "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def text_response(media_type: str, description: str) -> Json:
    return {"description": description, "content": {media_type: {"schema": STRING}}}


RECONCILIATION_HEADERS: Json = {
    "X-Reconciliation-Ties-Out": {"schema": {"type": "string", "enum": ["true", "false"]}},
    "X-Reconciliation-Closing-Matches": {"schema": {"type": "string",
                                                    "enum": ["true", "false"]}}}


def json_body(schema: Json, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


FORMAT_PARAM = query("format", {"type": "string", "enum": ["json", "csv"]},
                     "csv, or json (default; also chosen by the Accept header)")
BOM_PARAM = query("bom", BOOLEAN, "CSV only: start with a UTF-8 byte-order mark "
                                  "(default true)")


def operation(operation_id: str, tag: str, summary: str, responses: Json, *,
              parameters: list[Json] | None = None, body: Json | None = None,
              public: bool = False) -> Json:
    """One operation; authenticated ones get 401 and 503 (the database is down), bodies
    400/408/413/415, POSTs Idempotency-Key."""
    op: Json = {"operationId": operation_id, "tags": [tag], "summary": summary}
    params = list(parameters or [])
    if operation_id.endswith(("_create", "_close", "_reopen")):
        params.append(param_ref("IdempotencyKey"))
        responses = {**responses, **errors(409, 422)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
        responses = {**responses, **errors(400, 408, 413, 415)}
    if public:
        op["security"] = []
    else:
        responses = {**responses, **errors(401, 503)}
    op["responses"] = dict(sorted(responses.items()))
    return op


# --- paths --------------------------------------------------------------------------------

def credit_paths(collection: str, tag: str, *, item: str, created: str, request: str,
                 updated: str, patched: str, filters: list[Json], o_enum: str,
                 writers: str) -> Json:
    """Upstream's list/create/count and retrieve/update/partial/destroy for one credit kind."""
    prefix = collection.replace("-", "_")
    list_params = [*filters, ordering(ref(o_enum)), *PAGINATION, query("query", STRING),
                   param_ref("AsOf")]
    listing = json_response(array(ref(item)), headers=LIST_HEADERS)
    return {
        f"/api/{collection}/": {
            "get": operation(f"{prefix}_list", tag, f"List {tag}", {
                "200": listing, **errors(400, 404)}, parameters=list_params),
            "head": operation(f"{prefix}_count", tag, "Count (headers only)", {
                "200": {"description": "No response body", "headers": LIST_HEADERS},
                **errors(400, 404)}, parameters=list_params),
            "post": operation(f"{prefix}_create", tag, f"Create ({writers})", {
                "201": json_response(ref(created), "Created", ETAG), **errors(403)},
                body=json_body(ref(request))),
        },
        f"/api/{collection}/{{uuid}}/": {
            "parameters": [param_ref("Uuid")],
            "get": operation(f"{prefix}_retrieve", tag, "Retrieve (an ETag unless as_of)", {
                "200": json_response(ref(item), headers=ETAG), **errors(400, 404)},
                parameters=[param_ref("AsOf")]),
            "put": operation(f"{prefix}_update", tag, f"Update ({writers})", {
                "200": json_response(ref(created), headers=ETAG),
                **errors(403, 404, 409, 412)},
                parameters=[param_ref("IfMatch")], body=json_body(ref(updated))),
            "patch": operation(f"{prefix}_partial_update", tag, f"Partial update ({writers})", {
                "200": json_response(ref(created), headers=ETAG),
                **errors(403, 404, 409, 412)},
                parameters=[param_ref("IfMatch")],
                body=json_body(ref(patched), required=False)),
            "delete": operation(f"{prefix}_destroy", tag, f"Delete ({writers})", {
                "204": {"description": "No response body"}, **errors(403, 404, 409, 412)},
                parameters=[param_ref("IfMatch")]),
        },
        f"/api/{collection}/{{uuid}}/history/": {
            "parameters": [param_ref("Uuid")],
            "get": operation(f"{prefix}_history", tag, "Every event of the credit, in order, "
                                                       "with actor, time and balance after", {
                "200": json_response(array(ref("CreditHistoryEntry"))), **errors(404)}),
        },
    }


def directory_paths(collection: str, tag: str, schema: str, request: str,
                    filters: list[Json], delete: Json | None = None) -> Json:
    prefix = collection.replace("-", "_")
    listing = json_response(array(ref(schema)), headers=LIST_HEADERS)
    item: Json = {
        "parameters": [param_ref("Uuid")],
        "get": operation(f"{prefix}_retrieve", tag, "Retrieve", {
            "200": json_response(ref(schema)), **errors(404)}),
    }
    if delete is not None:
        item["delete"] = delete
    return {
        f"/api/{collection}/": {
            "get": operation(f"{prefix}_list", tag, f"List {tag}", {
                "200": listing, **errors(400, 404)},
                parameters=[query("name", STRING, "Name contains (case-insensitive)"),
                            *filters, *PAGINATION]),
            "head": operation(f"{prefix}_count", tag, "Count (headers only)", {
                "200": {"description": "No response body", "headers": LIST_HEADERS},
                **errors(400, 404)},
                parameters=[query("name", STRING), *filters, *PAGINATION]),
            "post": operation(f"{prefix}_create", tag, "Register (staff)", {
                "201": json_response(ref(schema), "Created"), **errors(403)},
                body=json_body(ref(request))),
        },
        f"/api/{collection}/{{uuid}}/": item,
    }


def compensation_paths() -> Json:
    """The organisation credit's staff actions (README "Withdrawable balance and
    compensations")."""
    done = {"200": {"description": "No response body"}, **errors(403, 404, 409)}
    return {
        "/api/customer-credits/{uuid}/adjust_withdrawable/": {
            "parameters": [param_ref("Uuid")],
            "post": operation("customer_credits_adjust_withdrawable", "customer-credits",
                              "Move the withdrawable part of the balance (staff)", {
                                  "200": json_response(ref("CustomerCredit")),
                                  **errors(400, 403, 404)},
                              body=json_body(ref("WithdrawableAdjustmentRequest")))},
        "/api/customer-credits/{uuid}/clear_compensations/": {
            "parameters": [param_ref("Uuid")],
            "post": operation("customer_credits_clear_compensations", "customer-credits",
                              "Give back the draws of the latest open period's items (staff)",
                              done)},
        "/api/customer-credits/{uuid}/apply_compensations/": {
            "parameters": [param_ref("Uuid")],
            "post": operation("customer_credits_apply_compensations", "customer-credits",
                              "Clear, then draw that period's items again, cheapest first, "
                              "under today's balances (staff)", done)},
    }


def _paths() -> Json:
    uuid_filter = {"type": "string", "format": "uuid"}
    customer_filters = [query("customer_name", STRING), query("customer_slug", STRING),
                        query("customer_uuid", uuid_filter)]
    paths: Json = {
        "/health": {"get": operation("health", "service", "Liveness", {
            "200": json_response(ref("Health")),
            "503": json_response(ref("Health"), "The database is unreachable, or the read "
                                 "models lag by more than LEDGER_HEALTH_MAX_LAG events",
                                 RETRY_AFTER)}, public=True)},
        "/api/schema/": {"get": operation("schema", "service", "This document", {
            "200": json_response({"type": "object"})}, public=True)},
        "/api/docs/": {"get": operation("docs", "service", "This document in Swagger UI", {
            "200": text_response("text/html", "An HTML page")}, public=True)},
        "/api/schema/swagger-ui/": {"get": operation(
            "schema_swagger_ui", "service", "The same page where drf-spectacular serves it", {
                "200": text_response("text/html", "An HTML page")}, public=True)},
        "/metrics": {"get": operation(
            "metrics", "service", "Prometheus metrics (a Bearer token when the server sets "
            "LEDGER_METRICS_TOKEN)", {"200": text_response("text/plain", "Prometheus text "
                                                                          "format")},
            public=True)},
        **credit_paths("project-credits", "project-credits", item="ProjectCredit",
                       created="ProjectCredit", request="ProjectCreditRequest",
                       updated="ProjectCreditRequest", patched="PatchedProjectCreditRequest",
                       filters=[*customer_filters, query("project_name", STRING),
                                query("project_uuid", uuid_filter)],
                       o_enum="ProjectCreditOEnum", writers="customer owners and staff"),
        **credit_paths("customer-credits", "customer-credits", item="CustomerCredit",
                       created="CreateCustomerCredit", request="CreateCustomerCreditRequest",
                       updated="UpdateCustomerCreditRequest",
                       patched="PatchedCreateCustomerCreditRequest", filters=customer_filters,
                       o_enum="CustomerCreditOEnum", writers="staff"),
        "/api/customer-credits/{uuid}/consumptions/": {
            "parameters": [param_ref("Uuid")],
            "get": operation("customer_credits_consumptions_list", "customer-credits",
                             "Credit consumption history grouped by month", {
                                 "200": json_response(array(ref("CustomerCreditConsumption"))),
                                 **errors(404)}),
        },
        **compensation_paths(),
        "/api/credit-transactions/": {},
        "/api/credit-transactions/{uuid}/": {
            "parameters": [param_ref("Uuid")],
            "get": operation("credit_transactions_retrieve", "credit-transactions",
                             "Retrieve", {"200": json_response(ref("CreditTransaction")),
                                          **errors(404)}),
        },
        **directory_paths("customers", "customers", "Customer", "CustomerRequest", []),
        **directory_paths(
            "projects", "projects", "Project", "ProjectRequest",
            [query("customer_uuid", uuid_filter)],
            delete=operation("projects_destroy", "projects",
                             "Terminate the project (staff or customer owner): its credit "
                             "goes to 0, written off or back to the pool", {
                                 "204": {"description": "No response body"},
                                 **errors(400, 403, 404, 409)})),
        **directory_paths("marketplace-public-offerings", "offerings", "Offering",
                          "OfferingRequest", []),
        **directory_paths("marketplace-provider-offerings", "offerings", "Offering",
                          "OfferingRequest", []),
        "/api/consumptions/": {"post": operation(
            "consumptions_create", "consumptions",
            "Post a batch of cost items (staff); validated whole, applied cheapest first", {
                "201": json_response(array(ref("ConsumptionResult")), "Drawn"),
                "200": json_response(array(ref("ConsumptionResult")),
                                     "Every item was posted before: the original results"),
                **errors(403)},
            body=json_body({**array(ref("ConsumptionItemRequest")), "minItems": 1,
                            "maxItems": 1000}))},
        "/api/consumptions/{item_id}/": {
            "parameters": [path("item_id", STRING)],
            "get": operation("consumptions_retrieve", "consumptions", "Retrieve (staff)", {
                "200": json_response(ref("ConsumptionItem")), **errors(403, 404)}),
            "delete": operation("consumptions_destroy", "consumptions",
                                "Reverse the item while its period is open (staff)", {
                                    "204": {"description": "No response body"},
                                    **errors(403, 404, 409)}),
        },
        "/api/billing-periods/": {"get": operation(
            "billing_periods_list", "billing-periods", "Periods closed or re-opened so far", {
                "200": json_response(array(ref("BillingPeriod")))})},
        "/api/billing-periods/{period}/close/": {
            "parameters": [path("period", PERIOD)],
            "post": operation("billing_periods_close", "billing-periods",
                              "Settle the month for every organisation (staff; idempotent)", {
                                  "200": json_response(ref("BillingPeriodClosed")),
                                  **errors(400, 403)}),
        },
        "/api/billing-periods/{period}/reopen/": {
            "parameters": [path("period", PERIOD)],
            "post": operation("billing_periods_reopen", "billing-periods",
                              "Re-open the latest closed month, reversing its settlement "
                              "(staff)", {"200": json_response(ref("BillingPeriodReopened")),
                                          **errors(400, 403)}),
        },
        "/api/reconciliation/": {"get": operation(
            "reconciliation_retrieve", "reconciliation",
            "A month's reconciliation per credit (staff): opening + movements = closing", {
                "200": {"description": "The report (JSON first: generated clients read "
                                       "JSON here and use reconciliation_csv_retrieve "
                                       "for CSV)",
                        "headers": RECONCILIATION_HEADERS,
                        "content": {"application/json": {"schema": ref("Reconciliation")},
                                    "text/csv": {"schema": STRING}}},
                **errors(400, 403)},
            parameters=[query("period", PERIOD, required=True), FORMAT_PARAM, BOM_PARAM])},
        "/api/reconciliation/csv/": {"get": operation(
            "reconciliation_csv_retrieve", "reconciliation",
            "The same report as CSV (staff)", {
                "200": {**text_response("text/csv", "The report: a line per credit and per "
                                                    "billing period, then subtotals per kind"),
                        "headers": RECONCILIATION_HEADERS},
                **errors(400, 403)},
            parameters=[query("period", PERIOD, required=True), BOM_PARAM])},
        "/api/reconciliation/usage/": {"get": operation(
            "reconciliation_usage_retrieve", "reconciliation",
            "Usage of a billing period wherever it was recorded, and whether it is closed "
            "(staff)", {
                "200": {"description": "JSON, or CSV with format=csv",
                        "content": {"application/json": {"schema": ref("Usage")},
                                    "text/csv": {"schema": STRING}}},
                **errors(400, 403)},
            parameters=[query("period", PERIOD, "The billing period.", required=True),
                        FORMAT_PARAM, BOM_PARAM])},
        "/api/customer-credits/{uuid}/statement/": {
            "parameters": [param_ref("Uuid")],
            "get": operation(
                "customer_credits_statement", "customer-credits",
                "A month's statement of the organisation credit (staff, support, owners)", {
                    "200": {"description": "JSON, or CSV with format=csv",
                            "content": {"application/json": {"schema": ref("Statement")},
                                        "text/csv": {"schema": STRING}}},
                    **errors(400, 403, 404)},
                parameters=[query("period", PERIOD, required=True), FORMAT_PARAM,
                            BOM_PARAM])},
    }
    tx_params = [
        query("credit_uuid", uuid_filter), query("customer_uuid", uuid_filter),
        query("project_credit_uuid", uuid_filter), query("project_uuid", STRING),
        query("transaction_type", STRING), query("billing_period", DATE),
        query("billing_period_after", DATE), query("billing_period_before", DATE),
        query("created_from", MOMENT, "Recorded at or after (ISO 8601; UTC without a zone)"),
        query("created_to", MOMENT, "Recorded before (ISO 8601; UTC without a zone)"),
        ordering({"type": "string", "enum": [
            "-billing_period", "-created", "billing_period", "created"]}),
        *PAGINATION,
    ]
    tx_list = json_response(array(ref("CreditTransaction")), headers=LIST_HEADERS)
    paths["/api/credit-transactions/"] = {
        "get": operation("credit_transactions_list", "credit-transactions",
                         "Every balance change of every visible credit, newest first", {
                             "200": tx_list, **errors(400, 404)}, parameters=tx_params),
        "head": operation("credit_transactions_count", "credit-transactions",
                          "Count (headers only)", {
                              "200": {"description": "No response body",
                                      "headers": LIST_HEADERS}, **errors(400, 404)},
                          parameters=tx_params),
    }
    return paths


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


def document() -> Json:
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
        "paths": with_head(_paths()),
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "securitySchemes": {"tokenAuth": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <key>`"}},
        },
    }


class OpenApiSchema:
    """GET /api/schema/: this document; anonymous callers allowed."""

    def __init__(self) -> None:
        self.document = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
