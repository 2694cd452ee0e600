"""Directory endpoints: customers, projects and offerings (staff writes, scoped reads)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Connection, Select, false, or_, select

from api.http import fields
from api.http.common import Resource, apply_uuid_filter, base_url, parse_uuid, request_body
from api.http.errors import not_found, permission_denied
from api.http.forms import Field, object_schema, validate, with_checks
from api.http.listing import ListQuery, last_param, narrowed, paginate
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    HEX_UUID,
    LIST_HEADERS,
    MONEY,
    PAGINATION,
    STRING,
    URI,
    UUID_FILTER,
    Json,
    array,
    errors,
    json_body,
    json_response,
    nullable,
    obj,
    offering_schema,
    operation,
    param_ref,
    query,
    read_only,
    ref,
)
from api.resources.representations import link, money_or_none
from ledger.access import Principal
from projections.search import icontains
from projections.tables import customer_credits, customers, offerings, project_credits, projects


def slugify(name: str) -> str:
    """Django's slugify: ASCII, lower case, hyphens for runs of spaces."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_") or "item"


NAME = fields.string(500)
SLUG = fields.string(500)
CUSTOMER_FIELDS = [Field("name", NAME, required=True), Field("slug", SLUG)]
# The customer's existence is checked per request.
PROJECT_FIELDS = [Field("name", NAME, required=True), Field("slug", SLUG),
                  Field("customer", fields.hyperlink("/api/customers/"), required=True)]
OFFERING_FIELDS = [Field("name", NAME, required=True),
                   Field("type", fields.string(100), required=True)]


def directory_routes(collection: str, tag: str, schema: str, request: str,
                     filters: list[Json], delete: Json | None = None) -> list[Route]:
    """List, count, register (staff) and retrieve; projects add their termination."""
    prefix = collection.replace("-", "_")
    listing = json_response(array(ref(schema)), headers=LIST_HEADERS)
    name = query("name", STRING, "Name contains (case-insensitive)")
    item: Json = {
        "parameters": [param_ref("Uuid")],
        "get": operation(f"{prefix}_retrieve", tag, "Retrieve", {
            "200": json_response(ref(schema)), **errors(404)}),
    }
    if delete is not None:
        item["delete"] = delete
    return [
        Route(f"/api/{collection}/", {
            "get": operation(f"{prefix}_list", tag, f"List {tag}", {
                "200": listing, **errors(400, 404)},
                parameters=[name, *filters, *PAGINATION]),
            "head": operation(f"{prefix}_count", tag, "Count (headers only)", {
                "200": {"description": "No response body", "headers": LIST_HEADERS},
                **errors(400, 404)}, parameters=[name, *filters, *PAGINATION]),
            "post": operation(f"{prefix}_create", tag, "Register (staff)", {
                "201": json_response(ref(schema), "Created"), **errors(403)},
                body=json_body(ref(request))),
        }),
        Route(f"/api/{collection}/{{uuid}}/", item, suffix="item"),
    ]


TERMINATE = operation(
    "projects_destroy", "projects", "Terminate the project (staff or customer owner): its "
    "credit goes to 0, written off or back to the pool", {
        "204": {"description": "No response body"}, **errors(400, 403, 404, 409)})


class _Directory(Resource):
    """List, retrieve and staff-only create, shared by the three directory nouns."""

    table: Any
    collection: str
    not_found_message: str

    def visible(self, principal: Principal) -> Select[Any]:
        raise NotImplementedError

    def represent(self, conn: Connection, base: str, rows: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = self.listed(req, self.principal(req))
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: ListQuery(query, narrow=narrowed(req)))
            resp.media = self.represent(conn, base_url(req), page.rows)

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = self.listed(req, self.principal(req))
        with self.services.reads.connect() as conn:
            paginate(conn, req, resp, lambda: ListQuery(query, narrow=narrowed(req)), rows=False)

    def listed(self, req: falcon.Request, principal: Principal) -> Select[Any]:
        """What GET lists and HEAD counts: the visible rows, `name` and the filters."""
        query = self.visible(principal)
        if name := last_param(req, "name"):
            query = query.where(icontains(self.table.c.name, name))
        query = query.order_by(self.table.c.created, self.table.c.uuid)
        return self.filter(req, query)

    def filter(self, req: falcon.Request, query: Select[Any]) -> Select[Any]:
        return query

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        resp.media = self.one(req, self.principal(req), parse_uuid(uuid).hex)

    def one(self, req: falcon.Request, principal: Principal, uuid: str) -> dict[str, Any]:
        with self.services.reads.connect() as conn:
            row = conn.execute(self.visible(principal).where(self.table.c.uuid == uuid)).first()
            if row is None:
                raise not_found(self.not_found_message)
            return self.represent(conn, base_url(req), [row])[0]

    def created(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
                new_id: UUID) -> None:
        self.settle_reads()
        resp.status = falcon.HTTP_201
        resp.media = self.one(req, principal, new_id.hex)


class Customers(_Directory):
    table = customers
    collection = "customers"
    not_found_message = "No Customer matches the given query."
    routes = directory_routes("customers", "customers", "Customer", "CustomerRequest", [])
    schemas = {
        "Customer": obj({
            "uuid": read_only(HEX_UUID), "url": read_only(URI), "name": STRING,
            "slug": STRING, "customer_credit": read_only(nullable(MONEY)),
            "customer_unallocated_credit": read_only(nullable(MONEY)),
        }, ["uuid", "url", "name", "slug", "customer_credit", "customer_unallocated_credit"]),
        "CustomerRequest": object_schema(CUSTOMER_FIELDS),
    }

    def visible(self, principal: Principal) -> Select[Any]:
        query = select(customers)
        if principal.sees_everything:
            return query
        via_projects = select(projects.c.customer_uuid).where(
            projects.c.uuid.in_(principal.project_uuids()))
        return query.where(or_(customers.c.uuid.in_(principal.customer_uuids()),
                               customers.c.uuid.in_(via_projects)))

    def represent(self, conn: Connection, base: str, rows: list[Any]) -> list[dict[str, Any]]:
        uuids = [row.uuid for row in rows]
        credits = {r.customer_uuid: r.value for r in conn.execute(
            select(customer_credits.c.customer_uuid, customer_credits.c.value).where(
                customer_credits.c.customer_uuid.in_(uuids),
                customer_credits.c.deleted == false()))}
        allocated: dict[str, Any] = {}
        for r in conn.execute(select(project_credits.c.customer_uuid, project_credits.c.value)
                              .where(project_credits.c.customer_uuid.in_(uuids),
                                     project_credits.c.deleted == false())):
            allocated[r.customer_uuid] = allocated.get(r.customer_uuid, 0) + r.value
        return [{
            "uuid": row.uuid, "url": link(base, "customers", row.uuid), "name": row.name,
            "slug": row.slug,
            "customer_credit": money_or_none(credits.get(row.uuid)),
            "customer_unallocated_credit": money_or_none(
                credits[row.uuid] - allocated.get(row.uuid, 0) if row.uuid in credits else None),
        } for row in rows]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.staff(req)
        values = validate(request_body(req), CUSTOMER_FIELDS)
        new_id = self.services.ledger.register_customer(
            values["name"], values.get("slug") or slugify(values["name"]), principal.actor)
        self.created(req, resp, principal, new_id)


class Projects(_Directory):
    table = projects
    collection = "projects"
    not_found_message = "No Project matches the given query."
    routes = directory_routes("projects", "projects", "Project", "ProjectRequest",
                              [query("customer_uuid", UUID_FILTER)],
                              delete=TERMINATE)
    schemas = {
        "Project": obj({
            "uuid": read_only(HEX_UUID), "url": read_only(URI), "name": STRING,
            "slug": STRING, "customer": URI, "customer_uuid": read_only(HEX_UUID),
            "customer_name": read_only(STRING), "project_credit": read_only(nullable(MONEY)),
            "is_terminated": read_only(BOOLEAN),
        }, ["uuid", "url", "name", "slug", "customer", "customer_uuid", "customer_name",
            "project_credit", "is_terminated"]),
        "ProjectRequest": object_schema(PROJECT_FIELDS),
    }

    def visible(self, principal: Principal) -> Select[Any]:
        query = select(projects, customers.c.name.label("customer_name")).join(
            customers, customers.c.uuid == projects.c.customer_uuid)
        if principal.sees_everything:
            return query
        return query.where(or_(projects.c.customer_uuid.in_(principal.customer_uuids()),
                               projects.c.uuid.in_(principal.project_uuids())))

    def filter(self, req: falcon.Request, query: Select[Any]) -> Select[Any]:
        return apply_uuid_filter(query, req, "customer_uuid", projects.c.customer_uuid)

    def represent(self, conn: Connection, base: str, rows: list[Any]) -> list[dict[str, Any]]:
        credits = {r.project_uuid: r.value for r in conn.execute(
            select(project_credits.c.project_uuid, project_credits.c.value).where(
                project_credits.c.project_uuid.in_([row.uuid for row in rows]),
                project_credits.c.deleted == false()))}
        return [{
            "uuid": row.uuid, "url": link(base, "projects", row.uuid), "name": row.name,
            "slug": row.slug, "customer": link(base, "customers", row.customer_uuid),
            "customer_uuid": row.customer_uuid, "customer_name": row.customer_name,
            "project_credit": money_or_none(credits.get(row.uuid)),
            "is_terminated": row.terminated,
        } for row in rows]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.staff(req)
        with self.services.reads.connect() as conn:
            def check_customer(customer_id: UUID) -> None:
                found = conn.execute(select(customers.c.uuid).where(
                    customers.c.uuid == customer_id.hex)).first()
                if found is None:
                    raise fields.FieldError("Invalid hyperlink - Object does not exist.")

            values = validate(request_body(req),
                              with_checks(PROJECT_FIELDS, customer=check_customer))
        new_id = self.services.ledger.register_project(
            values["name"], values.get("slug") or slugify(values["name"]), values["customer"],
            principal.actor)
        self.created(req, resp, principal, new_id)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Terminate the project: its credit goes to 0 (written off or back to the pool)."""
        principal = self.principal(req)
        project_uuid = parse_uuid(uuid).hex
        with self.services.reads.connect() as conn:
            row = conn.execute(self.visible(principal)
                               .where(projects.c.uuid == project_uuid)).first()
        if row is None:
            raise not_found(self.not_found_message)
        if not principal.is_owner(row.customer_uuid):
            raise permission_denied()
        self.services.ledger.terminate_project(UUID(row.uuid), principal.actor)
        self.settle_reads()
        resp.status = falcon.HTTP_204


class Offerings(_Directory):
    table = offerings
    collection = "marketplace-public-offerings"
    not_found_message = "No Offering matches the given query."
    routes = [*directory_routes("marketplace-public-offerings", "offerings", "Offering",
                                "OfferingRequest", []),
              *directory_routes("marketplace-provider-offerings", "offerings", "Offering",
                                "OfferingRequest", [])]
    schemas = {
        "Offering": offering_schema("A marketplace offering (public and provider routes "
                                    "alike)."),
        "OfferingRequest": object_schema(OFFERING_FIELDS),
    }

    def visible(self, principal: Principal) -> Select[Any]:
        return select(offerings)

    def represent(self, conn: Connection, base: str, rows: list[Any]) -> list[dict[str, Any]]:
        return [{"uuid": row.uuid, "url": link(base, self.collection, row.uuid),
                 "name": row.name, "type": row.type} for row in rows]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.staff(req)
        values = validate(request_body(req), OFFERING_FIELDS)
        new_id = self.services.ledger.register_offering(
            values["name"], values["type"], principal.actor)
        self.created(req, resp, principal, new_id)
