"""POST /api/consumptions/ (a batch, idempotent per item id), GET and DELETE one item."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Connection, and_, bindparam, false, select

from api.http import fields
from api.http.common import Resource, request_body
from api.http.errors import ApiError, not_found, validation_error
from api.http.forms import Field, expect_object, object_schema, validate, with_checks
from api.http.listing import paginate
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    HEX_UUID,
    MONEY,
    STRING,
    array,
    errors,
    json_body,
    json_response,
    obj,
    operation,
    path,
    ref,
)
from api.resources import consumption_items as items
from api.resources.representations import iso_datetime
from ledger.consumption import ConsumptionItem
from ledger.errors import ItemIdReversed, ItemIdTaken
from ledger.money import format_money
from ledger.periods import Period
from ledger.posting import ConsumptionInput, ConsumptionResult, ProjectLinks
from projections.tables import consumptions, customers, offerings, project_credits, projects

MAX_ITEMS = 1000
# Built once, their lists bound at execution: statements are walked for a cache key per build.
RECORDED_IDS = select(consumptions.c.item_id).where(
    consumptions.c.item_id.in_(bindparam("ids", expanding=True)))
# The batch's projects: whether each is live, and what it leads to (a guess for posting).
PROJECTS_AND_LINKS = (
    select(projects.c.uuid, projects.c.terminated, projects.c.customer_uuid,
           customers.c.credit_uuid.label("customer_credit_uuid"),
           project_credits.c.uuid.label("project_credit_uuid"))
    .outerjoin(customers, customers.c.uuid == projects.c.customer_uuid)
    .outerjoin(project_credits, and_(project_credits.c.project_uuid == projects.c.uuid,
                                     project_credits.c.deleted == false()))
    .where(projects.c.uuid.in_(bindparam("uuids", expanding=True))))


# One item of a batch; whether its project and offering exist (and the project is live)
# and whether its period has started are checked per request (_fields).
ITEM_FIELDS = [
    Field("id", fields.path_segment(255), required=True,
          description="The caller's key; posting it again draws nothing more."),
    Field("project", fields.hyperlink("/api/projects/"), required=True),
    Field("offering", fields.hyperlink("/api/marketplace-public-offerings/",
                                       "/api/marketplace-provider-offerings/"),
          allow_null=True),
    Field("amount", fields.MONEY, required=True),
    Field("period", fields.PERIOD, required=True),
]


RESULT = array(ref("ConsumptionResult"))


class Consumptions(Resource):
    routes = [
        Route("/api/consumptions/", {**items.LIST_OPERATIONS, "post": operation(
            "consumptions_create", "consumptions",
            "Post a batch of cost items (staff); validated whole, applied cheapest first", {
                "201": json_response(RESULT, "Drawn"),
                "200": json_response(RESULT, "Every item was posted before: the original "
                                             "results"),
                "409": json_response(ref("ConsumptionConflict"), "Refused"),
                **errors(403)},
            body=json_body({**array(ref("ConsumptionItemRequest")), "minItems": 1,
                            "maxItems": MAX_ITEMS}))}),
        Route("/api/consumptions/{item_id}/", {
            "parameters": [path("item_id", STRING)],
            "get": operation("consumptions_retrieve", "consumptions",
                             "Retrieve (whoever sees the project's credit)", {
                                 "200": json_response(ref("ConsumptionItem")),
                                 **errors(403, 404)}),
            "delete": operation("consumptions_destroy", "consumptions",
                                "Reverse the item while its period is open (staff)", {
                                    "204": {"description": "No response body"},
                                    **errors(403, 404, 409)}),
        }, suffix="item"),
    ]
    schemas = {
        "ConsumptionItemRequest": {**object_schema(ITEM_FIELDS),
                                   "description": "A cost item, net of tax."},
        "ConsumptionResult": obj({
            "id": STRING, "project_uuid": HEX_UUID, "amount": MONEY,
            "drawn_from_project_credit": MONEY, "drawn_from_customer_credit": MONEY,
            "uncovered": MONEY, "replayed": BOOLEAN,
        }, ["id", "project_uuid", "amount", "drawn_from_project_credit",
            "drawn_from_customer_credit", "uncovered", "replayed"]),
        "ConsumptionItem": items.SCHEMA,
        "ConsumptionConflict": obj({
            "detail": STRING,
            "recorded": ref("ConsumptionItem"),  # as GET /api/consumptions/{id}/ shows it
            "reversed_at": {**DATETIME, "description": "An id re-posted after its reversal: "
                                                       "when it was reversed (UTC)."},
            "reversed_by": {**STRING, "description": "Who reversed it (username)."},
        }, ["detail"], "A closed billing period, or an item id that already means something "
                       "else: ids mean one thing forever."),
    }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.staff(req)
        with self.services.reads.connect() as conn:
            batch, named = self._validate(conn, request_body(req))
        try:
            results = self.services.ledger.post_consumption(
                batch, principal.actor, known=self.recorded_item_ids,
                project_links={UUID(uuid): _links(row) for uuid, row in named.items()})
        except ItemIdTaken as error:
            raise ApiError(409, {"detail": error.message,
                                 "recorded": recorded_item(error.item)}) from None
        except ItemIdReversed as error:
            raise ApiError(409, {"detail": error.message,
                                 "reversed_at": iso_datetime(error.reversed_at),
                                 "reversed_by": error.reversed_by}) from None
        self.settle_reads()
        resp.status = falcon.HTTP_200 if all(r.replayed for r in results) else falcon.HTTP_201
        resp.media = [_result(r) for r in results]

    def recorded_item_ids(self, item_ids: Sequence[str]) -> set[str]:
        """Which of the ids the consumptions read model knows: one query per batch."""
        with self.services.engine.connect() as conn:
            return {row[0] for row in conn.execute(RECORDED_IDS, {"ids": list(item_ids)})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: items.listed(req, principal))
        resp.media = [items.representation(row) for row in page.rows]

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            paginate(conn, req, resp, lambda: items.listed(req, principal), rows=False)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            row = None if "\x00" in item_id else conn.execute(  # no such id can be posted
                items.visible(principal).where(consumptions.c.item_id == item_id)).first()
        if row is None:
            raise not_found(items.NOT_FOUND)
        resp.media = items.representation(row)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        principal = self.staff(req)
        if self.services.ledger.find_consumption(item_id) is None:
            raise not_found(items.NOT_FOUND)
        self.services.ledger.reverse_consumption(item_id, principal.actor)
        self.settle_reads()
        resp.status = falcon.HTTP_204

    def _validate(self, conn: Connection,
                  body: Any) -> tuple[list[ConsumptionInput], dict[str, Any]]:
        """The whole batch is checked before anything is drawn; errors are per item.
        Returns it with the rows of the projects it names, by uuid hex."""
        if not isinstance(body, list):
            kind = "dict" if isinstance(body, dict) else type(body).__name__
            raise validation_error(
                {"non_field_errors": [f'Expected a list of items but got type "{kind}".']})
        if not body:
            raise validation_error({"non_field_errors": ["This list may not be empty."]})
        if len(body) > MAX_ITEMS:
            raise validation_error(
                {"non_field_errors": [f"Ensure this list has at most {MAX_ITEMS} items."]})
        named = _named_projects(conn, body)
        item_fields = self._fields(conn, named)
        replays = self._recorded_on_terminated_projects(body, named)
        replay_fields = self._fields(conn, named, terminated_ok=True) if replays else []
        errors: list[dict[str, Any]] = []
        cleaned: list[dict[str, Any]] = []
        seen: set[str] = set()
        for raw in body:
            try:
                item_id = raw.get("id") if isinstance(raw, dict) else None
                replayed = isinstance(item_id, str) and item_id in replays
                values = validate(expect_object(raw), replay_fields if replayed else item_fields)
                if values["id"] in seen:
                    raise validation_error({"id": ["Duplicate id in this request."]})
                seen.add(values["id"])
                cleaned.append(values)
                errors.append({})
            except ApiError as error:
                errors.append(error.body)
        if any(errors):
            raise validation_error(errors)
        return [ConsumptionInput(v["id"], v["project"], v.get("offering"), v["amount"],
                                 v["period"]) for v in cleaned], named

    def _recorded_on_terminated_projects(self, body: list[Any],
                                         named: dict[str, Any]) -> set[str]:
        """Ids of items naming a terminated project that are recorded already: an id means
        one thing forever, so their re-post is the ledger's to answer (a replay of the
        first answer, or 409), not a 400 about a project that ended since. The event
        store is asked, and only when a terminated project is named."""
        if not any(row.terminated for row in named.values()):
            return set()  # the common case: no second pass over the links
        ids = []
        for raw in body:
            try:
                project, item_id = PROJECT_LINK(raw["project"]), raw["id"]
            except (TypeError, KeyError, fields.FieldError):
                continue
            row = named.get(project.hex)
            if row is not None and row.terminated and isinstance(item_id, str):
                ids.append(item_id)
        return set(self.services.ledger.find_consumptions(ids)) if ids else set()

    def _fields(self, conn: Connection, named: dict[str, Any],
                terminated_ok: bool = False) -> list[Field]:
        """The projects the items name are looked up in one query, each offering once
        per request, however many items name it."""
        # Why at the edge: the ledger refuses these too (NotFound, rules in ledger/); the
        # read model is asked first only so that the 400 names the field, as DRF does.
        def project_problem(project_id: UUID) -> str | None:
            if project_id.hex not in named:
                return "Invalid hyperlink - Object does not exist."
            if named[project_id.hex].terminated and not terminated_ok:
                return "The project is terminated."
            return None

        @cache
        def offering_exists(offering_id: UUID) -> bool:
            return conn.execute(select(offerings.c.uuid)
                                .where(offerings.c.uuid == offering_id.hex)).first() is not None

        def check_project(project_id: UUID) -> None:
            if (problem := project_problem(project_id)) is not None:
                raise fields.FieldError(problem)

        def check_offering(offering_id: UUID) -> None:
            if not offering_exists(offering_id):
                raise fields.FieldError("Invalid hyperlink - Object does not exist.")

        return with_checks(ITEM_FIELDS, project=check_project, offering=check_offering,
                           period=fields.started_by(Period.of(self.services.today())))


PROJECT_LINK = next(field.parse for field in ITEM_FIELDS if field.name == "project")


def _named_projects(conn: Connection, body: list[Any]) -> dict[str, Any]:
    """The projects the items link to (well-formed links only: the bad ones fail
    validation), by uuid hex, in one query; unknown ones are absent."""
    named: set[UUID] = set()
    for raw in body:
        try:
            named.add(PROJECT_LINK(raw["project"]))
        except (TypeError, KeyError, fields.FieldError):
            continue
    if not named:
        return {}
    rows = conn.execute(PROJECTS_AND_LINKS, {"uuids": [p.hex for p in named]})
    return {row.uuid: row for row in rows}


def _links(row: Any) -> ProjectLinks:
    return ProjectLinks(UUID(row.customer_uuid), _uuid(row.project_credit_uuid),
                        _uuid(row.customer_credit_uuid))


def _uuid(hex_or_none: str | None) -> UUID | None:
    return None if hex_or_none is None else UUID(hex_or_none)


def _result(result: ConsumptionResult) -> dict[str, Any]:
    return {
        "id": result.item_id,
        "project_uuid": result.project_id.hex,
        "amount": format_money(result.amount),
        "drawn_from_project_credit": format_money(result.drawn_from_project_credit),
        "drawn_from_customer_credit": format_money(result.drawn_from_customer_credit),
        "uncovered": format_money(result.uncovered),
        "replayed": result.replayed,
    }


def recorded_item(item: ConsumptionItem) -> dict[str, Any]:
    """The stored item, shown as GET shows it (the read model may not have it yet)."""
    return items.representation(SimpleNamespace(
        **{name: getattr(item, name) for name in (
            "item_id", "period", "amount", "drawn_from_project_credit",
            "drawn_from_customer_credit", "uncovered", "reversed")},
        customer_uuid=item.customer_id.hex, project_uuid=item.project_id.hex,
        offering_uuid=hex_or_none(item.offering_id),
        project_credit_uuid=hex_or_none(item.project_credit_id),
        customer_credit_uuid=hex_or_none(item.customer_credit_id),
        reversed_at=None, reversed_by=None, created=item.created_on))


def hex_or_none(found: UUID | None) -> str | None:
    return found.hex if found else None
