"""GET /api/customer-credits/{uuid}/months/?months=12: an organisation's months at once.

What the console's chart and month table draw, in one request: per month (`YYYY-MM`,
oldest first, ending with the current one) the organisation credit's reconciliation row
(opening, a column per movement kind, closing), whether the month is closed, and each
project credit's month-end balance. Visible as the statement is (staff, support, the
organisation's owners); built in projections/months.py.
"""

from __future__ import annotations

import falcon

from api.http.common import Resource, parse_uuid
from api.http.errors import validation_error
from api.http.listing import last_param
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    HEX_UUID,
    MONEY,
    PERIOD,
    STRING,
    array,
    errors,
    json_response,
    nullable,
    obj,
    operation,
    param_ref,
    query,
    ref,
)
from api.resources.history import CUSTOMER_NOT_FOUND
from api.resources.reconciliation import FIGURES_SCHEMA
from api.resources.statements import owned_credit
from ledger.money import format_money
from ledger.periods import Period
from projections.months import last_months, months

DEFAULT_MONTHS = 12
MAX_MONTHS = 36
MONTH = {"month": PERIOD, "closed": BOOLEAN, "opening_at": DATETIME, "closing_at": DATETIME,
         **FIGURES_SCHEMA}


def months_param(req: falcon.Request) -> int:
    """`months`: how many months, 1 to MAX_MONTHS (default 12)."""
    raw = last_param(req, "months")
    if raw is None:
        return DEFAULT_MONTHS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MONTHS:
        raise validation_error({"months": [
            f"Ensure this value is a whole number from 1 to {MAX_MONTHS}."]})
    return int(raw)


class CustomerCreditMonths(Resource):
    routes = [Route("/api/customer-credits/{uuid}/months/", {
        "parameters": [param_ref("Uuid")],
        "get": operation(
            "customer_credits_months", "customer-credits",
            "The organisation credit's last months: each month's reconciliation row and "
            "its projects' month-end balances (staff, support, owners)", {
                "200": json_response(ref("CreditMonths")), **errors(400, 403, 404)},
            parameters=[query("months", {"type": "integer", "minimum": 1,
                                         "maximum": MAX_MONTHS},
                              "How many months, ending with the current one (default 12)")])})]
    schemas = {"CreditMonths": obj({
        "credit_uuid": HEX_UUID, "customer_uuid": HEX_UUID, "customer_name": STRING,
        "months": array(obj(MONTH, list(MONTH), "A month's end is the balance at the first "
                                                "instant of the next month (today's, for "
                                                "the current month).")),
        "project_credits": array(obj({
            "uuid": HEX_UUID, "project_uuid": HEX_UUID, "project_name": STRING,
            "month_ends": array(nullable(MONEY))},
            ["uuid", "project_uuid", "project_name", "month_ends"],
            "month_ends: one balance per month, in the months' order (null: not yet "
            "created).")),
    }, ["credit_uuid", "customer_uuid", "customer_name", "months", "project_credits"])}

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.principal(req)
        credit_uuid = parse_uuid(uuid, CUSTOMER_NOT_FOUND).hex
        with self.services.reads.connect() as conn:
            row = owned_credit(conn, principal, credit_uuid)
            count = months_param(req)
            periods = last_months(Period.of(self.services.today()), count)
            found = months(conn, credit_uuid, row.customer_uuid, periods)
        resp.media = {"credit_uuid": credit_uuid, "customer_uuid": row.customer_uuid,
                      "customer_name": row.customer_name, **found.as_dict(format_money)}
