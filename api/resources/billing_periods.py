"""/api/billing-periods/: which months are closed, and closing or re-opening one (staff).

The rules (which month may close next, what settlement charges) are the ledger's
(ledger/posting.py, ledger/consumption.py's BillingCalendar); this resource parses the
month, names the organisation credits to settle and maps the answers.
"""

from __future__ import annotations

from uuid import UUID

import falcon
from sqlalchemy import select

from api.http import fields
from api.http.common import Resource
from api.http.errors import validation_error
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    INTEGER,
    PERIOD,
    array,
    errors,
    json_response,
    obj,
    operation,
    path,
    ref,
)
from api.resources.representations import iso_datetime
from ledger.periods import Period
from projections.tables import billing_periods, customer_credits


class BillingPeriods(Resource):
    routes = [
        Route("/api/billing-periods/", {"get": operation(
            "billing_periods_list", "billing-periods", "Periods closed or re-opened so far", {
                "200": json_response(array(ref("BillingPeriod")))})}),
        Route("/api/billing-periods/{period}/close/", {
            "parameters": [path("period", PERIOD)],
            "post": operation("billing_periods_close", "billing-periods",
                              "Settle the month for every organisation (staff; idempotent)", {
                                  "200": json_response(ref("BillingPeriodClosed")),
                                  **errors(400, 403)}),
        }, suffix="close"),
        Route("/api/billing-periods/{period}/reopen/", {
            "parameters": [path("period", PERIOD)],
            "post": operation("billing_periods_reopen", "billing-periods",
                              "Re-open the latest closed month, reversing its settlement "
                              "(staff)", {"200": json_response(ref("BillingPeriodReopened")),
                                          **errors(400, 403)}),
        }, suffix="reopen"),
    ]
    schemas = {
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
    }

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
            return fields.period_field(Period.of(self.services.today()))(text)
        except fields.FieldError as error:
            raise validation_error({"period": error.messages}) from None

    def _credit_ids(self) -> list[UUID]:
        with self.services.reads.connect() as conn:
            rows = conn.execute(select(customer_credits.c.uuid)
                                .where(customer_credits.c.deleted.is_(False))
                                .order_by(customer_credits.c.created))
            return [UUID(row[0]) for row in rows]
