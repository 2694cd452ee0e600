"""Books an auditor signs: consumption items listed with what nobody paid for, one movement
kind per column, CSVs whose columns sum to the JSON totals, and who may read them.

The several-month script of test_reconciliation provides the data for the sums.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.support import Directory, csv_rows
from tests.test_reconciliation import (  # noqa: F401 - fixtures
    PERIODS,
    Months,
    call,
    consume,
    csv_lines,
    labels,
    money,
    months,
    report,
)

ITEMS = "/api/consumptions/"


def items(directory: Directory, headers: dict[str, str] | None = None,
          **params: Any) -> Any:
    result = directory.client.simulate_get(ITEMS, params=params,
                                           headers=headers or directory.staff)
    assert result.status_code == 200, result.text
    return result


def has_offset(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() is not None


def uncovered_usage(directory: Directory) -> dict[str, Any]:
    """240 posted for a project whose credit holds 149.50; another organisation beside."""
    org, other = directory.customer("Org"), directory.customer("Other")
    project, elsewhere = directory.project(org, "Web"), directory.project(other, "Batch")
    offering = directory.offering()
    credit = directory.customer_credit(org, "1000")
    other_credit = directory.customer_credit(other, "100")
    earmark = directory.project_credit(project, "149.50")
    directory.post(ITEMS, [
        {"id": "big", "project": project["url"], "offering": offering["url"],
         "amount": "240", "period": "2026-11"}])
    directory.post(ITEMS, [{"id": "gone", "project": project["url"], "amount": "5",
                            "period": "2026-11"}])
    directory.post(ITEMS, [{"id": "there", "project": elsewhere["url"], "amount": "10",
                            "period": "2026-10"}])
    assert directory.client.simulate_delete(f"{ITEMS}gone/",
                                            headers=directory.staff).status_code == 204
    return {"org": org, "other": other, "project": project, "offering": offering,
            "credit": credit, "other_credit": other_credit, "earmark": earmark}


def test_consumption_items_show_posted_drawn_and_uncovered(directory: Directory) -> None:
    made = uncovered_usage(directory)
    big = directory.client.simulate_get(f"{ITEMS}big/", headers=directory.staff).json
    assert {k: big[k] for k in ("amount", "drawn_from_project_credit",
                                "drawn_from_customer_credit", "uncovered", "reversed",
                                "customer_uuid", "offering_uuid", "reversed_by",
                                "project_credit_uuid", "customer_credit_uuid")} == {
        "amount": money("240"), "drawn_from_project_credit": money("149.50"),
        "drawn_from_customer_credit": money("0"), "uncovered": money("90.50"),
        "reversed": False, "customer_uuid": made["org"]["uuid"],
        "offering_uuid": made["offering"]["uuid"], "reversed_by": None,
        "project_credit_uuid": made["earmark"]["uuid"],
        "customer_credit_uuid": made["credit"]["uuid"]}
    listed = items(directory)
    assert listed.headers["X-Result-Count"] == "3"
    assert [item["id"] for item in listed.json] == ["there", "gone", "big"]  # newest first
    assert listed.json[2] == big
    gone = listed.json[1]
    assert gone["reversed"] is True and gone["reversed_by"] == "staff"
    # drew nothing (the earmark was spent, and it never falls back to the pool)
    assert (gone["project_credit_uuid"], gone["customer_credit_uuid"]) == (None, None)
    there = listed.json[0]  # drawn from the other organisation's pool
    assert (there["project_credit_uuid"], there["customer_credit_uuid"]) == (
        None, made["other_credit"]["uuid"])
    assert has_offset(gone["reversed_at"]) and has_offset(gone["created"])
    assert [i["id"] for i in items(directory, uncovered="true").json] == ["gone", "big"]
    assert [i["id"] for i in items(directory, uncovered="true", reversed="false").json] == [
        "big"]
    assert [i["id"] for i in items(directory, uncovered="false").json] == ["there"]
    assert [i["id"] for i in items(directory, reversed="true").json] == ["gone"]
    assert [i["id"] for i in items(directory, period="2026-10").json] == ["there"]
    assert [i["id"] for i in items(directory, customer_uuid=made["org"]["uuid"],
                                   reversed="false").json] == ["big"]
    assert [i["id"] for i in items(directory, project_uuid=made["project"]["uuid"]).json] == [
        "gone", "big"]
    assert [i["id"] for i in items(directory,
                                   offering_uuid=made["offering"]["uuid"]).json] == ["big"]
    # which items a credit paid for (an earmark's draws move its organisation credit too)
    for name, credit, paid_for in (("customer_credit_uuid", "credit", ["big"]),
                                   ("customer_credit_uuid", "other_credit", ["there"]),
                                   ("project_credit_uuid", "earmark", ["big"]),
                                   ("project_credit_uuid", "credit", [])):
        found = items(directory, **{name: made[credit]["uuid"]})
        assert [i["id"] for i in found.json] == paid_for, (name, credit)
        assert found.headers["X-Result-Count"] == str(len(paid_for))
    for name in ("customer_credit_uuid", "project_credit_uuid"):
        refused = directory.client.simulate_get(ITEMS, params={name: "not-a-uuid"},
                                                headers=directory.staff)
        assert refused.status_code == 400 and list(refused.json) == [name], refused.json
    head = directory.client.simulate_head(ITEMS, params={"uncovered": "true"},
                                          headers=directory.staff)
    assert head.status_code == 200 and head.headers["X-Result-Count"] == "2"
    page = items(directory, page_size="2", page="2")
    assert [i["id"] for i in page.json] == ["big"] and 'rel="prev"' in page.headers["Link"]
    for name, value in (("customer_uuid", "x"), ("period", "2026-13"), ("reversed", "maybe"),
                        ("uncovered", "yes please")):
        bad = directory.client.simulate_get(ITEMS, params={name: value},
                                            headers=directory.staff)
        assert bad.status_code == 400 and list(bad.json) == [name], (name, bad.text)


def test_consumption_items_are_visible_as_the_projects_credit(directory: Directory) -> None:
    made = uncovered_usage(directory)
    directory.user("owner")
    directory.grant("owner", "customer", made["org"]["uuid"], "owner")
    owner = {"Authorization": f"Token {directory.tokens['owner']}"}
    directory.user("stranger")
    directory.grant("stranger", "customer", made["other"]["uuid"], "owner")
    stranger = {"Authorization": f"Token {directory.tokens['stranger']}"}
    assert [i["id"] for i in items(directory, owner).json] == ["gone", "big"]
    assert [i["id"] for i in items(directory, stranger).json] == ["there"]
    assert items(directory, directory.user("nobody")).json == []
    assert directory.client.simulate_get(f"{ITEMS}big/", headers=owner).status_code == 200
    hidden = directory.client.simulate_get(f"{ITEMS}big/", headers=stranger)
    assert hidden.status_code == 404
    helpdesk = directory.user("helpdesk", support=True)
    assert items(directory, helpdesk).headers["X-Result-Count"] == "3"
    assert directory.client.simulate_get(ITEMS).status_code == 401


def test_usage_report_shows_posted_drawn_uncovered_per_project(directory: Directory) -> None:
    made = uncovered_usage(directory)
    body = report(directory, "2026-11", "/api/reconciliation/usage/").json
    assert [{k: row[k] for k in ("project_uuid", "posted", "drawn", "uncovered")}
            for row in body["projects"]] == [
        {"project_uuid": made["project"]["uuid"], "posted": money("240"),
         "drawn": money("149.50"), "uncovered": money("90.50")}]
    assert body["project_totals"] == {"posted": money("240"), "drawn": money("149.50"),
                                      "uncovered": money("90.50")}
    lines = csv_lines(directory, "2026-11", "projects", "/api/reconciliation/usage/")
    assert [(r["project_name"], r["posted"], r["drawn"], r["uncovered"]) for r in lines] == [
        ("Web", money("240"), money("149.50"), money("90.50"))]


def test_a_top_up_and_a_reduction_are_two_columns(months: Months,  # noqa: F811
                                                  directory: Directory) -> None:
    months.go("2026-11-10")
    org = directory.customer("Org")
    credit = directory.customer_credit(org, "500")
    path = f"/api/customer-credits/{credit['uuid']}/"
    call(directory, "PATCH", path, {"value": "1500"})
    call(directory, "PATCH", path, {"value": "500"})
    row, = report(directory, "2026-11").json["rows"]
    assert (row["created"], row["top_ups"], row["reductions"], row["closing"]) == (
        money("500"), money("1000"), money("-1000"), money("500"))
    call(directory, "POST", f"{path}adjust_withdrawable/", {"amount": "20", "comment": "fee"})
    row, = report(directory, "2026-11").json["rows"]
    assert (row["top_ups"], row["withdrawable_adjustments"], row["closing"]) == (
        money("1000"), money("20"), money("520"))


def test_every_csv_column_sums_to_its_json_total(directory: Directory,
                                                 labels: dict[str, str]) -> None:  # noqa: F811
    for period in PERIODS:
        body = report(directory, period).json
        assert has_offset(body["opening_at"]) and has_offset(body["closing_at"])
        credits = csv_lines(directory, period, "credits")
        periods = csv_lines(directory, period, "billing_periods")
        totals = {line["kind"]: line for line in csv_lines(directory, period, "totals")}
        for kind, total in body["totals"].items():
            for column, value in total.items():
                if column == "ties_out":
                    continue
                summed = sum((Decimal(line[column]) for line in credits
                              if line["kind"] == kind), Decimal(0))
                assert summed == Decimal(value) == Decimal(totals[kind][column]), (
                    period, kind, column)
                if column not in ("opening", "closing"):
                    by_period = sum((Decimal(line[column]) for line in periods
                                     if line["kind"] == kind), Decimal(0))
                    assert by_period == Decimal(value), (period, kind, column)
        usage = report(directory, period, "/api/reconciliation/usage/").json
        usage_lines = csv_lines(directory, period, "credits", "/api/reconciliation/usage/")
        for kind, total in usage["totals"].items():
            for column in ("consumed", "draws_reversed", "floor_draws", "expired",
                           "reversed", "total"):
                assert sum((Decimal(line[column]) for line in usage_lines
                            if line["kind"] == kind), Decimal(0)) == Decimal(total[column])
        projects = csv_lines(directory, period, "projects", "/api/reconciliation/usage/")
        for column, value in usage["project_totals"].items():
            assert sum((Decimal(line[column]) for line in projects), Decimal(0)) == \
                Decimal(value)


def test_support_reads_every_report_owners_only_their_own(directory: Directory,
                                                          labels: dict[str, str]) -> None:  # noqa: F811
    support = directory.user("helpdesk", support=True)
    get = directory.client.simulate_get
    for path in ("/api/reconciliation/", "/api/reconciliation/csv/",
                 "/api/reconciliation/usage/", f"/api/customer-credits/{labels['org']}/statement/"):
        assert get(path, params={"period": "2026-09"}, headers=support).status_code == 200
    owner = directory.user("owner")
    org = next(c for c in get("/api/customers/", headers=directory.staff).json
               if c["name"] == "Org")
    directory.grant("owner", "customer", org["uuid"], "owner")
    assert get(f"/api/customer-credits/{labels['org']}/statement/", params={
        "period": "2026-09"}, headers=owner).status_code == 200
    assert get("/api/reconciliation/", params={"period": "2026-09"},
               headers=owner).status_code == 403
    rows = csv_rows(get(f"/api/customer-credits/{labels['org']}/statement/",
                        params={"period": "2026-09", "format": "csv"}, headers=owner))
    assert rows and all(has_offset(row["date"]) for row in rows)
