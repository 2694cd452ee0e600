"""What the two credit collections share: lists and counts (live or as of a moment)."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from contextlib import nullcontext
from typing import Any

import falcon
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Subquery,
    Table,
    UnaryExpression,
    bindparam,
)

from api.http import fields
from api.http.common import Resource, parse_uuid
from api.http.errors import not_found
from api.http.forms import Field
from api.http.freshness import confirm, read_confirmed
from api.http.listing import (
    STATEMENTS,
    ListQuery,
    last_param,
    narrowed,
    ordering,
    paginate,
    params_key,
)
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATE,
    DECIMAL_PATTERN,
    ETAG,
    GRACE,
    LIST_HEADERS,
    MONEY,
    PAGINATION,
    STRING,
    UUID_FILTER,
    Json,
    array,
    errors,
    json_body,
    json_response,
    nullable,
    operation,
    ordering_parameter,
    param_ref,
    query,
    read_only,
    ref,
)
from api.resources import history
from api.server.wiring import Services
from ledger import thresholds
from ledger.access import Principal
from ledger.errors import RuleViolation
from projections.log_end_cache import LogEndCache
from projections.queries import listed_count, plain_rows
from projections.runway import last_closed_periods, with_runways

CUSTOMER_FILTERS = [query("customer_name", STRING), query("customer_slug", STRING),
                    query("customer_uuid", UUID_FILTER)]
SEARCH = query("query", STRING, "Names, slugs and uuids contain (case-insensitive)")


def names(parameters: list[Json]) -> tuple[str, ...]:
    return tuple(parameter["name"] for parameter in parameters)


def ordering_enum(orderings: Mapping[str, Any]) -> Json:
    """The `o` keys as an enum: each key, ascending or descending (`-`)."""
    return {"type": "string", "enum": sorted([*orderings, *(f"-{key}" for key in orderings)])}


def credit_routes(collection: str, *, item: str, created: str, request: str, updated: str,
                  patched: str, filters: list[Json], o_enum: str, writers: str) -> list[Route]:
    """Upstream's list/create/count and retrieve/update/partial/destroy for one credit kind."""
    tag, prefix = collection, collection.replace("-", "_")
    list_params = [*filters, ordering_parameter(ref(o_enum)), *PAGINATION, param_ref("AsOf")]
    listing = json_response(array(ref(item)), headers=LIST_HEADERS)
    written = json_response(ref(created), headers=ETAG)
    return [
        Route(f"/api/{collection}/", {
            "get": operation(f"{prefix}_list", tag, f"List {tag}", {
                "200": listing, **errors(400, 404)}, parameters=list_params),
            "head": operation(f"{prefix}_count", tag, "Count (headers only)", {
                "200": {"description": "No response body", "headers": LIST_HEADERS},
                **errors(400, 404)}, parameters=list_params),
            "post": operation(f"{prefix}_create", tag, f"Create ({writers})", {
                "201": json_response(ref(created), "Created", ETAG), **errors(403)},
                body=json_body(ref(request))),
        }),
        Route(f"/api/{collection}/{{uuid}}/", {
            "parameters": [param_ref("Uuid")],
            "get": operation(f"{prefix}_retrieve", tag, "Retrieve (an ETag unless as_of)", {
                "200": json_response(ref(item), headers=ETAG), **errors(400, 404)},
                parameters=[param_ref("AsOf")]),
            "put": operation(f"{prefix}_update", tag, f"Update ({writers})", {
                "200": written, **errors(403, 404, 409, 412)},
                parameters=[param_ref("IfMatch")], body=json_body(ref(updated))),
            "patch": operation(f"{prefix}_partial_update", tag, f"Partial update ({writers})", {
                "200": written, **errors(403, 404, 409, 412)},
                parameters=[param_ref("IfMatch")],
                body=json_body(ref(patched), required=False)),
            "delete": operation(f"{prefix}_destroy", tag, f"Delete ({writers})", {
                "204": {"description": "No response body"}, **errors(403, 404, 409, 412)},
                parameters=[param_ref("IfMatch")]),
        }, suffix="item"),
    ]


def terms_schema() -> Json:
    """BaseCredit's terms, as served."""
    return {
        "end_date": nullable({**DATE, "description": "The 1st of a month: the exclusive end "
                                                     "of coverage."}),
        "expected_consumption": MONEY,
        "minimal_consumption": read_only({
            "type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN,
            "description": "The monthly floor; a raw decimal, upstream's arithmetic scale."}),
        "minimal_consumption_logic": ref("MinimalConsumptionLogicEnum"),
        "grace_coefficient": GRACE,
        "apply_as_minimal_consumption": BOOLEAN,
    }


THRESHOLD_PATTERN = (r"^(?:(?:100(?:\.0{1,5})?|[1-9]?[0-9](?:\.[0-9]{1,5})?)%"
                     r"|(?:0|[1-9][0-9]{0,10})(?:\.[0-9]{1,5})?)$")
_THRESHOLD = re.compile(THRESHOLD_PATTERN)


def _thresholds(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        raise fields.FieldError('Expected a list of items but got type "'
                                f'{type(raw).__name__}".')
    if len(raw) > thresholds.MAX_THRESHOLDS:
        raise fields.FieldError(f"Ensure this field has no more than "
                                f"{thresholds.MAX_THRESHOLDS} elements.")
    for item in raw:
        if not isinstance(item, str) or not _THRESHOLD.match(item):
            raise fields.FieldError(f"{item!r} is not an amount (\"100.5\") or a percentage "
                                    "of the granted value (\"10%\").")
    try:
        return thresholds.normalised(raw)
    except RuleViolation as error:
        raise fields.FieldError(error.message) from None


THRESHOLDS = Field("low_balance_thresholds", fields.Typed(_thresholds, {
    "type": "array", "maxItems": thresholds.MAX_THRESHOLDS,
    "items": {"type": "string", "pattern": THRESHOLD_PATTERN}}),
    description="Balances below which the credit's subscribers are told "
                "(credit.balance_low): amounts, or percentages of the value granted so far; "
                "0 is reported as credit.exhausted.")


def alerting_schema() -> Json:
    """The fields beyond upstream's credit: thresholds as stored, and the runway."""
    return {
        "low_balance_thresholds": THRESHOLDS.schema,
        "runway_months": read_only(nullable({
            "type": "number", "description": "The balance over the average monthly "
            "consumption of the last (up to three) closed billing periods; null when none."})),
    }


def visibility_key(principal: Principal) -> Hashable:
    """What a principal may see, as far as a statement over the credits depends on it."""
    if principal.sees_everything:
        return "everything"
    return tuple(principal.customer_uuids()), tuple(principal.project_uuids())


class CreditCollection(Resource):
    """GET and HEAD over the filtered credits, and PUT/PATCH routed to one update."""

    table: Table
    not_found_message: str
    orderings: Mapping[str, ColumnElement[Any]]  # the `o` keys
    default_order: list[UnaryExpression[Any]]  # after them, and alone without `o`
    filters: tuple[str, ...]  # query parameters that narrow the list
    routes: list[Route]
    schemas: Json  # the OpenAPI components this collection owns

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.closed_periods: LogEndCache[str, list[str]] = LogEndCache(1)  # runway months
        self.item_path = next(route.path for route in self.routes if route.suffix == "item")

    def reads_log_end_itself(self, req: falcon.Request) -> bool:
        """A retrieve reads the log's end beside its row (`_visible_row`), so it may be let
        through unconfirmed (api/http/freshness.py)."""
        return (req.method == "GET" and req.uri_template == self.item_path
                and not history.wants_as_of(req))

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        resp.media = read_confirmed(req.context, lambda: self._retrieve(req, resp, uuid))

    def _retrieve(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> Any:
        principal = self.principal(req)
        credit_uuid = parse_uuid(uuid, self.not_found_message).hex
        if history.wants_as_of(req):
            return self._retrieved_as_of(req, principal, credit_uuid)
        return self._retrieved(req, resp, principal, credit_uuid)

    def _retrieved(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
                   credit_uuid: str) -> Any:
        """One credit as its retrieve shows it (read through `_visible_row`)."""
        raise NotImplementedError

    def _retrieved_as_of(self, req: falcon.Request, principal: Principal,
                         credit_uuid: str) -> Any:
        """One credit as its retrieve showed it at `?as_of=`."""
        raise NotImplementedError

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if history.wants_as_of(req):
            resp.media = self._as_of(req, resp, principal)
            return
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: self._list_query(req, principal),
                            cache_key=self._statement_key(req, principal))
            resp.media = self._list_page(conn, req, principal, page.rows)

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if history.wants_as_of(req):
            self._as_of(req, resp, principal)
            return
        with self.services.reads.connect() as conn:
            paginate(conn, req, resp, lambda: self._list_query(req, principal), rows=False,
                     cache_key=self._statement_key(req, principal))

    def _list_query(self, req: falcon.Request, principal: Principal) -> ListQuery:
        return ListQuery(self._filtered(req, principal), self._maintained_total(req, principal),
                         self._decorate, self._order(req), narrowed(req))

    def _order(self, req: falcon.Request) -> list[UnaryExpression[Any]]:
        return ordering(req, self.orderings, self.default_order)

    def _statement_key(self, req: falcon.Request, principal: Principal) -> Hashable:
        """Everything a list's statements depend on: the query string, the month, and
        what the caller may see (staff and support alike see everything)."""
        return (type(self).__name__, params_key(req), self.services.today(),
                visibility_key(principal))

    def _maintained_total(self, req: falcon.Request, principal: Principal) -> Select[Any] | None:
        """Everything listed, unfiltered, for staff and support: the maintained count."""
        if not principal.sees_everything or any(last_param(req, name) for name in self.filters):
            return None
        return listed_count(self.table)

    def _decorate(self, rows: Subquery) -> Select[Any]:
        """The rows (a page, or one credit) with what their views need beside the row."""
        raise NotImplementedError

    def on_put_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self._update(req, resp, uuid, partial=False)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self._update(req, resp, uuid, partial=True)

    def _with_runways(self, conn: Connection, views: list[dict[str, Any]]) -> None:
        """Each view's runway, over the months closed as of this request's log position."""
        periods = self.closed_periods.get("last", self.services.projector.log_end,
                                          lambda: last_closed_periods(conn))
        with_runways(conn, views, periods)

    def _visible_row(self, principal: Principal, uuid: str, conn: Connection | None = None,
                     context: Any = None) -> Any:
        """The live credit if the caller may see it; 404 otherwise (also for bad uuids).

        Read with the log's end beside it, which confirms a request's `context` let through
        unconfirmed, or raises LogEndMoved for the request to be read again."""
        credit_uuid = parse_uuid(uuid, self.not_found_message).hex
        # The uuid is bound at execution: one statement per caller's view, not one per
        # credit (a cached statement per credit held ~60 KB: issue 18's workers grew by
        # 120 MB fetching random credits and organisations).
        log_end = self.services.projector.log_end_column  # names this store's events table
        key = (type(self).__name__, "one", self.services.today(), visibility_key(principal),
               log_end)
        statement = STATEMENTS.get(key, lambda: self._decorate(self._select(principal).where(
            self.table.c.uuid == bindparam("credit_uuid")).subquery("one")).add_columns(
            log_end.label("log_end")))
        with nullcontext(conn) if conn is not None else self.services.reads.connect() as reading:
            found = plain_rows(reading.execute(statement, {"credit_uuid": credit_uuid}))
        confirm(context, found[0].log_end if found else None)
        if not found:
            raise not_found(self.not_found_message)
        return found[0]

    def _select(self, principal: Principal) -> Select[Any]:
        raise NotImplementedError

    def _filtered(self, req: falcon.Request, principal: Principal,
                  base: Select[Any] | None = None) -> Any:
        raise NotImplementedError

    def _as_of(self, req: falcon.Request, resp: falcon.Response,
               principal: Principal) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _list_page(self, conn: Connection, req: falcon.Request, principal: Principal,
                   rows: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _update(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                partial: bool) -> None:
        raise NotImplementedError
