"""GET /api/customer-credits/{uuid}/months/: the console's chart and month table in one
request, equal to the reconciliation's rows and to `?as_of=` at each month's end.

Uses the several-month script of test_reconciliation (labels: credit uuid by name).
"""

from __future__ import annotations

from typing import Any

from tests.support import Directory
from tests.test_reconciliation import (  # noqa: F401 - fixtures
    as_of_value,
    labels,
    money,
    months,
)
from tests.test_statements import owner_of

PATH = "/api/customer-credits/{}/months/"
FIGURES = ("opening", "created", "top_ups", "reductions", "withdrawable_adjustments",
           "consumed", "draws_reversed", "floor_draws", "expired", "written_off", "reversed",
           "adjustments", "closing", "ties_out")


def get(directory: Directory, uuid: str, headers: dict[str, str] | None, **params: Any) -> Any:
    return directory.client.simulate_get(PATH.format(uuid), params=params, headers=headers)


def test_each_month_is_its_reconciliation_row(directory: Directory,
                                              labels: dict[str, str]) -> None:  # noqa: F811
    body = get(directory, labels["org"], directory.staff, months="6").json
    assert [m["month"] for m in body["months"]] == [
        "2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    assert [m["closed"] for m in body["months"]] == [False, True, True, True, True, False]
    for month in body["months"]:
        report = directory.client.simulate_get("/api/reconciliation/", params={
            "period": month["month"]}, headers=directory.staff).json
        row = next((r for r in report["rows"] if r["uuid"] == labels["org"]), None)
        expected = {name: row[name] for name in FIGURES} if row else {
            **{name: money("0") for name in FIGURES[:-1]}, "ties_out": True}
        assert {name: month[name] for name in FIGURES} == expected, month["month"]


def test_month_ends_are_as_of_balances(directory: Directory,
                                       labels: dict[str, str]) -> None:  # noqa: F811
    body = get(directory, labels["org"], directory.staff, months="6").json
    for month in body["months"]:
        org = {"kind": "customer_credit", "uuid": labels["org"]}
        assert month["closing"] == as_of_value(directory, org, month["closing_at"])
    assert body["months"][-1]["closing"] == directory.client.simulate_get(
        f"/api/customer-credits/{labels['org']}/", headers=directory.staff).json["value"]
    by_name = {line["project_name"]: line for line in body["project_credits"]}
    assert sorted(by_name) == ["A", "B"]
    for name in ("A", "B"):
        credit = {"kind": "project_credit", "uuid": labels[name]}
        for month, end in zip(body["months"], by_name[name]["month_ends"], strict=True):
            expected = as_of_value(directory, credit, month["closing_at"])
            assert (end or money("0")) == expected, (name, month["month"])
    assert by_name["A"]["month_ends"][0] is None  # June: created in July


def test_owners_staff_and_support_only(directory: Directory,
                                       labels: dict[str, str]) -> None:  # noqa: F811
    uuid = labels["org"]
    assert get(directory, uuid, owner_of(directory, "owner")).status_code == 200
    assert get(directory, uuid, directory.user("help", support=True)).status_code == 200
    assert get(directory, uuid, directory.user("stranger")).status_code == 404
    assert get(directory, uuid, owner_of(directory, "manager", "manager")).status_code == 403
    assert get(directory, uuid, None).status_code == 401
    bad = get(directory, uuid, directory.staff, months="0")
    assert (bad.status_code, bad.json) == (
        400, {"months": ["Ensure this value is a whole number from 1 to 36."]})
