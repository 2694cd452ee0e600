"""GET /api/journal/?format=beancount|csv&through=YYYY-MM (staff, support): the
double-entry journal of every movement up to the end of a closed month
(projections/journal.py has the chart of accounts)."""

from __future__ import annotations

from datetime import date

import falcon
from sqlalchemy import Connection

from api.http.common import Resource
from api.http.errors import validation_error
from api.http.listing import last_param
from api.http.routes import Route
from api.http.schema import PERIOD, STRING, errors, operation, query
from api.resources.reconciliation import BOM_PARAM, choice, required_period, send_csv
from ledger.periods import Period
from projections.journal import Journal as Entries
from projections.journal import beancount, closed_through, csv_rows, journal

FORMATS = ("beancount", "csv")


def closed_month(conn: Connection, raw: str | None, today: date) -> Period:
    """`through`: a month that has begun and is closed."""
    period = required_period(raw, today, "through")
    if period not in closed_through(conn, period):
        raise validation_error({"through": [f"Billing period {period} is not closed."]})
    return period


def build(conn: Connection, raw: str | None, today: date) -> tuple[Period, Entries]:
    period = closed_month(conn, raw, today)
    return period, journal(conn, period, today)


class Journal(Resource):
    routes = [Route("/api/journal/", {"get": operation(
        "journal_retrieve", "reconciliation",
        "The double-entry journal up to the end of a closed month (staff, support)", {
            "200": {"description": "A beancount file, or CSV with one line per posting",
                    "content": {"text/plain": {"schema": STRING},
                                "text/csv": {"schema": STRING}}},
            **errors(400, 403)},
        parameters=[query("through", PERIOD, "The last month: a closed one.", required=True),
                    query("format", {"type": "string", "enum": list(FORMATS)},
                          "beancount (default) or csv"), BOM_PARAM])})]
    schemas: dict[str, object] = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auditor(req)
        kind = choice(last_param(req, "format"), FORMATS, "format")
        with self.services.reads.connect() as conn:
            period, found = build(conn, last_param(req, "through"), self.services.today())
        if kind == "csv":
            send_csv(req, resp, csv_rows(found), f"journal-{period}.csv")
            return
        resp.content_type = "text/plain; charset=utf-8"
        resp.set_header("Content-Disposition", f'attachment; filename="journal-{period}.beancount"')
        resp.text = beancount(found, period)
