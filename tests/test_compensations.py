"""Withdrawable adjustments, clear/apply compensations, grant comments and protected
earmarks through the API; their events replay exactly (rebuild, verify, reconciliation)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from api import cli
from api.server.wiring import Services
from ledger.credits import CustomerCredit
from tests.scenario import run_scenario
from tests.support import Directory, read_model_rows


def _ok(result: Any, status: int = 200) -> Any:
    assert result.status_code == status, result.text
    return result.json


def run_compensations(directory: Directory) -> dict[str, Any]:
    """The shared scenario, then protect, adjust, post an open period, clear, top up, apply.

    After the scenario the organisation holds 600 and no earmarks.
    """
    client, staff = directory.client, directory.staff
    found = run_scenario(directory)
    cc, (_, _, c) = found["cc"], found["projects"]
    base = f"/api/customer-credits/{cc['uuid']}/"
    d = directory.project(found["org"], "D")
    pd = directory.project_credit(d, "100")
    _ok(client.simulate_patch(base, json={"protect_allocations": True}, headers=staff))
    posted = [_ok(client.simulate_post("/api/consumptions/", json=[item], headers=staff), 201)[0]
              for item in ({"id": "c-700", "project": c["url"], "amount": "700",
                            "period": "2025-03"},
                           {"id": "d-100", "project": d["url"], "amount": "100",
                            "period": "2025-03"})]
    _ok(client.simulate_post(base + "adjust_withdrawable/",
                             json={"amount": "25", "comment": "affiliate fee"}, headers=staff))
    cleared = client.simulate_post(base + "clear_compensations/", headers=staff)
    assert (cleared.status_code, cleared.text) == (200, "")
    after_clear = _ok(client.simulate_get(base, headers=staff))
    _ok(client.simulate_patch(base, json={"value": "900", "comment": "Q4 top-up PO#123"},
                              headers=staff))
    applied = client.simulate_post(base + "apply_compensations/", headers=staff)
    assert (applied.status_code, applied.text) == (200, "")
    return {**found, "d": d, "pd": pd, "posted": posted, "after_clear": after_clear,
            "base": base}


def test_adjust_clear_apply_move_balances_by_the_expected_amounts(
        directory: Directory) -> None:
    client, staff = directory.client, directory.staff
    found = run_compensations(directory)
    # protected: c's pool draw leaves D's earmark (600 - 100), which D can still draw
    assert [(p["id"], p["drawn_from_project_credit"], p["drawn_from_customer_credit"],
             p["uncovered"]) for p in found["posted"]] == [
        ("c-700", "0.00000", "500.00000", "200.00000"),
        ("d-100", "100.00000", "0.00000", "0.00000")]
    # cleared: every draw given back (0 + 25 + 500 + 100), the items stay posted, uncovered
    assert (found["after_clear"]["value"], found["after_clear"]["withdrawable_balance"]) == (
        "625.00000", "25.00000")
    item = _ok(client.simulate_get("/api/consumptions/c-700/", headers=staff))
    # after the top-up to 900, re-applying covers both items in full: 900 - 100 - 700
    credit = _ok(client.simulate_get(found["base"], headers=staff))
    assert (credit["value"], credit["withdrawable_balance"], credit["protect_allocations"]) == (
        "100.00000", "25.00000", True)
    assert (item["drawn_from_customer_credit"], item["uncovered"]) == ("700.00000", "0.00000")
    pd = _ok(client.simulate_get(f"/api/project-credits/{found['pd']['uuid']}/", headers=staff))
    assert pd["value"] == "0.00000"

    rows = _ok(client.simulate_get("/api/credit-transactions/", headers=staff, params={
        "credit_uuid": found["cc"]["uuid"], "o": "created", "page_size": "100"}))
    assert [(r["transaction_type"], r["amount"], r["comment"], r["balance_after"])
            for r in rows][-8:] == [
        ("compensation", "-500.00000", "Consumption item c-700.", "100.00000"),
        ("compensation", "-100.00000", "Consumption item d-100.", "0.00000"),
        ("withdrawable_adjustment", "25.00000", "affiliate fee", "25.00000"),
        ("rollback", "500.00000", "Consumption item c-700.", "525.00000"),
        ("rollback", "100.00000", "Consumption item d-100.", "625.00000"),
        ("staff_grant", "275.00000", "Q4 top-up PO#123", "900.00000"),
        ("compensation", "-100.00000", "Consumption item d-100.", "800.00000"),
        ("compensation", "-700.00000", "Consumption item c-700.", "100.00000"),
    ]
    assert [r["billing_period"] for r in rows[-5:-3]] == ["2025-03-01", "2025-03-01"]

    history = _ok(client.simulate_get(found["base"] + "history/", headers=staff))
    kinds = [(e["type"], e["transaction_type"], e["comment"]) for e in history]
    assert ("WithdrawableAdjusted", "withdrawable_adjustment", "affiliate fee") in kinds
    assert ("DrawsRolledBack", "rollback", "") in kinds
    assert ("Granted", "staff_grant", "Q4 top-up PO#123") in kinds
    assert history[0]["comment"] == ""  # created without a comment
    for period in ("2025-03", "2026-11"):
        report = client.simulate_get("/api/reconciliation/", params={"period": period},
                                     headers=staff)
        assert report.headers["X-Reconciliation-Ties-Out"] == "true", report.text


@pytest.mark.parametrize(("body", "errors"), [
    ({"amount": "0", "comment": "x"}, {"amount": ["Amount must not be zero."]}),
    ({"amount": "5", "comment": " "}, {"comment": ["A comment is required."]}),
    ({"amount": "5"}, {"comment": ["This field is required."]}),
    ({"amount": "-26", "comment": "x"}, {"amount": [
        "Reduction would exceed the withdrawable balance."]}),
    ({"amount": "-1000", "comment": "x"}, {"amount": [
        "Adjustment would make the credit value negative."]}),
    ({"amount": "1.123456", "comment": "x"}, {"amount": [
        "Ensure that there are no more than 5 decimal places."]}),
])
def test_adjust_withdrawable_refuses_as_upstream(directory: Directory, body: dict[str, Any],
                                                 errors: dict[str, Any]) -> None:
    org = directory.customer("Org")
    cc = directory.customer_credit(org, "100")
    url = f"/api/customer-credits/{cc['uuid']}/adjust_withdrawable/"
    _ok(directory.client.simulate_post(url, json={"amount": "25", "comment": "fee"},
                                       headers=directory.staff))
    refused = directory.client.simulate_post(url, json=body, headers=directory.staff)
    assert (refused.status_code, refused.json) == (400, errors)
    reduced = _ok(directory.client.simulate_post(url, json={"amount": "-25", "comment": "paid"},
                                                 headers=directory.staff))
    assert (reduced["value"], reduced["withdrawable_balance"]) == ("100.00000", "0.00000")


def test_withdrawable_money_is_spent_last(services: Services) -> None:
    from uuid import uuid4

    from ledger.terms import Terms

    credit = CustomerCredit(customer_id=uuid4(), value=Decimal(10), terms=Terms().as_kwargs(),
                            offering_ids=[], actor="t")
    credit.adjust_withdrawable(Decimal(30), "fee", "t")
    credit.set_value(Decimal(35), "t")
    assert credit.withdrawable == Decimal(30)
    credit.set_value(Decimal(20), "t")
    assert credit.withdrawable == Decimal(20)


def test_rebuild_and_verify_replay_the_new_events(directory: Directory, services: Services,
                                                 database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run_compensations(directory)
    live = read_model_rows(services.engine)
    services.projector.rebuild()
    assert read_model_rows(services.engine) == live
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    assert cli.main(["verify"]) == 0


def test_comments_on_creation_and_update_of_both_credit_kinds(directory: Directory) -> None:
    client, staff = directory.client, directory.staff
    org = directory.customer("Org")
    project = directory.project(org, "P")
    cc = directory.post("/api/customer-credits/", {"customer": org["url"], "value": "100",
                                                   "comment": "contract 42"})
    pc = directory.post("/api/project-credits/", {"project": project["url"], "value": "10",
                                                  "comment": "pilot"})
    _ok(client.simulate_put(f"/api/project-credits/{pc['uuid']}/", json={
        "project": project["url"], "value": "20", "comment": "phase 2"}, headers=staff))
    _ok(client.simulate_patch(f"/api/customer-credits/{cc['uuid']}/",
                              json={"value": "150"}, headers=staff))
    rows = _ok(client.simulate_get("/api/credit-transactions/", headers=staff, params={
        "customer_uuid": org["uuid"], "o": "created"}))
    assert [(r["amount"], r["comment"]) for r in rows] == [
        ("100.00000", "contract 42"), ("10.00000", "pilot"), ("10.00000", "phase 2"),
        ("50.00000", "")]
    history = _ok(client.simulate_get(f"/api/project-credits/{pc['uuid']}/history/",
                                      headers=staff))
    assert [e["comment"] for e in history if e["transaction_type"]] == ["pilot", "phase 2"]
    bad = client.simulate_patch(f"/api/customer-credits/{cc['uuid']}/",
                                json={"value": "1", "comment": 5}, headers=staff)
    assert (bad.status_code, bad.json) == (400, {"comment": ["Not a valid string."]})


def test_created_from_and_created_to_bound_the_recorded_moment(directory: Directory) -> None:
    client, staff = directory.client, directory.staff
    org = directory.customer("Org")
    cc = directory.customer_credit(org, "100")
    _ok(client.simulate_patch(f"/api/customer-credits/{cc['uuid']}/", json={"value": "150"},
                              headers=staff))
    rows = _ok(client.simulate_get("/api/credit-transactions/", headers=staff,
                                   params={"customer_uuid": org["uuid"]}))
    grant, created = rows[0], rows[1]  # newest first
    moment = grant["created"]  # e.g. 2026-11-29T16:00:00.123456+00:00

    def amounts(query: str) -> list[str]:
        found = client.simulate_get("/api/credit-transactions/", headers=staff,
                                    query_string=f"customer_uuid={org['uuid']}&{query}")
        return [row["amount"] for row in _ok(found)]

    assert amounts(f"created_from={moment}") == [grant["amount"]]  # '+' unencoded: a space
    assert amounts(f"created_to={moment.replace('+00:00', '')}") == [created["amount"]]
    assert amounts(f"created_from={created['created'][:10]}") == ["50.00000", "100.00000"]
    bad = client.simulate_get("/api/credit-transactions/", headers=staff,
                              query_string="created_from=2026-13-01")
    assert (bad.status_code, bad.json) == (400, {"created_from": ["Enter a valid date/time."]})
