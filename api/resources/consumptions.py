"""Posting consumption (batch, idempotent per item id) and settling billing periods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Connection, select

from api.http import fields
from api.http.common import Resource, request_body
from api.http.errors import ApiError, not_found, validation_error
from api.http.forms import Field, expect_object, validate, with_checks
from api.resources.representations import iso_datetime
from ledger.money import format_money
from ledger.periods import Period
from ledger.posting import ConsumptionInput, ConsumptionResult
from projections.tables import billing_periods, consumptions, customer_credits, offerings, projects

MAX_ITEMS = 1000


def _period(raw: Any) -> Period:
    try:
        return Period.parse(raw) if isinstance(raw, str) else Period.parse("")
    except ValueError:
        raise fields.FieldError("Enter a billing period as YYYY-MM.") from None


PERIOD = fields.Typed(_period, {"type": "string",
                                "pattern": r"^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])" + fields.END,
                                "description": "A month, YYYY-MM."})


def started_by(today_period: Period) -> Callable[[Period], None]:
    """A period check that needs the clock: months that have not started are refused."""
    def check(period: Period) -> None:
        if period > today_period:
            raise fields.FieldError(f"Billing period {period} has not started yet.")

    return check


def period_field(today_period: Period) -> fields.Parser:
    """A period that has started (path parameters, the CLI): format, then the clock."""
    check = started_by(today_period)

    def parse(raw: Any) -> Period:
        period: Period = PERIOD(raw)
        check(period)
        return period

    return parse


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
    Field("period", PERIOD, required=True),
]


def closed_periods(conn: Connection) -> set[str]:
    rows = conn.execute(select(billing_periods.c.period).where(billing_periods.c.closed))
    return {row[0] for row in rows}


class Consumptions(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.staff(req)
        with self.services.reads.connect() as conn:
            items = self._validate(conn, request_body(req))
        results = self.services.ledger.post_consumption(items, principal.actor,
                                                        known=self.recorded_item_ids)
        self.settle_reads()
        resp.status = falcon.HTTP_200 if all(r.replayed for r in results) else falcon.HTTP_201
        resp.media = [_result(r) for r in results]

    def recorded_item_ids(self, item_ids: Sequence[str]) -> set[str]:
        """Which of the ids the consumptions read model knows: one query per batch."""
        with self.services.engine.connect() as conn:
            rows = conn.execute(select(consumptions.c.item_id)
                                .where(consumptions.c.item_id.in_(item_ids)))
            return {row[0] for row in rows}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        self.staff(req)
        with self.services.reads.connect() as conn:
            row = None if "\x00" in item_id else conn.execute(  # no such id can be posted
                select(consumptions).where(consumptions.c.item_id == item_id)).first()
        if row is None:
            raise not_found("No consumption item matches the given query.")
        resp.media = {
            "id": row.item_id, "project_uuid": row.project_uuid,
            "offering_uuid": row.offering_uuid, "period": row.period,
            "amount": format_money(row.amount),
            "drawn_from_project_credit": format_money(row.drawn_from_project_credit),
            "drawn_from_customer_credit": format_money(row.drawn_from_customer_credit),
            "uncovered": format_money(row.uncovered), "reversed": row.reversed,
            "created": iso_datetime(row.created),
        }

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        principal = self.staff(req)
        if self.services.ledger.find_consumption(item_id) is None:
            raise not_found("No consumption item matches the given query.")
        self.services.ledger.reverse_consumption(item_id, principal.actor)
        self.settle_reads()
        resp.status = falcon.HTTP_204

    def _validate(self, conn: Connection, body: Any) -> list[ConsumptionInput]:
        """The whole batch is checked before anything is drawn; errors are per item."""
        if not isinstance(body, list):
            kind = "dict" if isinstance(body, dict) else type(body).__name__
            raise validation_error(
                {"non_field_errors": [f'Expected a list of items but got type "{kind}".']})
        if not body:
            raise validation_error({"non_field_errors": ["This list may not be empty."]})
        if len(body) > MAX_ITEMS:
            raise validation_error(
                {"non_field_errors": [f"Ensure this list has at most {MAX_ITEMS} items."]})
        item_fields = self._fields(conn)
        errors: list[dict[str, Any]] = []
        cleaned: list[dict[str, Any]] = []
        seen: set[str] = set()
        for raw in body:
            try:
                values = validate(expect_object(raw), item_fields)
                if values["id"] in seen:
                    raise validation_error({"id": ["Duplicate id in this request."]})
                seen.add(values["id"])
                cleaned.append(values)
                errors.append({})
            except ApiError as error:
                errors.append(error.body)
        if any(errors):
            raise validation_error(errors)
        closed = closed_periods(conn)
        for values in cleaned:
            if str(values["period"]) in closed:
                raise ApiError(409, {"detail": f"Billing period {values['period']} is closed."})
        return [ConsumptionInput(v["id"], v["project"], v.get("offering"), v["amount"],
                                 v["period"]) for v in cleaned]

    def _fields(self, conn: Connection) -> list[Field]:
        """Each project and offering is looked up once per request, however many items
        name it."""

        @cache
        def project_problem(project_id: UUID) -> str | None:
            row = conn.execute(select(projects.c.terminated)
                               .where(projects.c.uuid == project_id.hex)).first()
            if row is None:
                return "Invalid hyperlink - Object does not exist."
            return "The project is terminated." if row.terminated else None

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
                           period=started_by(Period.of(self.services.today())))


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


class BillingPeriods(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.principal(req)
        with self.services.reads.connect() as conn:
            rows = conn.execute(select(billing_periods).order_by(billing_periods.c.period))
            resp.media = [{"period": row.period, "state": "closed" if row.closed else "open",
                           "modified": iso_datetime(row.modified)} for row in rows]

    def on_post_close(self, req: falcon.Request, resp: falcon.Response, period: str) -> None:
        principal = self.staff(req)
        parsed = self._period(period)
        result = self.services.ledger.close_period(
            parsed, principal.actor, self._credit_ids())
        self.settle_reads()
        resp.media = {"period": str(parsed), "state": "closed",
                      "already_closed": result.already_closed,
                      "customers_settled": result.customers_settled}

    def on_post_reopen(self, req: falcon.Request, resp: falcon.Response, period: str) -> None:
        principal = self.staff(req)
        parsed = self._period(period)
        reopened = self.services.ledger.reopen_period(parsed, principal.actor,
                                                      self._credit_ids())
        self.settle_reads()
        resp.media = {"period": str(parsed), "state": "open", "customers_reopened": reopened}

    def _period(self, text: str) -> Period:
        try:
            return period_field(Period.of(self.services.today()))(text)
        except fields.FieldError as error:
            raise validation_error({"period": error.messages}) from None

    def _credit_ids(self) -> list[UUID]:
        with self.services.reads.connect() as conn:
            rows = conn.execute(select(customer_credits.c.uuid)
                                .where(customer_credits.c.deleted.is_(False))
                                .order_by(customer_credits.c.created))
            return [UUID(row[0]) for row in rows]
