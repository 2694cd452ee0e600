"""/api/project-credits/: upstream's ProjectCreditViewSet, served from the read models."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Connection, Select, Subquery, false, or_, select

from api.http import fields
from api.http.common import (
    apply_exact_filter,
    apply_uuid_filter,
    base_url,
    if_match,
    request_body,
    set_etag,
)
from api.http.errors import permission_denied
from api.http.forms import Field, object_schema, validate, with_checks
from api.http.listing import last_param
from api.http.schema import (
    BOOLEAN,
    HEX_UUID,
    MONEY,
    STRING,
    URI,
    UUID_FILTER,
    Json,
    array,
    nullable,
    obj,
    query,
    read_only,
    ref,
)
from api.resources import history
from api.resources.credit_collection import (
    CUSTOMER_FILTERS,
    SEARCH,
    THRESHOLDS,
    CreditCollection,
    alerting_schema,
    credit_routes,
    names,
    ordering_enum,
    terms_schema,
)
from api.resources.representations import project_credit
from ledger.access import Principal
from ledger.money import ZERO
from ledger.terms import LOGICS, TERM_NAMES, Terms
from projections.queries import (
    project_credit_select,
    project_credit_views,
    with_organisation_figures,
)
from projections.search import icontains
from projections.tables import project_credits, projects

NOT_FOUND = "No ProjectCredit matches the given query."
ORDERING = {
    "project_name": project_credits.c.project_name,
    "value": project_credits.c.value,
    "end_date": project_credits.c.end_date,
    "expected_consumption": project_credits.c.expected_consumption,
}
DEFAULT_ORDER = [project_credits.c.created.asc(), project_credits.c.uuid.asc()]


MARK_UNUSED = "mark_unused_credit_as_spent_on_project_termination"
# The BaseCredit fields, in upstream's order after value and the owner link.
TERM_FIELDS = [
    Field("end_date", fields.date_field, allow_null=True,
          description="The 1st of a month: the exclusive end of coverage."),
    Field("expected_consumption", fields.MONEY),
    Field("minimal_consumption_logic", fields.choice(*LOGICS)),
    Field("grace_coefficient", fields.GRACE),
    Field("apply_as_minimal_consumption", fields.boolean),
]
def term_fields() -> list[Field]:
    return list(TERM_FIELDS)


# The request body of create and update; the project's existence, uniqueness and the
# caller's ownership of it are checked per request (_fields).
FIELDS = [
    Field("value", fields.MONEY),
    Field("project", fields.hyperlink("/api/projects/"), required=True),
    *TERM_FIELDS,
    Field(MARK_UNUSED, fields.boolean),
    Field("comment", fields.COMMENT, description="Why the value is set (recorded on the grant)."),
    THRESHOLDS,
]


FILTERS = [*CUSTOMER_FILTERS, query("project_name", STRING), query("project_uuid", UUID_FILTER),
           SEARCH]
OWNER_ONLY = ("customer_credit", "allocated_customer_credit", "offerings")
SERVED: Json = {
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
    **terms_schema(),
    MARK_UNUSED: BOOLEAN,
    **alerting_schema(),
}


class ProjectCredits(CreditCollection):
    table = project_credits
    not_found_message = NOT_FOUND
    orderings = ORDERING
    default_order = DEFAULT_ORDER
    filters = names(FILTERS)
    routes = credit_routes(
        "project-credits", item="ProjectCredit", created="ProjectCredit",
        request="ProjectCreditRequest", updated="ProjectCreditRequest",
        patched="PatchedProjectCreditRequest", filters=FILTERS, o_enum="ProjectCreditOEnum",
        writers="customer owners and staff")
    schemas = {
        "ProjectCreditOEnum": ordering_enum(ORDERING),
        "ProjectCredit": obj(SERVED, [name for name in SERVED if name not in OWNER_ONLY]),
        "ProjectCreditRequest": object_schema(FIELDS),
        "PatchedProjectCreditRequest": object_schema(FIELDS, partial=True),
    }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if (recorded := self.services.ledger.executed()) is not None:
            credit_id = recorded.result  # a keyed retry: the credit is there, as is its key
        else:
            with self.services.reads.connect() as conn:
                values = validate(request_body(req), self._fields(conn, principal, None))
            credit_id = self.services.ledger.create_project_credit(
                values["project"], values.get("value", ZERO),
                Terms().updated(**values), values.get(MARK_UNUSED, False), principal.actor,
                comment=values.get("comment", ""), thresholds=values.get(THRESHOLDS.name))
        self.settle_reads()
        resp.status = falcon.HTTP_201
        resp.media = (self._one(req, resp, principal, credit_id.hex) if recorded is None
                      else history.project_credit_as_of(  # as the lost answer showed it
                          self.services, req, principal, credit_id.hex, recorded.created_on))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.principal(req)
        row = self._visible_row(principal, uuid)
        if not principal.is_owner(row.customer_uuid):
            raise permission_denied()
        self.services.ledger.delete_project_credit(UUID(row.uuid), principal.actor,
                                                   expected_version=if_match(req))
        self.settle_reads()
        resp.status = falcon.HTTP_204

    # --- helpers -------------------------------------------------------------------------

    def _list_page(self, conn: Connection, req: falcon.Request, principal: Principal,
                   rows: list[Any]) -> list[dict[str, Any]]:
        return self._render(conn, req, principal, rows)

    def _as_of(self, req: falcon.Request, resp: falcon.Response,
               principal: Principal) -> list[dict[str, Any]]:
        """`?as_of=`: the same filters over every credit that may have existed then."""
        candidates = history.project_credit_candidates(principal)
        return history.project_credits_as_of(
            self.services, req, resp, principal, self._filtered(req, principal, candidates))

    def _update(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                partial: bool) -> None:
        principal = self.principal(req)
        row = self._visible_row(principal, uuid)
        if not principal.is_owner(row.customer_uuid):
            raise permission_denied()
        with self.services.reads.connect() as conn:
            values = validate(request_body(req), self._fields(conn, principal, row.uuid), partial)
        self.services.ledger.update_project_credit(
            UUID(row.uuid), principal.actor, project_id=values.get("project"),
            value=values.get("value"),
            terms={k: v for k, v in values.items() if k in TERM_NAMES},
            mark_unused=values.get(MARK_UNUSED), expected_version=if_match(req),
            comment=values.get("comment", ""), thresholds=values.get(THRESHOLDS.name))
        self.settle_reads()
        resp.media = self._one(req, resp, principal, row.uuid)

    def _select(self, principal: Principal) -> Select[Any]:
        return project_credit_select(principal)

    def _decorate(self, rows: Subquery) -> Select[Any]:
        return with_organisation_figures(rows, self.services.today())

    def _retrieved(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
                   credit_uuid: str) -> Any:
        return self._one(req, resp, principal, credit_uuid)

    def _retrieved_as_of(self, req: falcon.Request, principal: Principal,
                         credit_uuid: str) -> Any:
        return history.project_credit_as_of(self.services, req, principal, credit_uuid)

    def _one(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
             credit_uuid: str) -> Any:
        with self.services.reads.connect() as conn:  # one connection: row and runway
            row = self._visible_row(principal, credit_uuid, conn, req.context)
            set_etag(resp, row.version)
            return self._render(conn, req, principal, [row])[0]

    def _render(self, conn: Connection, req: falcon.Request, principal: Principal,
                rows: list[Any]) -> list[dict[str, Any]]:
        views = project_credit_views(conn, rows, self.services.today())
        self._with_runways(conn, views)
        return [project_credit(base_url(req), view,
                               principal.sees_organisation_fields(view["row"].customer_uuid))
                for view in views]

    def _filtered(self, req: falcon.Request, principal: Principal,
                  base: Select[Any] | None = None) -> Any:
        query = project_credit_select(principal) if base is None else base
        query = apply_uuid_filter(query, req, "project_uuid", project_credits.c.project_uuid)
        query = apply_uuid_filter(query, req, "customer_uuid", project_credits.c.customer_uuid)
        query = apply_exact_filter(query, req, "customer_slug", project_credits.c.customer_slug)
        if name := last_param(req, "project_name"):
            query = query.where(icontains(project_credits.c.project_name, name))
        if name := last_param(req, "customer_name"):
            query = query.where(icontains(project_credits.c.customer_name, name))
        if text := last_param(req, "query"):
            query = query.where(or_(
                icontains(project_credits.c.project_name, text),
                icontains(project_credits.c.project_uuid, text),
                icontains(project_credits.c.customer_name, text),
                icontains(project_credits.c.customer_slug, text),
                icontains(project_credits.c.customer_uuid, text)))
        return query.order_by(*self._order(req))

    def _fields(self, conn: Connection, principal: Principal,
                credit_uuid: str | None) -> list[Field]:
        # Why at the edge: the ledger refuses these too (NotFound, rules in ledger/); the
        # read model is asked first only so that the 400 names the field, as DRF does.
        def check_project(project_id: UUID) -> None:
            project = conn.execute(select(projects).where(projects.c.uuid == project_id.hex))
            found = project.first()
            if found is None:
                raise fields.FieldError("Invalid hyperlink - Object does not exist.")
            taken = conn.execute(select(project_credits.c.uuid).where(
                project_credits.c.project_uuid == project_id.hex,
                project_credits.c.deleted == false())).scalar()
            if taken is not None and taken != credit_uuid:
                raise fields.FieldError("project credit with this project already exists.")
            if not principal.is_owner(found.customer_uuid):
                raise permission_denied()

        return with_checks(FIELDS, project=check_project)
