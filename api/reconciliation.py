"""GET /api/reconciliation/?period=YYYY-MM: the month's finance report (staff only).

JSON by default; CSV with `format=csv` or `Accept: text/csv`. The rules (attribution,
columns, checks) live in projections/reconciliation.py.
"""

from __future__ import annotations

import csv
import io

import falcon

from api.common import Resource
from api.consumptions import period_field
from api.errors import validation_error
from api.fields import FieldError
from api.listing import last_param
from ledger.periods import Period
from projections.reconciliation import Report, reconcile, to_csv_rows

FORMATS = ("json", "csv")


def render_csv(report: Report) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(to_csv_rows(report))
    return out.getvalue()


class Reconciliation(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, self._format(req))

    def on_get_csv(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Its own route, so that generated clients see one media type per operation."""
        self._answer(req, resp, "csv")

    def _answer(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        self.staff(req)
        period = self._period(req)
        report = reconcile(self.services.ledger, self.services.engine, period)
        summary = report.summary()
        resp.set_header("X-Reconciliation-Ties-Out", str(summary["all_rows_tie_out"]).lower())
        resp.set_header("X-Reconciliation-Closing-Matches",
                        str(summary["closing_matches"]).lower())
        if kind == "csv":
            resp.content_type = "text/csv; charset=utf-8"
            resp.set_header("Content-Disposition",
                            f'attachment; filename="reconciliation-{period}.csv"')
            resp.text = render_csv(report)
        else:
            resp.media = report.as_dict()

    def _period(self, req: falcon.Request) -> Period:
        raw = last_param(req, "period")
        if raw is None:
            raise validation_error({"period": ["This field is required."]})
        try:
            parsed: Period = period_field(Period.of(self.services.today()))(raw)
        except FieldError as error:
            raise validation_error({"period": error.messages}) from None
        return parsed

    def _format(self, req: falcon.Request) -> str:
        """`format` wins; otherwise CSV only when the client prefers it to JSON."""
        if (chosen := last_param(req, "format")) is not None:
            if chosen not in FORMATS:
                raise validation_error({"format": [
                    f"Select a valid choice. {chosen} is not one of the available choices."]})
            return chosen
        preferred = req.client_prefers(["application/json", "text/csv"])
        return "csv" if preferred == "text/csv" else "json"
