"""GET /api/customer-credits/{uuid}/statement/: an organisation's month, for its owners.

Uses the several-month script of test_reconciliation (labels: credit uuid by name).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.support import Directory, csv_rows
from tests.test_reconciliation import labels, money, months  # noqa: F401 - fixtures

PATH = "/api/customer-credits/{}/statement/"


def get(directory: Directory, uuid: str, headers: dict[str, str] | None,
        **params: Any) -> Any:
    return directory.client.simulate_get(PATH.format(uuid), params=params, headers=headers)


def as_of_value(directory: Directory, uuid: str, moment: str) -> str:
    found = directory.client.simulate_get(f"/api/customer-credits/{uuid}/",
                                          params={"as_of": moment}, headers=directory.staff)
    return str(found.json["value"])


def owner_of(directory: Directory, name: str, role: str = "owner") -> dict[str, str]:
    headers = directory.user(name)
    org = next(c for c in directory.client.simulate_get(
        "/api/customers/", headers=directory.staff).json if c["name"] == "Org")
    directory.grant(name, "customer", org["uuid"], role)
    return headers


def test_owner_reads_the_month(directory: Directory, labels: dict[str, str]) -> None:  # noqa: F811
    owner = owner_of(directory, "owner")
    result = get(directory, labels["org"], owner, period="2026-09")
    assert result.status_code == 200, result.text
    body = result.json
    assert (body["period"], body["opening"], body["closing"], body["ties_out"]) == (
        "2026-09", money("1330"), money("1170"), True)
    assert body["closing"] == as_of_value(directory, labels["org"], body["closing_at"])
    assert body["opening"] == as_of_value(directory, labels["org"], body["opening_at"])
    lines = [(line["credit"], line["type"], line["item_id"], line["billing_period"],
              line["amount"]) for line in body["lines"]]
    # one save's order across aggregates is not fixed: compare as sets, then check that
    # each credit's balance_after runs from its opening, in statement order
    assert sorted(lines) == sorted([
        ("organisation", "compensation", "a2", "2026-08", money("-50")),
        ("organisation", "compensation", "c2", "2026-08", money("-10")),
        ("project", "compensation", "a2", "2026-08", money("-50")),
        ("project", "minimal_draw", None, "2026-08", money("-50")),
        ("organisation", "compensation", "a3", "2026-09", money("-40")),
        ("organisation", "compensation", "b3", "2026-09", money("-60")),
        ("project", "compensation", "a3", "2026-09", money("-40")),
        ("project", "compensation", "b3", "2026-09", money("-60")),
    ]), lines
    running = {labels["org"]: Decimal(body["opening"]), labels["A"]: Decimal("200"),
               labels["B"]: Decimal("150")}
    for line in body["lines"]:
        running[line["credit_uuid"]] += Decimal(line["amount"])
        assert Decimal(line["balance_after"]) == running[line["credit_uuid"]], line
    assert sorted((p["project_name"], p["opening"], p["closing"])
                  for p in body["project_credits"]) == [
        ("A", money("200"), money("110")), ("B", money("150"), money("40"))]
    current = get(directory, labels["org"], owner, period="2026-11").json
    live = directory.client.simulate_get(f"/api/customer-credits/{labels['org']}/",
                                         headers=directory.staff).json
    assert current["closing"] == live["value"] == money("1035")


def test_only_staff_support_and_owners(directory: Directory,
                                       labels: dict[str, str]) -> None:  # noqa: F811
    uuid = labels["org"]
    credit_404 = directory.client.simulate_get(f"/api/customer-credits/{uuid}/",
                                               headers=directory.user("stranger"))
    for headers in (directory.staff, directory.user("helpdesk", support=True)):
        assert get(directory, uuid, headers, period="2026-09").status_code == 200
    manager = owner_of(directory, "manager", role="manager")
    denied = get(directory, uuid, manager, period="2026-09")
    assert (denied.status_code, denied.json) == (
        403, {"detail": "You do not have permission to perform this action."})
    hidden = get(directory, uuid, directory.user("nobody"), period="2026-09")
    assert (hidden.status_code, hidden.json) == (404, credit_404.json)
    assert get(directory, uuid, None, period="2026-09").status_code == 401
    assert get(directory, "not-a-uuid", directory.staff, period="2026-09").status_code == 404
    bad = get(directory, uuid, directory.staff, period="2026-13")
    assert bad.status_code == 400 and list(bad.json) == ["period"]
    missing = get(directory, uuid, directory.staff)
    assert missing.json == {"period": ["This field is required."]}


def test_csv_statement(directory: Directory, labels: dict[str, str]) -> None:  # noqa: F811
    body = get(directory, labels["org"], directory.staff, period="2026-10").json
    result = get(directory, labels["org"], directory.staff, period="2026-10", format="csv")
    assert result.status_code == 200 and result.headers["Content-Type"].startswith("text/csv")
    assert result.content.startswith("\ufeff".encode())
    rows = csv_rows(result)
    assert len(rows) == len(body["lines"]) and {row["month"] for row in rows} == {"2026-10"}
    assert {row["scope"] for row in rows} == {"organisation", "project"}
    for row in rows:
        assert Decimal(row["amount"]) == Decimal(str(float(row["amount"])))
        assert datetime.fromisoformat(row["date"]).utcoffset() is not None
        assert (row["project_balance"] == "") == (row["scope"] == "organisation")
    own = [row for row in rows if row["scope"] == "organisation"]
    assert Decimal(body["opening"]) + sum(Decimal(r["amount"]) for r in own) == \
        Decimal(own[-1]["organisation_balance"]) == Decimal(body["closing"]) == Decimal("1060")
    assert ("a4", "2026-09") in {(row["item_id"], row["billing_period"]) for row in own}
    for scope in ("organisation", "project"):
        for column, total in body["totals"][scope].items():
            assert sum((Decimal(r["amount"]) for r in rows
                        if r["scope"] == scope and r["column"] == column), Decimal(0)) == \
                Decimal(total), (scope, column)
    assert body["totals"]["organisation"]["written_off"] == money("-105")
    assert body["totals"]["project"]["expired"] == money("-80")
