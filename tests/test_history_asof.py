"""Credit history (every event, in order) and `?as_of=` (state replayed to a moment).

Moments are read from the organisation credit's history: every command of the script
ends with an event on that stream, so its timestamp is a point "just after" the command.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support import Directory
from tests.test_transactions import EXPECTED_A, EXPECTED_B, EXPECTED_ORG, Scenario, run_scenario

ORG_EVENTS = [
    "Created", "AllocationChanged", "AllocationChanged",            # org credit, A, B
    "ItemsDrawn",                                                     # b1, a1, c1 (one batch)
    "ItemsDrawn",                                                     # a2
    "DrawReversed", "AllocationChanged",                              # a2 reversed
    "AllocationChanged", "PeriodSettled",                             # close
    "AllocationChanged", "PeriodReopened",                            # reopen
    "AllocationChanged", "PeriodSettled",                             # close again
    "Granted",                                                        # PATCH value
    "WrittenOff", "AllocationChanged",                                # project A terminated
    "AllocationChanged",                                              # credit B deleted
]
A_EVENTS = ["Created", "ItemsDrawn", "ItemsDrawn", "DrawReversed", "Released"]
B_EVENTS = ["Created", "ItemsDrawn", "FloorCharged", "SettlementReversed", "FloorCharged",
            "Deleted"]
# after the command ending at org version v: (A value, B value, org value, allocated)
CHECKPOINTS = {
    1: (None, None, "1000.00000", "0.00000"),
    2: ("300.00000", None, "1000.00000", "300.00000"),
    3: ("300.00000", "100.00000", "1000.00000", "400.00000"),
    4: ("180.00000", "70.00000", "650.00000", "250.00000"),
    5: ("170.00000", "70.00000", "640.00000", "240.00000"),
    7: ("180.00000", "70.00000", "650.00000", "250.00000"),
    9: ("180.00000", "40.00000", "650.00000", "220.00000"),
    11: ("180.00000", "70.00000", "650.00000", "250.00000"),
    13: ("180.00000", "40.00000", "650.00000", "220.00000"),
    14: ("180.00000", "40.00000", "1200.00000", "220.00000"),
    16: ("0.00000", "40.00000", "1020.00000", "40.00000"),
    17: ("0.00000", None, "1020.00000", "0.00000"),
}
MONEY_TYPES = {"Created", "ItemsDrawn", "DrawReversed", "FloorCharged", "SettlementReversed",
               "Released", "Deleted", "Granted", "WrittenOff", "Expired"}


@pytest.fixture
def scenario(directory: Directory) -> Scenario:
    return run_scenario(directory)


def history(scenario: Scenario, kind: str, uuid: str,
            headers: dict[str, str] | None = None) -> Any:
    return scenario.client.simulate_get(f"/api/{kind}/{uuid}/history/",
                                        headers=headers or scenario.staff)


def org_history(scenario: Scenario) -> list[dict[str, Any]]:
    return history(scenario, "customer-credits", scenario.org_credit["uuid"]).json  # type: ignore


def shifted(timestamp: str, microseconds: int) -> str:
    return (datetime.fromisoformat(timestamp) + timedelta(microseconds=microseconds)).isoformat()


def as_of(scenario: Scenario, path: str, moment: str, **params: Any) -> Any:
    return scenario.client.simulate_get(path, params={"as_of": moment, **params},
                                        headers=scenario.staff)


def lines_of(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(amount, balance after) of each ledger line of an entry: a draw event's item lines."""
    if "lines" in entry:
        return [(line["amount"], line["balance_after"]) for line in entry["lines"]]
    return [(entry["amount"], entry["balance_after"])]


# --- history ------------------------------------------------------------------------------

def test_histories_list_every_event_in_order(scenario: Scenario) -> None:
    org = org_history(scenario)
    a = history(scenario, "project-credits", scenario.credits["A"]["uuid"]).json
    b = history(scenario, "project-credits", scenario.credits["B"]["uuid"]).json
    assert [e["type"] for e in org] == ORG_EVENTS
    assert [e["type"] for e in a] == A_EVENTS
    assert [e["type"] for e in b] == B_EVENTS
    for entries, expected in ((a, EXPECTED_A), (b, EXPECTED_B), (org, EXPECTED_ORG)):
        assert [e["version"] for e in entries] == list(range(1, len(entries) + 1))
        moving = [(e["transaction_type"], *moved) for e in entries if e["amount"] is not None
                  for moved in lines_of(e)]
        assert moving == [(kind, amount, after) for kind, amount, after, _ in expected]
        assert all(e["actor"] == "staff" for e in entries)
        stamps = [e["timestamp"] for e in entries]
        assert stamps == sorted(stamps)


def test_history_entries_match_the_event_store(scenario: Scenario) -> None:
    from uuid import UUID

    credit_id = UUID(scenario.credits["B"]["uuid"])
    events: list[Any] = list(scenario.directory.services.ledger.events.get(credit_id))
    entries = history(scenario, "project-credits", credit_id.hex).json
    assert len(entries) == len(events)
    for entry, event in zip(entries, events, strict=True):
        assert entry["version"] == event.originator_version
        assert entry["type"] == type(event).__name__
        assert datetime.fromisoformat(entry["timestamp"]) == event.timestamp
    floor = entries[2]
    assert floor["changes"] == {"amount": "-30.00000", "period": "2026-10"}
    created = entries[0]["changes"]
    assert created["value"] == "100.00000" and created["terms"]["grace_coefficient"] == "25"
    assert created["project_id"] == scenario.projects["B"]["uuid"]
    assert [e["balance_after"] for e in entries] == [
        "100.00000", "70.00000", "40.00000", "70.00000", "40.00000", "0.00000"]


def test_deleted_credit_history_is_for_staff(scenario: Scenario) -> None:
    directory = scenario.directory
    owner = directory.user("owner")
    directory.grant("owner", "customer", scenario.org["uuid"], "owner")
    support = directory.user("support", support=True)
    deleted = scenario.credits["B"]["uuid"]
    assert history(scenario, "project-credits", deleted).status_code == 200
    assert history(scenario, "project-credits", deleted, support).status_code == 200
    hidden = history(scenario, "project-credits", deleted, owner)
    assert (hidden.status_code, hidden.json) == (
        404, {"detail": "No ProjectCredit matches the given query."})
    live = history(scenario, "project-credits", scenario.credits["A"]["uuid"], owner)
    assert live.status_code == 200 and len(live.json) == len(A_EVENTS)
    assert history(scenario, "customer-credits", scenario.org_credit["uuid"],
                   owner).status_code == 200


def test_history_of_invisible_or_unknown_credit_is_404(scenario: Scenario) -> None:
    outsider = scenario.directory.user("outsider")
    for kind, uuid in (("customer-credits", scenario.org_credit["uuid"]),
                       ("project-credits", scenario.credits["A"]["uuid"]),
                       ("customer-credits", "0" * 32), ("project-credits", "nope")):
        assert history(scenario, kind, uuid, outsider).status_code == 404
    assert history(scenario, "project-credits", scenario.org_credit["uuid"]).status_code == 404
    assert scenario.client.simulate_get(
        f"/api/project-credits/{scenario.credits['A']['uuid']}/history/").status_code == 401


# --- as of --------------------------------------------------------------------------------

def test_retrieve_as_of_every_checkpoint(scenario: Scenario) -> None:
    org = org_history(scenario)
    a, b = scenario.credits["A"]["uuid"], scenario.credits["B"]["uuid"]
    org_path = f"/api/customer-credits/{scenario.org_credit['uuid']}/"
    for version, (a_value, b_value, org_value, allocated) in CHECKPOINTS.items():
        moment = org[version - 1]["timestamp"]
        org_now = as_of(scenario, org_path, moment)
        assert (org_now.json["value"], org_now.json["allocated_to_projects"]) == (
            org_value, allocated), version
        for uuid, value in ((a, a_value), (b, b_value)):
            found = as_of(scenario, f"/api/project-credits/{uuid}/", moment)
            if value is None:
                assert found.status_code == 404, version
                continue
            assert found.json["value"] == value, version
            assert found.json["customer_credit"] == org_value
            assert found.json["allocated_customer_credit"] == allocated
            assert found.json["spendable_value"] == min(value, org_value, key=float)


def test_before_creation_is_404_and_the_moment_is_inclusive(scenario: Scenario) -> None:
    org = org_history(scenario)
    before = shifted(org[0]["timestamp"], -1)
    path = f"/api/customer-credits/{scenario.org_credit['uuid']}/"
    assert as_of(scenario, path, before).status_code == 404
    assert as_of(scenario, path, org[0]["timestamp"]).json["value"] == "1000.00000"
    a = history(scenario, "project-credits", scenario.credits["A"]["uuid"]).json
    drawn = a[1]["timestamp"]
    credit = f"/api/project-credits/{scenario.credits['A']['uuid']}/"
    assert as_of(scenario, credit, shifted(drawn, -1)).json["value"] == "300.00000"
    assert as_of(scenario, credit, drawn).json["value"] == "180.00000"


def test_list_as_of(scenario: Scenario) -> None:
    org = org_history(scenario)
    a, b = scenario.credits["A"]["uuid"], scenario.credits["B"]["uuid"]

    def listed(version: int, **params: Any) -> list[tuple[str, str]]:
        found = as_of(scenario, "/api/project-credits/", org[version - 1]["timestamp"],
                      **params)
        assert found.status_code == 200
        assert found.headers["X-Result-Count"] == str(len(found.json))
        return [(c["uuid"], c["value"]) for c in found.json]

    assert listed(1) == []
    assert listed(2) == [(a, "300.00000")]
    assert listed(4) == [(a, "180.00000"), (b, "70.00000")]
    assert listed(4, o="value") == [(b, "70.00000"), (a, "180.00000")]
    assert listed(4, o="-value") == [(a, "180.00000"), (b, "70.00000")]
    assert listed(4, project_uuid=scenario.projects["B"]["uuid"]) == [(b, "70.00000")]
    assert listed(17) == [(a, "0.00000")]
    page = as_of(scenario, "/api/project-credits/", org[3]["timestamp"], page_size=1, page=2)
    assert [c["uuid"] for c in page.json] == [b]
    assert page.headers["X-Result-Count"] == "2"
    head = scenario.client.simulate_head("/api/project-credits/", headers=scenario.staff,
                                         params={"as_of": org[3]["timestamp"]})
    assert head.headers["X-Result-Count"] == "2"
    customers = as_of(scenario, "/api/customer-credits/", org[0]["timestamp"])
    assert [(c["uuid"], c["value"]) for c in customers.json] == [
        (scenario.org_credit["uuid"], "1000.00000")]
    later = as_of(scenario, "/api/customer-credits/", org[-1]["timestamp"], o="-value")
    assert [c["value"] for c in later.json] == ["1020.00000", "50.00000"]


def test_as_of_now_matches_the_live_view(scenario: Scenario) -> None:
    """Same shape and numbers; only the month-derived fields are null in the past."""
    now = datetime.now().astimezone().isoformat()
    path = f"/api/project-credits/{scenario.credits['A']['uuid']}/"
    live = scenario.get(path)
    past = as_of(scenario, path, now).json
    assert list(past) == list(live)
    assert live["consumption_last_month"] == "120.00000"
    assert (past["consumption_last_month"], past["creditable_cost_this_month"]) == (None, None)
    derived = ("consumption_last_month", "creditable_cost_this_month", "runway_months")
    assert {k: v for k, v in past.items() if k not in derived} == {
        k: v for k, v in live.items() if k not in derived}
    org_path = f"/api/customer-credits/{scenario.org_credit['uuid']}/"
    live_org, past_org = scenario.get(org_path), as_of(scenario, org_path, now).json
    assert list(past_org) == list(live_org)
    assert {k: v for k, v in past_org.items() if k not in derived} == {
        k: v for k, v in live_org.items() if k not in derived}


def test_as_of_respects_visibility_and_scoped_fields(scenario: Scenario) -> None:
    directory = scenario.directory
    member = directory.user("member")
    directory.grant("member", "project", scenario.projects["A"]["uuid"], "member")
    moment = org_history(scenario)[3]["timestamp"]
    path = f"/api/project-credits/{scenario.credits['A']['uuid']}/"
    mine = scenario.client.simulate_get(path, params={"as_of": moment}, headers=member)
    assert mine.status_code == 200 and mine.json["value"] == "180.00000"
    assert "customer_credit" not in mine.json
    other = scenario.client.simulate_get(
        f"/api/customer-credits/{scenario.org_credit['uuid']}/", params={"as_of": moment},
        headers=member)
    assert other.status_code == 404


def test_malformed_as_of_is_400(scenario: Scenario) -> None:
    for path in ("/api/project-credits/", "/api/customer-credits/",
                 f"/api/project-credits/{scenario.credits['A']['uuid']}/",
                 f"/api/customer-credits/{scenario.org_credit['uuid']}/"):
        for text in ("yesterday", "2026-11-31T10:00:00", "0001-01-01T00:00:00+01:00"):
            result = as_of(scenario, path, text)
            assert result.status_code == 400, (path, text)
            assert list(result.json) == ["as_of"] and "wrong format" in result.json["as_of"][0]


def test_as_of_spellings(scenario: Scenario) -> None:
    """Z, naive (UTC), and an offset whose '+' arrived unencoded."""
    moment = datetime.fromisoformat(org_history(scenario)[0]["timestamp"])
    path = f"/api/customer-credits/{scenario.org_credit['uuid']}/"
    zulu = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    naive = moment.replace(tzinfo=None).isoformat()
    for spelling in (zulu, naive):
        assert as_of(scenario, path, spelling).json["value"] == "1000.00000"
    raw = scenario.client.simulate_get(path, query_string=f"as_of={moment.isoformat()}",
                                       headers=scenario.staff)
    assert raw.status_code == 200 and raw.json["value"] == "1000.00000"
