"""/api/customer-credits/: organisation credits (staff writes, role-scoped reads)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
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
from api.http.errors import validation_error
from api.http.forms import Field, object_schema, validate, with_checks
from api.http.listing import last_param
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATE,
    HEX_UUID,
    MONEY,
    STRING,
    URI,
    Json,
    array,
    errors,
    json_body,
    json_response,
    nullable,
    obj,
    operation,
    param_ref,
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
from api.resources.project_credits import TERM_FIELDS
from api.resources.representations import customer_credit
from ledger.access import Principal
from ledger.keys import KeyedCommand
from ledger.money import ZERO
from ledger.periods import Period
from ledger.terms import TERM_NAMES, Terms
from projections.queries import (
    customer_credit_select,
    customer_credit_views,
    monthly_consumption,
    open_period_items,
    with_month_figures,
)
from projections.search import icontains
from projections.tables import customer_credits, customers, offerings

NOT_FOUND = "No CustomerCredit matches the given query."
ORDERING = {
    "customer_name": customer_credits.c.customer_name,
    "value": customer_credits.c.value,
    "end_date": customer_credits.c.end_date,
    "expected_consumption": customer_credits.c.expected_consumption,
}
DEFAULT_ORDER = [customer_credits.c.created.asc(), customer_credits.c.uuid.asc()]
OFFERING_LINK = fields.hyperlink("/api/marketplace-provider-offerings/",
                                 "/api/marketplace-public-offerings/")


def _offering_links(raw: Any) -> list[UUID]:
    """A list of offering hyperlinks, each once, in order."""
    if not isinstance(raw, list):
        kind = type(raw).__name__
        raise fields.FieldError(f'Expected a list of items but got type "{kind}".')
    found = [OFFERING_LINK(item) if item is not None else _null() for item in raw]
    return list(dict.fromkeys(found))


def _null() -> Any:
    raise fields.FieldError("This field may not be null.")


OFFERING_LINKS = fields.Typed(_offering_links, {"type": "array",
                                                "items": OFFERING_LINK.schema})
# Update bodies; create also takes the customer. Existence and uniqueness of the linked
# objects and the end date against today are checked per request (_fields).
PROTECT = "protect_allocations"
UPDATE_FIELDS = [Field("value", fields.MONEY), Field("offerings", OFFERING_LINKS),
                 *TERM_FIELDS,
                 Field("comment", fields.COMMENT,
                       description="Why the value is set (recorded on the grant)."),
                 Field(PROTECT, fields.boolean,
                       description="Pool draws leave what project credits hold."),
                 THRESHOLDS]
CREATE_FIELDS = [UPDATE_FIELDS[0],
                 Field("customer", fields.hyperlink("/api/customers/"), required=True),
                 *UPDATE_FIELDS[1:]]


ADJUSTMENT_FIELDS = [
    Field("amount", fields.decimal(16, 5, zero_message="Amount must not be zero."),
          required=True),
    Field("comment", fields.text(fields.MAX_STRING_LENGTH,
                                 blank_message="A comment is required."), required=True),
]
FILTERS = [*CUSTOMER_FILTERS, SEARCH]
PROTECT_DESCRIPTION = ("Pool draws for projects without a project credit leave what project "
                       "credits still hold (default false, as upstream).")


def served(offerings: Json) -> Json:
    properties = {
        "uuid": read_only(HEX_UUID), "url": read_only(URI), "value": MONEY, "customer": URI,
        "customer_name": read_only(STRING), "customer_uuid": read_only(HEX_UUID),
        "customer_slug": read_only(STRING), "offerings": offerings, **terms_schema(),
        "allocated_to_projects": read_only(MONEY),
        "consumption_last_month": read_only(nullable(MONEY)),
        "withdrawable_balance": read_only(MONEY),
        PROTECT: {**BOOLEAN, "description": PROTECT_DESCRIPTION},
        **alerting_schema(),
    }
    return obj(properties, list(properties))


def action_routes() -> list[Route]:
    """The organisation credit's monthly consumption and staff actions (README "Withdrawable
    balance and compensations")."""
    tag = "customer-credits"
    done = {"200": {"description": "No response body"}, **errors(403, 404, 409)}
    at = "/api/customer-credits/{uuid}/"
    uuid = [param_ref("Uuid")]
    return [
        Route(at + "consumptions/", {"parameters": uuid, "get": operation(
            "customer_credits_consumptions_list", tag,
            "Credit consumption history grouped by month", {
                "200": json_response(array(ref("CustomerCreditConsumption"))),
                **errors(404)})}, suffix="consumptions"),
        Route(at + "adjust_withdrawable/", {"parameters": uuid, "post": operation(
            "customer_credits_adjust_withdrawable", tag,
            "Move the withdrawable part of the balance (staff)", {
                "200": json_response(ref("CustomerCredit")), **errors(400, 403, 404)},
            body=json_body(ref("WithdrawableAdjustmentRequest")))},
            suffix="adjust_withdrawable"),
        Route(at + "clear_compensations/", {"parameters": uuid, "post": operation(
            "customer_credits_clear_compensations", tag,
            "Give back the draws of the latest open period's items (staff)", done)},
            suffix="clear_compensations"),
        Route(at + "apply_compensations/", {"parameters": uuid, "post": operation(
            "customer_credits_apply_compensations", tag,
            "Clear, then draw that period's items again, cheapest first, under today's "
            "balances (staff)", done)}, suffix="apply_compensations"),
    ]


class CustomerCredits(CreditCollection):
    table = customer_credits
    not_found_message = NOT_FOUND
    orderings = ORDERING
    default_order = DEFAULT_ORDER
    filters = names(FILTERS)
    routes = [*credit_routes(
        "customer-credits", item="CustomerCredit", created="CreateCustomerCredit",
        request="CreateCustomerCreditRequest", updated="UpdateCustomerCreditRequest",
        patched="PatchedCreateCustomerCreditRequest", filters=FILTERS,
        o_enum="CustomerCreditOEnum", writers="staff"), *action_routes()]
    schemas = {
        "CustomerCreditOEnum": ordering_enum(ORDERING),
        "CustomerCredit": served(read_only(array(ref("NestedProviderOffering")))),
        "CreateCustomerCredit": served(array(URI)),
        "CreateCustomerCreditRequest": object_schema(CREATE_FIELDS),
        "UpdateCustomerCreditRequest": object_schema(UPDATE_FIELDS),
        "PatchedCreateCustomerCreditRequest": object_schema(UPDATE_FIELDS, partial=True),
        "WithdrawableAdjustmentRequest": object_schema(ADJUSTMENT_FIELDS),
        "CustomerCreditConsumption": obj({
            "date": read_only(DATE),
            "price": read_only({"type": "string", "format": "decimal",
                                "pattern": r"^-?[0-9]+\.[0-9]{2}$"})}, ["date", "price"]),
    }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.staff(req)
        if (recorded := self.services.ledger.executed()) is not None:
            credit_id = recorded.result  # a keyed retry: the credit is there, as is its key
        else:
            with self.services.reads.connect() as conn:
                values = validate(request_body(req), self._fields(conn, creating=True))
            self._check_terms(values, current=None)
            credit_id = self.services.ledger.create_customer_credit(
                values["customer"], values.get("value", ZERO), Terms().updated(**values),
                values.get("offerings", []), principal.actor,
                comment=values.get("comment", ""),
                protect_allocations=values.get(PROTECT, False),
                thresholds=values.get(THRESHOLDS.name))
        self.settle_reads()
        resp.status = falcon.HTTP_201
        resp.media = self._answer(req, resp, principal, credit_id.hex, recorded, nested=False)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.staff(req)  # upstream: a view-level is_staff, before the lookup
        row = self._visible_row(principal, uuid)
        self.services.ledger.delete_customer_credit(UUID(row.uuid), principal.actor,
                                                    expected_version=if_match(req))
        self.settle_reads()
        resp.status = falcon.HTTP_204

    def on_get_consumptions(self, req: falcon.Request, resp: falcon.Response,
                            uuid: str) -> None:
        """Monthly consumption history `[{date, price}]`, ascending, as upstream."""
        principal = self.principal(req)
        row = self._visible_row(principal, uuid)
        with self.services.reads.connect() as conn:
            months = monthly_consumption(conn, row.uuid)
        resp.media = [{"date": Period.parse(period).first_day.isoformat(),
                       "price": f"{amount:.2f}"} for period, amount in months]

    # --- helpers -------------------------------------------------------------------------

    def _list_page(self, conn: Connection, req: falcon.Request, principal: Principal,
                   rows: list[Any]) -> list[dict[str, Any]]:
        return self._render(conn, req, rows, nested=True)

    def _as_of(self, req: falcon.Request, resp: falcon.Response,
               principal: Principal) -> list[dict[str, Any]]:
        """`?as_of=`: the same filters over every credit that may have existed then."""
        candidates = history.customer_credit_candidates(principal)
        return history.customer_credits_as_of(
            self.services, req, resp, self._filtered(req, principal, candidates))

    def _update(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                partial: bool) -> None:
        principal = self.staff(req)  # upstream: a view-level is_staff, before the lookup
        row = self._visible_row(principal, uuid)
        with self.services.reads.connect() as conn:
            values = validate(request_body(req), self._fields(conn, creating=False), partial)
        self._check_terms(values, current=row)
        self.services.ledger.update_customer_credit(
            UUID(row.uuid), principal.actor, value=values.get("value"),
            terms={k: v for k, v in values.items() if k in TERM_NAMES},
            offering_ids=values.get("offerings"), expected_version=if_match(req),
            comment=values.get("comment", ""), protect_allocations=values.get(PROTECT),
            thresholds=values.get(THRESHOLDS.name))
        self.settle_reads()
        resp.media = self._one(req, resp, principal, row.uuid, nested=False)

    def on_post_adjust_withdrawable(self, req: falcon.Request, resp: falcon.Response,
                                    uuid: str) -> None:
        """Move the withdrawable part of the balance; answers the organisation credit."""
        principal = self.staff(req)
        row = self._visible_row(principal, uuid)
        if (recorded := self.services.ledger.executed()) is None:
            values = validate(request_body(req), ADJUSTMENT_FIELDS)
            self.services.ledger.adjust_withdrawable(UUID(row.uuid), values["amount"],
                                                     values["comment"], principal.actor)
        self.settle_reads()
        resp.media = self._answer(req, resp, principal, row.uuid, recorded, nested=True)

    def _answer(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
                credit_uuid: str, recorded: KeyedCommand | None, nested: bool) -> Any:
        """The credit after the command; for a keyed retry of a command that already ran,
        as it was right after that first run (what the lost answer said)."""
        if recorded is None:
            return self._one(req, resp, principal, credit_uuid, nested=nested)
        return history.customer_credit_as_of(self.services, req, principal, credit_uuid,
                                             recorded.created_on, nested=nested)

    def on_post_clear_compensations(self, req: falcon.Request, resp: falcon.Response,
                                    uuid: str) -> None:
        """Give back every draw of the latest open period's items; 200, no body."""
        self._recompensate(req, resp, uuid, self.services.ledger.clear_compensations)

    def on_post_apply_compensations(self, req: falcon.Request, resp: falcon.Response,
                                    uuid: str) -> None:
        """Clear, then draw that period's items again under today's balances; 200, no body."""
        self._recompensate(req, resp, uuid, self.services.ledger.apply_compensations)

    def _recompensate(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                      command: Callable[[UUID, Period, list[str], str], None]) -> None:
        principal = self.staff(req)
        row = self._visible_row(principal, uuid)
        with self.services.reads.connect() as conn:
            found = open_period_items(conn, row.customer_uuid)
        if found is not None:
            command(UUID(row.uuid), found[0], found[1], principal.actor)
            self.settle_reads()
        resp.status = falcon.HTTP_200

    def _check_terms(self, values: dict[str, Any], current: Any) -> None:
        """Upstream's serializer-level rules (reference §3.2), on the credit as it would be."""
        def merged(name: str, default: Any) -> Any:
            return values[name] if name in values else getattr(current, name, default)

        value = merged("value", ZERO)
        expected = merged("expected_consumption", ZERO)
        logic = merged("minimal_consumption_logic", "fixed")
        end: date | None = merged("end_date", None)
        errors = []
        if expected and expected >= value:
            errors.append("Expected consumption must be smaller than the credit.")
        if logic == "linear" and end is None:
            errors.append("End date is required if minimal consumption logic is linear.")
        today = self.services.today()
        if logic == "linear" and end is not None and (end.year, end.month) == (
                today.year, today.month):
            errors.append("End date must be greater if minimal consumption logic is linear.")
        if errors:
            raise validation_error({"non_field_errors": errors})

    def _select(self, principal: Principal) -> Select[Any]:
        return customer_credit_select(principal)

    def _retrieved(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
                   credit_uuid: str) -> Any:
        return self._one(req, resp, principal, credit_uuid, nested=True)

    def _retrieved_as_of(self, req: falcon.Request, principal: Principal,
                         credit_uuid: str) -> Any:
        return history.customer_credit_as_of(self.services, req, principal, credit_uuid)

    def _one(self, req: falcon.Request, resp: falcon.Response, principal: Principal,
             credit_uuid: str, nested: bool) -> Any:
        with self.services.reads.connect() as conn:  # one connection: row and runway
            row = self._visible_row(principal, credit_uuid, conn, req.context)
            set_etag(resp, row.version)
            return self._render(conn, req, [row], nested)[0]

    def _decorate(self, rows: Subquery) -> Select[Any]:
        return with_month_figures(rows, self.services.today())

    def _render(self, conn: Connection, req: falcon.Request, rows: list[Any],
                nested: bool) -> list[dict[str, Any]]:
        views = customer_credit_views(rows, self.services.today())
        self._with_runways(conn, views)
        return [customer_credit(base_url(req), view, nested) for view in views]

    def _filtered(self, req: falcon.Request, principal: Principal,
                  base: Select[Any] | None = None) -> Any:
        query = customer_credit_select(principal) if base is None else base
        query = apply_uuid_filter(query, req, "customer_uuid", customer_credits.c.customer_uuid)
        query = apply_exact_filter(query, req, "customer_slug", customer_credits.c.customer_slug)
        if name := last_param(req, "customer_name"):
            query = query.where(icontains(customer_credits.c.customer_name, name))
        if text := last_param(req, "query"):
            query = query.where(or_(icontains(customer_credits.c.customer_name, text),
                                    icontains(customer_credits.c.customer_slug, text),
                                    icontains(customer_credits.c.customer_uuid, text)))
        return query.order_by(*self._order(req))

    def _fields(self, conn: Connection, creating: bool) -> list[Field]:
        # Why at the edge: the ledger refuses these too (NotFound, rules in ledger/); the
        # read model is asked first only so that the 400 names the field, as DRF does.
        def check_customer(customer_id: UUID) -> None:
            if conn.execute(select(customers.c.uuid)
                            .where(customers.c.uuid == customer_id.hex)).first() is None:
                raise fields.FieldError("Invalid hyperlink - Object does not exist.")
            taken = conn.execute(select(customer_credits.c.uuid).where(
                customer_credits.c.customer_uuid == customer_id.hex,
                customer_credits.c.deleted == false())).first()
            if taken is not None:
                raise fields.FieldError("customer credit with this customer already exists.")

        def check_offerings(found: list[UUID]) -> None:
            known = {row[0] for row in conn.execute(select(offerings.c.uuid).where(
                offerings.c.uuid.in_([o.hex for o in found])))}
            if any(o.hex not in known for o in found):
                raise fields.FieldError("Invalid hyperlink - Object does not exist.")

        def check_end_date(end: date | None) -> None:
            if end is not None and end < self.services.today():
                raise fields.FieldError("The end date must be greater than today's date.")
            if end is not None and end.day != 1:
                raise fields.FieldError("End date must be the first day of the month.")

        if creating:
            return with_checks(CREATE_FIELDS, customer=check_customer,
                               offerings=check_offerings, end_date=check_end_date)
        return with_checks(UPDATE_FIELDS, offerings=check_offerings, end_date=check_end_date)
