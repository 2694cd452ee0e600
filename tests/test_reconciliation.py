"""GET /api/reconciliation/ and `credit-ledger export reconciliation` over several months.

Event timestamps are set with an event clock (eventsourcing's timestamp function is
patched) moving together with the service clock, so grants, write-offs and settlements
happen in the months the script says, whatever day the tests run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import eventsourcing.domain
import pytest
from sqlalchemy import update

from api import cli
from projections.tables import project_credits
from tests.support import Clock, Directory

PERIODS = ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
COLUMNS = ["opening", "granted", "consumed", "floor_draws", "expired", "written_off",
           "reversed", "closing"]
# per period, per credit label: the money columns in COLUMNS order
EXPECTED: dict[str, dict[str, list[str]]] = {
    "2026-07": {"org": ["0", "1000", "-170", "0", "0", "0", "0", "830"],
                "A": ["0", "300", "-100", "0", "0", "0", "0", "200"],
                "B": ["0", "200", "-20", "-30", "0", "0", "0", "150"]},
    "2026-08": {"org": ["830", "500", "-60", "0", "0", "0", "0", "1270"],
                "A": ["200", "0", "-50", "0", "0", "0", "0", "150"],
                "B": ["150", "0", "0", "-50", "0", "0", "0", "100"],
                "other": ["0", "50", "0", "0", "0", "0", "0", "50"]},
    "2026-09": {"org": ["1270", "0", "-105", "0", "0", "0", "0", "1165"],
                "A": ["150", "0", "-45", "0", "0", "0", "0", "105"],
                "B": ["100", "0", "-60", "0", "-80", "0", "40", "0"],
                "other": ["50", "0", "0", "0", "0", "0", "0", "50"]},
    "2026-10": {"org": ["1165", "0", "-25", "0", "0", "-105", "0", "1035"],
                "A": ["105", "0", "0", "0", "0", "-105", "0", "0"],
                "B": ["0", "0", "0", "0", "0", "0", "0", "0"],
                "other": ["50", "0", "0", "0", "0", "0", "0", "50"]},
    "2026-11": {"org": ["1035", "0", "0", "0", "0", "0", "0", "1035"],
                "A": ["0", "0", "0", "0", "0", "0", "0", "0"],
                "B": ["0", "0", "0", "0", "0", "0", "0", "0"],
                "other": ["50", "30", "0", "0", "0", "0", "0", "80"]},
}


@dataclass
class EventClock:
    """Stands in for eventsourcing's clock; every reading is 1 µs after the last."""

    now: datetime

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now


@dataclass
class Months:
    """Moves the service clock (today) and the event clock together."""

    clock: Clock
    events: EventClock

    def go(self, day: str) -> None:
        when = date.fromisoformat(day)
        self.clock.today = when
        self.events.now = datetime(when.year, when.month, when.day, 12, tzinfo=UTC)


@pytest.fixture
def months(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Iterator[Months]:
    events = EventClock(datetime(2026, 7, 15, 12, tzinfo=UTC))
    monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", events)
    yield Months(clock, events)


def call(directory: Directory, method: str, path: str, body: Any = None) -> Any:
    result = directory.client.simulate_request(method, path, json=body,
                                               headers=directory.staff)
    assert result.status_code in (200, 201, 204), (method, path, result.text)
    return result.json if result.text else None


def consume(directory: Directory, period: str, *items: tuple[str, Any, str]) -> None:
    call(directory, "POST", "/api/consumptions/", [
        {"id": item_id, "project": project["url"], "amount": amount, "period": period}
        for item_id, project, amount in items])


def close(directory: Directory, period: str, reopen: bool = False) -> None:
    call(directory, "POST", f"/api/billing-periods/{period}/{'reopen' if reopen else 'close'}/",
         {})


@pytest.fixture
def labels(months: Months, directory: Directory) -> dict[str, str]:
    """The script, month by month; returns credit uuid by label."""
    months.go("2026-07-15")
    org = directory.customer("Org")
    p = {name: directory.project(org, name) for name in "ABC"}
    org_credit = directory.customer_credit(org, "1000")
    a = directory.project_credit(p["A"], "300",
                                 mark_unused_credit_as_spent_on_project_termination=True)
    b = directory.project_credit(p["B"], "200", expected_consumption="50",
                                 end_date="2026-10-01")
    months.go("2026-08-03")
    consume(directory, "2026-07", ("a1", p["A"], "100"), ("b1", p["B"], "20"),
            ("c1", p["C"], "50"))
    close(directory, "2026-07")                                   # B floor 30
    months.go("2026-08-20")
    call(directory, "PATCH", f"/api/customer-credits/{org_credit['uuid']}/", {"value": "1330"})
    other = directory.customer_credit(directory.customer("Other"), "50")
    months.go("2026-09-02")
    consume(directory, "2026-08", ("a2", p["A"], "50"), ("c2", p["C"], "10"))
    close(directory, "2026-08")                                   # B floor 50
    months.go("2026-09-10")
    consume(directory, "2026-09", ("a3", p["A"], "40"), ("b3", p["B"], "60"))
    months.go("2026-10-01")
    close(directory, "2026-09")                                   # B expires: 40
    months.go("2026-10-05")
    close(directory, "2026-09", reopen=True)                      # expiry given back
    consume(directory, "2026-09", ("a4", p["A"], "5"))
    close(directory, "2026-09")                                   # B expires again
    months.go("2026-10-20")
    call(directory, "DELETE", f"/api/projects/{p['A']['uuid']}/")  # A's 105 written off
    months.go("2026-11-05")
    consume(directory, "2026-10", ("c4", p["C"], "25"))
    close(directory, "2026-10")
    months.go("2026-11-26")
    call(directory, "PATCH", f"/api/customer-credits/{other['uuid']}/", {"value": "80"})
    return {"org": org_credit["uuid"], "A": a["uuid"], "B": b["uuid"], "other": other["uuid"]}


def report(directory: Directory, period: str, **params: Any) -> Any:
    result = directory.client.simulate_get("/api/reconciliation/",
                                           params={"period": period, **params},
                                           headers=directory.staff)
    assert result.status_code == 200, result.text
    return result


def money(text: str) -> str:
    return f"{Decimal(text):.5f}"


def test_every_month_matches_the_script_and_ties_out(directory: Directory,
                                                     labels: dict[str, str]) -> None:
    by_uuid = {uuid: label for label, uuid in labels.items()}
    for period in PERIODS:
        body = report(directory, period).json
        assert body["period"] == period
        found = {by_uuid[row["uuid"]]: [row[c] for c in COLUMNS] for row in body["rows"]}
        assert found == {label: [money(v) for v in values]
                         for label, values in EXPECTED[period].items()}, period
        assert all(row["ties_out"] for row in body["rows"])
        totals = body["totals"]
        for column in COLUMNS:
            assert Decimal(totals[column]) == sum(Decimal(r[column]) for r in body["rows"])
        assert totals["ties_out"] is True and totals["kind"] == "total"
        summary = body["summary"]
        assert summary["all_rows_tie_out"] and summary["totals_tie_out"]
        assert summary["closing_matches"] is True, summary
        assert summary["closing_compared_with"] == (
            "live_read_model" if period == "2026-11" else "next_period_opening")


def test_closing_is_the_next_opening(directory: Directory, labels: dict[str, str]) -> None:
    bodies = [report(directory, period).json for period in PERIODS]
    for this, following in zip(bodies, bodies[1:], strict=False):
        closing = {r["uuid"]: r["closing"] for r in this["rows"]}
        opening = {r["uuid"]: r["opening"] for r in following["rows"]}
        assert {u: v for u, v in opening.items() if u in closing} == closing


def test_rows_and_attribution(directory: Directory, labels: dict[str, str]) -> None:
    rows = report(directory, "2026-09").json["rows"]
    assert [(r["kind"], r["customer_name"], r["project_name"]) for r in rows] == [
        ("customer_credit", "Org", ""), ("project_credit", "Org", "A"),
        ("project_credit", "Org", "B"), ("customer_credit", "Other", "")]
    assert rows[0]["uuid"] == labels["org"] and rows[2]["uuid"] == labels["B"]
    assert list(rows[0]) == ["kind", "uuid", "customer_uuid", "customer_name", "project_uuid",
                             "project_name", *COLUMNS[:-1], "closing", "ties_out"]


def test_csv_has_the_json_numbers(directory: Directory, labels: dict[str, str]) -> None:
    body = report(directory, "2026-09").json
    expected = [*body["rows"], body["totals"]]
    for params, headers in (({"format": "csv"}, {}), ({}, {"Accept": "text/csv"})):
        result = directory.client.simulate_get(
            "/api/reconciliation/", params={"period": "2026-09", **params},
            headers={**directory.staff, **headers})
        assert result.status_code == 200
        assert result.headers["Content-Type"].startswith("text/csv")
        assert result.headers["X-Reconciliation-Ties-Out"] == "true"
        parsed = list(csv.DictReader(io.StringIO(result.text)))
        assert parsed == [{k: str(v).lower() if isinstance(v, bool) else str(v)
                           for k, v in row.items()} for row in expected]


def test_cli_export_writes_csv_and_json(directory: Directory, labels: dict[str, str],
                                        database_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    body = report(directory, "2026-09").json
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    out = tmp_path / "september.csv"
    code = cli.main(["export", "reconciliation", "--period", "2026-09", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "scanning events" in captured.err
    assert "every row ties out: True" in captured.out
    with out.open(newline="") as handle:
        parsed = list(csv.DictReader(handle))
    assert [row["closing"] for row in parsed] == [
        *(r["closing"] for r in body["rows"]), body["totals"]["closing"]]
    assert parsed[-1]["kind"] == "total"
    as_json = tmp_path / "september.json"
    assert cli.main(["export", "reconciliation", "--period", "2026-09",
                     "--out", str(as_json)]) == 0
    assert json.loads(as_json.read_text()) == body


def test_drift_shows_in_the_summary(directory: Directory, labels: dict[str, str]) -> None:
    with directory.services.engine.begin() as conn:
        conn.execute(update(project_credits).where(project_credits.c.uuid == labels["B"])
                     .values(value=Decimal("7")))
    summary = report(directory, "2026-11").json["summary"]
    assert summary["closing_matches"] is False
    assert summary["mismatches"] == [labels["B"]]
    assert summary["all_rows_tie_out"] is True


def test_bad_requests(directory: Directory, clock: Clock) -> None:
    get = directory.client.simulate_get
    path = "/api/reconciliation/"
    assert get(path, headers=directory.staff).json == {"period": ["This field is required."]}
    for period in ("2026-13", "nope"):
        result = get(path, params={"period": period}, headers=directory.staff)
        assert result.status_code == 400 and list(result.json) == ["period"]
    future = get(path, params={"period": "2026-12"}, headers=directory.staff)
    assert future.json == {"period": ["Billing period 2026-12 has not started yet."]}
    wrong = get(path, params={"period": "2026-11", "format": "xml"}, headers=directory.staff)
    assert wrong.status_code == 400 and list(wrong.json) == ["format"]
    user = directory.user("someone")
    assert get(path, params={"period": "2026-11"}, headers=user).status_code == 403
    assert get(path, params={"period": "2026-11"}).status_code == 401


def test_empty_ledger(directory: Directory) -> None:
    body = report(directory, "2026-11").json
    assert body["rows"] == [] and body["summary"]["all_rows_tie_out"] is True
    assert body["totals"]["closing"] == "0.00000"
