"""GET /api/reconciliation/ and `credit-ledger export reconciliation` over several months.

Event timestamps are set with an event clock (eventsourcing's timestamp function is
patched) moving together with the service clock, so grants, write-offs and settlements
happen in the months the script says, whatever day the tests run. Movements belong to
the month they were recorded in; opening and closing are the `?as_of=` balances at the
month boundaries.
"""

from __future__ import annotations

import csv
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
from tests.support import Clock, Directory, csv_rows

PERIODS = ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
MOVEMENTS = ["created", "top_ups", "reductions", "withdrawable_adjustments", "consumed",
             "draws_reversed", "floor_draws", "expired", "written_off", "reversed",
             "adjustments"]
COLUMNS = ["opening", *MOVEMENTS, "closing"]


def row(opening: str, closing: str, **moves: str) -> list[str]:
    """A row's money columns in COLUMNS order; movements not named are 0."""
    return [opening, *(moves.get(name, "0") for name in MOVEMENTS), closing]


# per month, per credit label: the money columns (recorded in that month)
EXPECTED: dict[str, dict[str, list[str]]] = {
    "2026-07": {"org": row("0", "1000", created="1000"),
                "A": row("0", "300", created="300"),
                "B": row("0", "200", created="200")},
    "2026-08": {"org": row("1000", "1330", top_ups="500", consumed="-170"),
                "A": row("300", "200", consumed="-100"),
                "B": row("200", "150", consumed="-20", floor_draws="-30"),
                "other": row("0", "50", created="50")},
    "2026-09": {"org": row("1330", "1170", consumed="-160"),
                "A": row("200", "110", consumed="-90"),
                "B": row("150", "40", consumed="-60", floor_draws="-50"),
                "other": row("50", "50")},
    "2026-10": {"org": row("1170", "1060", consumed="-5", written_off="-105"),
                "A": row("110", "0", consumed="-5", written_off="-105"),
                "B": row("40", "0", expired="-80", reversed="40"),
                "other": row("50", "50")},
    "2026-11": {"org": row("1060", "1035", consumed="-25"),
                "A": row("0", "0"),
                "B": row("0", "0"),
                "other": row("50", "80", top_ups="30")},
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


def report(directory: Directory, period: str, path: str = "/api/reconciliation/",
           **params: Any) -> Any:
    result = directory.client.simulate_get(path, params={"period": period, **params},
                                           headers=directory.staff)
    assert result.status_code == 200, result.text
    return result


def money(text: str) -> str:
    return f"{Decimal(text):.5f}"


def boundary(period: str) -> str:
    return f"{period}-01T00:00:00+00:00"


def as_of_value(directory: Directory, row: dict[str, Any], moment: str) -> str:
    """The credit's value that `?as_of=` answers (0 where it did not exist or was deleted)."""
    kind = "customer-credits" if row["kind"] == "customer_credit" else "project-credits"
    result = directory.client.simulate_get(f"/api/{kind}/{row['uuid']}/",
                                           params={"as_of": moment}, headers=directory.staff)
    if result.status_code == 404:
        return money("0")
    assert result.status_code == 200, result.text
    return str(result.json["value"])


def next_month(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def assert_balances_are_as_of(directory: Directory, body: dict[str, Any]) -> None:
    """Every opening and closing is non-negative and what `?as_of=` answers there."""
    period = body["period"]
    assert body["opening_at"] == boundary(period)
    assert body["closing_at"] == boundary(next_month(period))
    for row in body["rows"]:
        assert Decimal(row["opening"]) >= 0 and Decimal(row["closing"]) >= 0, row
        assert row["opening"] == as_of_value(directory, row, body["opening_at"]), row
        assert row["closing"] == as_of_value(directory, row, body["closing_at"]), row
        assert row["ties_out"] is True


def test_every_month_matches_the_script_and_ties_out(directory: Directory,
                                                     labels: dict[str, str]) -> None:
    by_uuid = {uuid: label for label, uuid in labels.items()}
    for period in PERIODS:
        body = report(directory, period).json
        assert body["period"] == period
        found = {by_uuid[row["uuid"]]: [row[c] for c in COLUMNS] for row in body["rows"]}
        assert found == {label: [money(v) for v in values]
                         for label, values in EXPECTED[period].items()}, period
        assert_balances_are_as_of(directory, body)
        summary = body["summary"]
        assert summary["all_rows_tie_out"] and summary["totals_tie_out"]
        assert summary["closing_matches"] is True, summary
        assert summary["closing_compared_with"] == (
            ["credit_transactions", "live_read_model"] if period == "2026-11"
            else ["credit_transactions"])


def test_totals_per_kind_never_one_sum(directory: Directory,
                                       labels: dict[str, str]) -> None:
    body = report(directory, "2026-09").json
    assert "subtotals" not in body and set(body["totals"]) == {"customer_credit",
                                                               "project_credit"}
    for kind, subtotal in body["totals"].items():
        rows = [row for row in body["rows"] if row["kind"] == kind]
        for column in COLUMNS:
            assert Decimal(subtotal[column]) == sum(Decimal(r[column]) for r in rows)
        assert subtotal["ties_out"] is True
    assert body["totals"]["customer_credit"]["closing"] == money("1220")  # 1170 + 50
    assert body["totals"]["project_credit"]["closing"] == money("150")   # 110 + 40
    live = directory.client.simulate_get("/api/customer-credits/", headers=directory.staff)
    current = report(directory, "2026-11").json["totals"]["customer_credit"]["closing"]
    assert Decimal(current) == sum(Decimal(credit["value"]) for credit in live.json)


def test_closing_is_the_next_opening(directory: Directory, labels: dict[str, str]) -> None:
    bodies = [report(directory, period).json for period in PERIODS]
    for this, following in zip(bodies, bodies[1:], strict=False):
        closing = {r["uuid"]: r["closing"] for r in this["rows"]}
        opening = {r["uuid"]: r["opening"] for r in following["rows"]}
        assert {u: v for u, v in opening.items() if u in closing} == closing
        assert all(opening[u] == money("0") for u in opening if u not in closing)


def test_movements_are_keyed_by_billing_period(directory: Directory,
                                               labels: dict[str, str]) -> None:
    """September records August's usage (posted late) and its close beside September's."""
    rows = {row["uuid"]: row for row in report(directory, "2026-09").json["rows"]}
    zero = money("0")

    def split(label: str) -> dict[Any, dict[str, str]]:
        return {entry["billing_period"]: {k: v for k, v in entry.items()
                                          if k != "billing_period" and v != zero}
                for entry in rows[labels[label]]["by_billing_period"]}

    assert split("org") == {"2026-08": {"consumed": money("-60")},
                            "2026-09": {"consumed": money("-100")}}
    assert split("B") == {"2026-08": {"floor_draws": money("-50")},
                          "2026-09": {"consumed": money("-60")}}
    october = {row["uuid"]: row for row in report(directory, "2026-10").json["rows"]}
    assert october[labels["org"]]["by_billing_period"] == [
        {"billing_period": None, **dict.fromkeys(COLUMNS[1:-1], zero),
         "written_off": money("-105")},
        {"billing_period": "2026-09", **dict.fromkeys(COLUMNS[1:-1], zero),
         "consumed": money("-5")}]


def test_usage_by_billing_period(directory: Directory, labels: dict[str, str]) -> None:
    body = report(directory, "2026-09", "/api/reconciliation/usage/").json
    assert body["billing_period"] == "2026-09" and body["closed"] is True
    by_uuid = {row["uuid"]: row for row in body["rows"]}
    assert {k: by_uuid[labels["B"]][k] for k in ("consumed", "floor_draws", "expired",
                                                  "reversed", "total")} == {
        "consumed": money("-60"), "floor_draws": money("0"), "expired": money("-80"),
        "reversed": money("40"), "total": money("-100")}
    assert by_uuid[labels["A"]]["consumed"] == money("-45")
    org = body["totals"]["customer_credit"]
    assert org["consumed"] == money("-105")
    assert org["recorded_in"] == {"2026-09": money("-100"), "2026-10": money("-5")}
    assert body["totals"]["project_credit"]["total"] == money("-145")
    open_period = report(directory, "2026-11", "/api/reconciliation/usage/").json
    assert open_period["closed"] is False and open_period["rows"] == []


def test_a_month_never_changes_once_ended(months: Months, directory: Directory,
                                          labels: dict[str, str]) -> None:
    before = {period: report(directory, period).json for period in PERIODS[:-1]}
    months.go("2026-11-27")
    close(directory, "2026-10", reopen=True)
    project = call(directory, "GET", "/api/projects/", None)
    consume(directory, "2026-10", ("late", next(p for p in project if p["name"] == "C"), "7"))
    close(directory, "2026-10")
    call(directory, "PATCH", f"/api/customer-credits/{labels['org']}/", {"value": "2000"})
    for period, body in before.items():
        assert report(directory, period).json == body, period
    november = report(directory, "2026-11").json
    org = next(row for row in november["rows"] if row["uuid"] == labels["org"])
    assert org["consumed"] == money("-32") and org["closing"] == money("2000")
    assert_balances_are_as_of(directory, november)


def test_a_new_users_day(months: Months, directory: Directory) -> None:
    """Credits created today, usage posted for last month, last month closed."""
    months.go("2026-11-26")
    org = directory.customer("Müller GmbH")
    projects = [directory.project(org, name) for name in ("Web", "Batch")]
    directory.customer_credit(org, "1000")
    directory.project_credit(projects[0], "300")
    consume(directory, "2026-10", ("w1", projects[0], "120.50"), ("b1", projects[1], "80.12"))
    close(directory, "2026-10")
    october = report(directory, "2026-10").json
    assert october["rows"] == []  # nothing existed when October ended
    november = report(directory, "2026-11").json
    assert_balances_are_as_of(directory, november)
    rows = {row["project_name"]: row for row in november["rows"]}
    assert [rows[""][c] for c in ("opening", "created", "consumed", "closing")] == [
        money("0"), money("1000"), money("-200.62"), money("799.38")]
    assert rows["Web"]["by_billing_period"][1]["billing_period"] == "2026-10"
    assert november["summary"]["closing_matches"] is True


def test_csv_opens_in_a_spreadsheet(months: Months, directory: Directory,
                                    labels: dict[str, str]) -> None:
    months.go("2026-11-27")
    evil = directory.customer('=HYPERLINK("http://x","click")')
    directory.customer_credit(evil, "10")
    body = report(directory, "2026-11").json
    for params, headers in (({"format": "csv"}, {}), ({}, {"Accept": "text/csv"})):
        result = directory.client.simulate_get(
            "/api/reconciliation/", params={"period": "2026-11", **params},
            headers={**directory.staff, **headers})
        assert result.status_code == 200
        assert result.headers["Content-Type"].startswith("text/csv")
        assert result.headers["X-Reconciliation-Ties-Out"] == "true"
        assert result.content.startswith("\ufeff".encode())
        credit_lines = csv_rows(result)
        assert [line["uuid"] for line in credit_lines] == [r["uuid"] for r in body["rows"]]
        for line, found in zip(credit_lines, body["rows"], strict=True):
            assert line["month"] == "2026-11"
            for column in COLUMNS:
                assert Decimal(line[column]) == Decimal(found[column])
                float(line[column])  # a number to a spreadsheet, also when negative
        names = {line["customer_name"] for line in credit_lines}
        assert "'=HYPERLINK(\"http://x\",\"click\")" in names
    late = [line for line in csv_lines(directory, "2026-11", "billing_periods")
            if line["uuid"] == labels["org"]]
    assert [(line["billing_period"], line["consumed"]) for line in late] == [
        ("2026-10", money("-25"))]
    assert {line["kind"] for line in csv_lines(directory, "2026-11", "totals")} == {
        "customer_credit", "project_credit"}
    plain = directory.client.simulate_get(
        "/api/reconciliation/csv/", params={"period": "2026-11", "bom": "false"},
        headers=directory.staff)
    assert plain.text.startswith("month,kind,uuid,")


def csv_lines(directory: Directory, period: str, lines: str,
              path: str = "/api/reconciliation/csv/") -> list[dict[str, str]]:
    """The CSV's rows through the `csv` module, keyed by its header."""
    result = report(directory, period, path, format="csv", lines=lines)
    return csv_rows(result)


def test_cli_export_writes_csv_json_and_stdout(directory: Directory, labels: dict[str, str],
                                               database_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    body = report(directory, "2026-09").json
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    out = tmp_path / "september.csv"
    code = cli.main(["export", "reconciliation", "--period", "2026-09", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "every row ties out: True" in captured.out
    with out.open(newline="", encoding="utf-8-sig") as handle:
        parsed = list(csv.DictReader(handle))
    assert [row["closing"] for row in parsed] == [r["closing"] for r in body["rows"]]
    assert cli.main(["export", "reconciliation", "--period", "2026-09", "--out", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("\ufeffmonth,kind,") and "Wrote" in captured.err
    assert captured.out.replace("\r\n", "\n") == out.read_text(
        encoding="utf-8").replace("\r\n", "\n")
    as_json = tmp_path / "september.json"
    assert cli.main(["export", "reconciliation", "--period", "2026-09",
                     "--out", str(as_json)]) == 0
    assert json.loads(as_json.read_text()) == body
    totals = tmp_path / "totals.csv"
    assert cli.main(["export", "reconciliation", "--period", "2026-09", "--lines", "totals",
                     "--out", str(totals)]) == 0
    with totals.open(newline="", encoding="utf-8-sig") as handle:
        by_kind = {line["kind"]: line["closing"] for line in csv.DictReader(handle)}
    assert by_kind == {kind: figures["closing"] for kind, figures in body["totals"].items()}


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
    for path in ("/api/reconciliation/", "/api/reconciliation/usage/"):
        assert get(path, headers=directory.staff).json == {"period": ["This field is required."]}
        for period in ("2026-13", "nope"):
            result = get(path, params={"period": period}, headers=directory.staff)
            assert result.status_code == 400 and list(result.json) == ["period"]
        future = get(path, params={"period": "2026-12"}, headers=directory.staff)
        assert future.json == {"period": ["Billing period 2026-12 has not started yet."]}
        wrong = get(path, params={"period": "2026-11", "format": "xml"}, headers=directory.staff)
        assert wrong.status_code == 400 and list(wrong.json) == ["format"]
        lines = get(path, params={"period": "2026-11", "format": "csv", "lines": "all"},
                    headers=directory.staff)
        assert lines.status_code == 400 and lines.json == {"lines": [
            "Select a valid choice. all is not one of the available choices."]}
        bom = get(path, params={"period": "2026-11", "format": "csv", "bom": "maybe"},
                  headers=directory.staff)
        assert bom.status_code == 400 and bom.json == {"bom": ["Must be a valid boolean."]}
        user = directory.user(f"someone-{len(path)}")
        assert get(path, params={"period": "2026-11"}, headers=user).status_code == 403
        support = directory.user(f"support-{len(path)}", support=True)
        assert get(path, params={"period": "2026-11"}, headers=support).status_code == 200
        assert get(path, params={"period": "2026-11"}).status_code == 401


def test_empty_ledger(directory: Directory) -> None:
    body = report(directory, "2026-11").json
    assert body["rows"] == [] and body["summary"]["all_rows_tie_out"] is True
    assert body["totals"]["customer_credit"]["closing"] == "0.00000"
