"""GET /api/reconciliation/?period=YYYY-MM (a month's roll-forward) and
GET /api/reconciliation/usage/?period=YYYY-MM (usage of a billing period): staff only.

JSON by default; CSV with `format=csv` or `Accept: text/csv` (UTF-8 with a byte-order
mark unless `bom=false`). The rules (attribution, columns, checks) live in
projections/reconciliation.py; both answers are read from indexed read-model tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import falcon

from api.http.common import Resource
from api.http.errors import validation_error
from api.http.fields import FieldError
from api.http.listing import last_param
from api.http.spreadsheet import csv_text, json_ready
from api.resources.consumptions import period_field
from ledger.money import format_money
from ledger.periods import Period
from projections.reconciliation import (
    COLUMNS,
    USAGE_COLUMNS,
    Report,
    Row,
    Usage,
    reconcile,
    usage,
)

FORMATS = ("json", "csv")
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
LABELS = ("kind", "uuid", "customer_uuid", "customer_name", "project_uuid", "project_name")
REPORT_FIELDS = ("month", "line", "billing_period", *LABELS, "opening", *COLUMNS, "closing",
                 "ties_out")
USAGE_FIELDS = ("billing_period", "closed", "line", *LABELS, *USAGE_COLUMNS, "total")


def report_csv_rows(report: Report) -> Iterator[list[Any]]:
    """Header; per credit its line then one per billing period; then a subtotal per kind."""
    month = str(report.period)
    yield list(REPORT_FIELDS)
    for row in report.rows:
        yield [month, "credit", None, *_labels(row), *_figures(row.figures.as_dict())]
        for period, movements in sorted(row.by_billing_period.items(),
                                        key=lambda item: item[0] or ""):
            yield [month, "billing_period", period, *_labels(row), None,
                   *(movements[name] for name in COLUMNS), None, None]
    for kind, figures in report.subtotals.items():
        yield [month, "subtotal", None, kind, *([None] * (len(LABELS) - 1)),
               *_figures(figures.as_dict())]


def usage_csv_rows(found: Usage) -> Iterator[list[Any]]:
    data = found.as_dict()
    period, closed = data["billing_period"], data["closed"]
    yield list(USAGE_FIELDS)
    for row in data["rows"]:
        yield [period, closed, "credit", *(row[name] for name in LABELS),
               *(row[name] for name in (*USAGE_COLUMNS, "total"))]
    for kind, values in data["subtotals"].items():
        yield [period, closed, "subtotal", kind, *([None] * (len(LABELS) - 1)),
               *(values[name] for name in (*USAGE_COLUMNS, "total"))]


def _labels(row: Row) -> list[Any]:
    return [row.labels()[name] for name in LABELS]


def _figures(values: dict[str, Any]) -> list[Any]:
    return [values[name] for name in ("opening", *COLUMNS, "closing", "ties_out")]


def period_param(req: falcon.Request, today: date) -> Period:
    """`period`, required: a month that has begun."""
    raw = last_param(req, "period")
    if raw is None:
        raise validation_error({"period": ["This field is required."]})
    try:
        parsed: Period = period_field(Period.of(today))(raw)
    except FieldError as error:
        raise validation_error({"period": error.messages}) from None
    return parsed


def format_param(req: falcon.Request) -> str:
    """`format` wins; otherwise CSV only when the client prefers it to JSON. A bad `bom`
    is refused whatever the format."""
    bom_param(req)
    if (chosen := last_param(req, "format")) is not None:
        if chosen not in FORMATS:
            raise validation_error({"format": [
                f"Select a valid choice. {chosen} is not one of the available choices."]})
        return chosen
    preferred = req.client_prefers(["application/json", "text/csv"])
    return "csv" if preferred == "text/csv" else "json"


def bom_param(req: falcon.Request) -> bool:
    raw = last_param(req, "bom")
    if raw is None:
        return True
    if raw.lower() not in BOOLEANS:
        raise validation_error({"bom": ["Must be a valid boolean."]})
    return BOOLEANS[raw.lower()]


def send_csv(req: falcon.Request, resp: falcon.Response, rows: Iterator[list[Any]],
             filename: str) -> None:
    bom = bom_param(req)
    resp.content_type = "text/csv; charset=utf-8"
    resp.set_header("Content-Disposition", f'attachment; filename="{filename}"')
    resp.text = csv_text(rows, bom=bom)


class Reconciliation(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, format_param(req))

    def on_get_csv(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Its own route, so that generated clients see one media type per operation."""
        self._answer(req, resp, "csv")

    def on_get_usage(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.staff(req)
        kind = format_param(req)
        period = period_param(req, self.services.today())
        with self.services.reads.connect() as conn:
            found = usage(conn, period)
        if kind == "csv":
            send_csv(req, resp, usage_csv_rows(found), f"usage-{period}.csv")
        else:
            resp.media = json_ready(found.as_dict())

    def _answer(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        self.staff(req)
        period = period_param(req, self.services.today())
        with self.services.reads.connect() as conn:
            report = reconcile(conn, period, self.services.today())
        summary = report.summary()
        resp.set_header("X-Reconciliation-Ties-Out", str(summary["all_rows_tie_out"]).lower())
        resp.set_header("X-Reconciliation-Closing-Matches",
                        str(summary["closing_matches"]).lower())
        if kind == "csv":
            send_csv(req, resp, report_csv_rows(report), f"reconciliation-{period}.csv")
        else:
            resp.media = report.as_dict(format_money)
