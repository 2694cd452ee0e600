"""The OpenAPI vocabulary every resource declares its routes with.

Schema builders (`obj`, `array`, `nullable`, `ref`), the value types served (MONEY, HEX_UUID,
PERIOD, ...), the parameters and error responses shared across resources (components), and
`operation()`, which adds what every operation answers (401/503 when authenticated, 400s for
bodies, 409/422 for keyed POSTs). A resource module states its routes with these next to its
handlers (api/http/routes.py); api/http/openapi.py assembles the document.
"""

from __future__ import annotations

from typing import Any

from api.http import fields

Json = dict[str, Any]

MONEY_PATTERN = r"^-?[0-9]+\.[0-9]{5}$"
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
HEX_UUID_PATTERN = r"^[0-9a-f]{32}$"

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
# A uuid as a filter or path accepts hyphens too (Waldur's StringUUID).
UUID_FILTER: Json = {"type": "string", "format": "uuid"}
MONEY = {"type": "string", "format": "decimal", "pattern": MONEY_PATTERN,
         "description": "Money: a decimal string with 5 places."}
GRACE = fields.GRACE.schema
PERIOD = fields.PERIOD.schema
MOMENT = {"type": "string", "format": "date-time"}


def read_only(schema: Json) -> Json:
    return {**schema, "readOnly": True}


def offering_schema(description: str) -> Json:
    """An offering, as the directory serves it and as credits nest it."""
    return obj({"uuid": read_only(HEX_UUID), "url": read_only(URI),
                "type": {"type": "string", "maxLength": 100}, "name": STRING},
               ["uuid", "url", "type", "name"], description)


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


def ordering_parameter(key: Json) -> Json:
    """`o=-value,project_name`: comma-separated keys, `-` for descending."""
    return {**query("o", array(key), "Ordering"), "style": "form", "explode": False}


def param_ref(name: str) -> Json:
    return {"$ref": f"#/components/parameters/{name}"}


PARAMETERS: Json = {
    "Page": query("page", INTEGER, "A page number within the paginated result set."),
    # DRF takes anything here: what is not a positive integer means the default.
    "PageSize": query("page_size", {"anyOf": [INTEGER, STRING]},
                      "Number of results to return per page (default 10, at most 300)."),
    "Uuid": path("uuid", UUID_FILTER),
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


def json_body(schema: Json, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def operation(operation_id: str, tag: str, summary: str, responses: Json, *,
              parameters: list[Json] | None = None, body: Json | None = None,
              public: bool = False) -> Json:
    """One operation; authenticated ones get 401 and 503 (the database is down), bodies
    400/408/413/415, POSTs Idempotency-Key."""
    op: Json = {"operationId": operation_id, "tags": [tag], "summary": summary}
    params = list(parameters or [])
    if operation_id.endswith(("_create", "_close", "_reopen")):
        params.append(param_ref("IdempotencyKey"))
        responses = {**errors(409, 422), **responses}
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
