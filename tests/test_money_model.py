"""Money invariants under any sequence of operations: a model-based (stateful) test.

Hypothesis drives the real HTTP API (Falcon's TestClient, on SQLite and PostgreSQL, the
clock travelling with time-machine) through random sequences of what integrators and
finance do: post, re-post, conflict, reverse, earmark, top up and reduce, adjust the
withdrawable part, clear and apply compensations, let time pass and close months. A
small model keeps only what the caller knows: which items are live, and each credit's
value before draws. After every step the service's own figures must agree with it and
with each other, and so must what auditors and finance read: transactions, statements,
CSVs, and ended months' reports, which must never change. At the end every as-of answer
must repeat what was seen at that moment, and so must each credit's history; the journal
must pass beancount's checks, and a replay of the log must equal the live read models.

What the model does not predict it reads back and checks against the rest: which credit
an item drew from (from the item), and what the ledger's own rules moved (floors charged
when a month closes and given back when it re-opens, expiry at an end date, what a
terminated project's or a deleted earmark's credit released) from the months'
reconciliation reports.

    LEDGER_TEST_MONEY_EXAMPLES=200 pytest tests/test_money_model.py   # hunt harder
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from beancount import loader
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from api.app import create_app
from api.server.wiring import build_services
from ledger.periods import Period
from projections.reconciliation import COLUMNS
from projections.verify import verify
from tests.conftest import BACKENDS
from tests.live import backend_url
from tests.support import Directory, csv_rows, messages, read_model_rows, travelling_clock

EXAMPLES = int(os.environ.get("LEDGER_TEST_MONEY_EXAMPLES", "8"))
STEPS = int(os.environ.get("LEDGER_TEST_MONEY_STEPS", "30"))
START = date(2026, 9, 10)
LAST_DAY = date(2027, 3, 20)
AMOUNTS = [Decimal(text) for text in ("0", "0.01", "1", "7.5", "25", "60", "130")]
VALUES = [Decimal(text) for text in ("0", "10", "40", "75", "150", "400")]
ZERO = Decimal(0)
# Refusals a request may meet for the state it finds (the model does not predict them);
# anything else, or any other status, fails the test.
STATE_RULES = (
    "The sum of project credits cannot exceed the credit for organization.",
    "Reduction would exceed the withdrawable balance.",
    "Adjustment would make the credit value negative.",
    "Credit value cannot be negative.",
    "Expected consumption must be smaller than the credit.",
    "The project is terminated.",
)
# reconciliation columns the ledger moves by its own rules: a close (floors, expiry), its
# roll-back when a month re-opens, what a terminated project's credit releases, deletions
SETTLED = ("floor_draws", "expired", "reversed", "written_off", "adjustments")


@dataclass
class Item:
    project: int
    line: dict[str, Any]  # as posted
    answer: dict[str, Any]  # the first post's figures for it
    live: bool = True

    @property
    def id(self) -> str:
        return str(self.line["id"])

    @property
    def amount(self) -> Decimal:
        return Decimal(self.line["amount"])

    @property
    def period(self) -> str:
        return str(self.line["period"])


class MoneyModel(RuleBasedStateMachine):
    """Two organisations with an organisation credit each and three projects: the first
    organisation's credit pays a monthly floor, the second's ends on 2026-11-01 and covers
    only one offering."""

    backend: str
    admin_url: str  # PostgreSQL: the database each example gets a fresh schema in

    def __init__(self) -> None:
        super().__init__()
        self.exits = ExitStack()
        url = self.exits.enter_context(backend_url(
            self.backend, Path(self.exits.enter_context(tempfile.TemporaryDirectory())),
            self.admin_url))
        self.clock = self.exits.enter_context(travelling_clock(START))
        self.services = build_services(url, create_tables=True, today=self.clock)
        self.client = falcon.testing.TestClient(create_app(self.services))
        directory = Directory(self.services, self.client)
        self.staff = directory.staff
        self.orgs = [directory.customer(f"Org {n}") for n in range(2)]
        self.projects = [directory.project(self.orgs[n], f"P{index}")
                         for index, n in enumerate((0, 0, 1))]
        self.offerings = [directory.offering("VM"), directory.offering("Storage")]
        self.org_credits = [
            directory.customer_credit(self.orgs[0], "100", expected_consumption="4"),
            directory.customer_credit(self.orgs[1], "50", end_date="2026-11-01",
                                      offerings=[self.offerings[0]["url"]])]
        # project 0 starts with an earmark that pays a floor of 6 for every month closed
        self.project_credits = {0: directory.project_credit(self.projects[0], "40",
                                                            expected_consumption="6")}
        # each credit's value (by uuid) as if no item had drawn from it: the model's money
        self.base = {self.org_credits[0]["uuid"]: Decimal("100"),
                     self.org_credits[1]["uuid"]: Decimal("50"),
                     self.project_credits[0]["uuid"]: Decimal("40")}
        self.items: list[Item] = []
        self.closed: list[str] = []
        self.terminated: set[int] = set()
        self.counter = 0
        self.seen: list[tuple[str, dict[str, str]]] = []  # (moment, every credit's value)
        self.ended_reports: dict[str, Any] = {}

    def teardown(self) -> None:
        try:
            self._replay_equals_live()
        finally:
            self.services.close()
            self.exits.close()

    # --- helpers -----------------------------------------------------------------------------

    def _org_of(self, project: int) -> int:
        return 0 if project < 2 else 1

    def _get(self, path: str, **params: Any) -> Any:
        result = self.client.simulate_get(path, params=params or None, headers=self.staff)
        assert result.status_code == 200, (path, result.status_code, result.text)
        return result.json

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.simulate_request(method, path, json=body, headers=self.staff)

    def _values(self) -> list[str]:
        """Every credit's value, to show that a refused or repeated request moved nothing."""
        found = [credit["value"] for credit in self._get("/api/customer-credits/")]
        return sorted(found) + sorted(c["value"] for c in self._get("/api/project-credits/"))

    def _accepted_or_state_refusal(self, result: Any, ok: tuple[int, ...] = (200, 201)) -> bool:
        if result.status_code in ok:
            return True
        assert result.status_code == 400, result.text
        found = list(messages(result.json))
        assert found and all(message in STATE_RULES for message in found), result.json
        return False

    def _month(self) -> Period:
        return Period.of(self.clock.today)

    def _first_month(self) -> Period:
        periods = [Period.parse(item.period) for item in self.items] + [Period.of(START)]
        return min(periods)

    def _open_periods(self) -> list[str]:
        """Months posting accepts: after the latest closed one, up to this one."""
        first = (Period.parse(self.closed[-1]).next() if self.closed
                 else Period.of(START).previous())
        found, month = [], first
        while month <= self._month():
            found.append(str(month))
            month = month.next()
        return found

    def _next_to_close(self) -> Period:
        return Period.parse(self.closed[-1]).next() if self.closed else self._first_month()

    def _live_items(self) -> list[Item]:
        return [item for item in self.items if item.live]

    def _item_figures(self) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self._pages("/api/consumptions/")}

    # --- what callers do ---------------------------------------------------------------------

    @rule(lines=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(AMOUNTS),
                                   st.sampled_from([None, 0, 1])), min_size=1, max_size=4),
          data=st.data())
    def post_items(self, lines: list[tuple[int, Decimal, int | None]],
                   data: st.DataObject) -> None:
        """One request of one to four items, drawn cheapest first, all or nothing."""
        period = data.draw(st.sampled_from(self._open_periods()))
        ids = [f"item-{self.counter + n + 1}" for n in range(len(lines))]
        body = [{"id": item_id, "project": self.projects[project]["url"],
                 "amount": str(amount), "period": period,
                 "offering": None if offering is None else self.offerings[offering]["url"]}
                for item_id, (project, amount, offering) in zip(ids, lines, strict=True)]
        before = self._values()
        result = self._send("POST", "/api/consumptions/", body)
        if any(project in self.terminated for project, _, _ in lines):
            assert result.status_code == 400, result.text
            assert self._values() == before
            return
        assert result.status_code == 201, result.text
        self.counter += len(lines)
        for (project, _, _), line, answer in zip(lines, body, result.json, strict=True):
            assert (answer["id"], answer["replayed"]) == (line["id"], False)
            self.items.append(Item(project, line, answer))

    @precondition(lambda self: self._live_items())
    @rule(data=st.data())
    def repost_the_same_item(self, data: st.DataObject) -> None:
        """A replay draws nothing more and repeats the first answer's figures."""
        item = data.draw(st.sampled_from(self._live_items()))
        before = self._values()
        result = self._send("POST", "/api/consumptions/", [item.line])
        assert result.status_code in (200, 201), result.text
        assert result.json[0] == {**item.answer, "replayed": True}
        assert self._values() == before

    @precondition(lambda self: self.items)
    @rule(data=st.data(), extra=st.sampled_from([Decimal("0.01"), Decimal("5")]))
    def repost_an_id_with_another_amount(self, data: st.DataObject, extra: Decimal) -> None:
        """An id is one item: other content (or a reversed id) is refused and moves nothing."""
        item = data.draw(st.sampled_from(self.items))
        before = self._values()
        result = self._send("POST", "/api/consumptions/",
                            [{**item.line, "amount": str(item.amount + extra)}])
        assert result.status_code == 409, result.text
        assert self._values() == before

    @precondition(lambda self: self._live_items())
    @rule(data=st.data())
    def reverse_an_item(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self._live_items()))
        before = self._values()
        result = self._send("DELETE", f"/api/consumptions/{item.id}/")
        if item.period in self.closed:
            assert result.status_code == 409, result.text
            assert self._values() == before
            return
        assert result.status_code == 204, result.text
        item.live = False

    @rule(org=st.integers(0, 1), value=st.sampled_from(VALUES))
    def set_an_organisation_credit(self, org: int, value: Decimal) -> None:
        credit = self.org_credits[org]
        current = Decimal(self._get(f"/api/customer-credits/{credit['uuid']}/")["value"])
        result = self._send("PATCH", f"/api/customer-credits/{credit['uuid']}/",
                            {"value": str(value)})
        if self._accepted_or_state_refusal(result):
            assert Decimal(result.json["value"]) == value
            self.base[credit["uuid"]] += value - current

    @rule(project=st.integers(0, 2), value=st.sampled_from(VALUES),
          floor=st.sampled_from(["0", "6"]))
    def earmark_for_a_project(self, project: int, value: Decimal, floor: str) -> None:
        """Create the project's credit (with a monthly floor or none), or set its value;
        drawn items stay drawn."""
        existing = self.project_credits.get(project)
        if existing is None:
            result = self._send("POST", "/api/project-credits/", {
                "project": self.projects[project]["url"], "value": str(value),
                "expected_consumption": floor})
        else:
            result = self._send("PATCH", f"/api/project-credits/{existing['uuid']}/",
                                {"value": str(value)})
        if self._accepted_or_state_refusal(result):
            assert Decimal(result.json["value"]) == value
            self.project_credits[project] = result.json
            uuid = result.json["uuid"]
            drawn = self._drawn_through(self._item_figures()).get(uuid, ZERO)
            self.base[uuid] = value + drawn - self._settled().get(uuid, ZERO)

    @rule(org=st.integers(0, 1), amount=st.sampled_from(
        [Decimal(text) for text in ("-30", "-0.01", "0.01", "12.5")]))
    def adjust_the_withdrawable_part(self, org: int, amount: Decimal) -> None:
        credit = self.org_credits[org]
        result = self._send("POST", f"/api/customer-credits/{credit['uuid']}/adjust_withdrawable/",
                            {"amount": str(amount), "comment": "model"})
        if self._accepted_or_state_refusal(result):
            self.base[credit["uuid"]] += amount

    @rule(org=st.integers(0, 1), action=st.sampled_from(["clear", "apply"]))
    def compensations(self, org: int, action: str) -> None:
        """Coverage moves between items and credits; the invariants follow the items."""
        credit = self.org_credits[org]
        result = self._send("POST",
                            f"/api/customer-credits/{credit['uuid']}/{action}_compensations/")
        assert result.status_code in (200, 409), result.text

    @precondition(lambda self: self.clock.today < LAST_DAY)
    @rule(days=st.integers(1, 45))
    def time_passes(self, days: int) -> None:
        self.clock.today = min(self.clock.today + timedelta(days=days), LAST_DAY)

    @precondition(lambda self: self._closable())
    @rule()
    def close_the_next_month(self) -> None:
        """Floors and expiry move money; the invariants find it in the month's report."""
        period = str(self._next_to_close())
        result = self._send("POST", f"/api/billing-periods/{period}/close/")
        assert result.status_code == 200, result.text
        assert result.json["already_closed"] is False
        self.closed.append(period)
        again = self._send("POST", f"/api/billing-periods/{period}/close/")
        assert (again.status_code, again.json["already_closed"]) == (200, True)

    @precondition(lambda self: self.clock.today < LAST_DAY)
    @rule()
    def month_end(self) -> None:
        """Finance's routine: on the 2nd, close every month that has ended."""
        following = self._month().next().first_day + timedelta(days=1)
        self.clock.today = min(following, LAST_DAY)
        while self._closable():
            self.close_the_next_month()

    def _closable(self) -> bool:
        return self._next_to_close().next().first_day <= self.clock.today

    @rule(org=st.integers(0, 1), protect=st.booleans())
    def protect_the_earmarks(self, org: int, protect: bool) -> None:
        """Whether the pool keeps back what earmarks still hold; no money moves. (A credit
        drained below its expected consumption refuses any change, as upstream's does.)"""
        credit = self.org_credits[org]
        before = self._values()
        result = self._send("PATCH", f"/api/customer-credits/{credit['uuid']}/",
                            {"protect_allocations": protect})
        if self._accepted_or_state_refusal(result):
            assert result.json["protect_allocations"] is protect
        assert self._values() == before

    @precondition(lambda self: self.project_credits)
    @rule(data=st.data())
    def delete_an_earmark(self, data: st.DataObject) -> None:
        """The project then draws from the pool; the deletion is an adjustment."""
        project = data.draw(st.sampled_from(sorted(self.project_credits)))
        credit = self.project_credits.pop(project)
        self.base.pop(credit["uuid"])
        result = self._send("DELETE", f"/api/project-credits/{credit['uuid']}/")
        assert result.status_code == 204, result.text

    @rule(org=st.integers(0, 1), value=st.sampled_from(VALUES[1:]))  # above the floor
    def replace_an_organisation_credit(self, org: int, value: Decimal) -> None:
        """Deleting it deletes its earmarks; items it paid for stay paid, and a reversal of
        one gives nothing to the new credit. The month then has two organisation credits."""
        old = self.org_credits[org]
        result = self._send("DELETE", f"/api/customer-credits/{old['uuid']}/")
        assert result.status_code == 204, result.text
        self.base.pop(old["uuid"])
        for project in [p for p in self.project_credits if self._org_of(p) == org]:
            self.base.pop(self.project_credits.pop(project)["uuid"])
        ends = str(self._month().next().next().first_day)  # expires when a month closes
        terms = ({"expected_consumption": "4"} if org == 0 else
                 {"end_date": ends, "offerings": [self.offerings[0]["url"]]})
        result = self._send("POST", "/api/customer-credits/", {
            "customer": self.orgs[org]["url"], "value": str(value), **terms})
        assert result.status_code == 201, result.text
        self.org_credits[org] = result.json
        self.base[result.json["uuid"]] = value

    @rule(project=st.integers(0, 2))
    def terminate_a_project(self, project: int) -> None:
        """Its credit's unused value goes back to the organisation's pool (written off)."""
        before = self._values()
        result = self._send("DELETE", f"/api/projects/{self.projects[project]['uuid']}/")
        if project in self.terminated:
            assert not self._accepted_or_state_refusal(result, ok=(204,))
            assert self._values() == before
            return
        assert result.status_code == 204, result.text
        self.terminated.add(project)

    @precondition(lambda self: self.closed)
    @rule()
    def reopen_the_latest_month(self) -> None:
        """Re-opening reverses the month's settlement with new events."""
        period = self.closed[-1]
        result = self._send("POST", f"/api/billing-periods/{period}/reopen/")
        assert result.status_code == 200, result.text
        self.closed.pop()

    @rule(project=st.integers(0, 2), amount=st.sampled_from(AMOUNTS[1:]))
    def post_with_a_key_and_retry(self, project: int, amount: Decimal) -> None:
        """A keyed request runs once: its retry gets the first answer, another body 422."""
        if project in self.terminated:
            return
        self.counter += 1
        item_id, key = f"keyed-{self.counter}", f"key-{self.counter}"
        body = [{"id": item_id, "project": self.projects[project]["url"],
                 "amount": str(amount), "period": self._open_periods()[-1]}]
        headers = {**self.staff, "Idempotency-Key": key}
        first = self.client.simulate_post("/api/consumptions/", json=body, headers=headers)
        assert first.status_code == 201, first.text
        self.items.append(Item(project, body[0], first.json[0]))
        before = self._values()
        again = self.client.simulate_post("/api/consumptions/", json=body, headers=headers)
        assert (again.status_code, again.json) == (201, first.json)
        assert again.headers.get("Idempotent-Replayed") == "true"
        other = [{**body[0], "amount": str(amount + 1)}]
        refused = self.client.simulate_post("/api/consumptions/", json=other, headers=headers)
        assert refused.status_code == 422, refused.text
        assert self._values() == before

    def _drawn_through(self, figures: dict[str, dict[str, Any]]) -> dict[str, Decimal]:
        """What live items drew from each credit (uuid), as each item names it: a project
        credit's draw moves its organisation credit's balance by the same amount."""
        drawn: dict[str, Decimal] = {}
        for item in self._live_items():
            row = figures[item.id]
            from_project = Decimal(row["drawn_from_project_credit"])
            for uuid, amount in ((row["project_credit_uuid"], from_project),
                                 (row["customer_credit_uuid"],
                                  from_project + Decimal(row["drawn_from_customer_credit"]))):
                if uuid is not None:
                    drawn[uuid] = drawn.get(uuid, ZERO) + amount
        return drawn

    def _settled(self) -> dict[str, Decimal]:
        """What settlement moved on each credit so far (uuid: signed sum), from the report
        of every month anything was recorded in."""
        moved: dict[str, Decimal] = {}
        month = Period.of(START)
        while month <= self._month():
            for row in self._get("/api/reconciliation/", period=str(month))["rows"]:
                moved[row["uuid"]] = moved.get(row["uuid"], ZERO) + sum(
                    (Decimal(row[column]) for column in SETTLED), ZERO)
            month = month.next()
        return moved

    # --- what must hold after every step -----------------------------------------------------

    @invariant()
    def balances_are_what_was_given_less_what_live_items_drew(self) -> None:
        figures = self._item_figures()
        assert set(figures) == {item.id for item in self.items}
        for item in self.items:
            row = figures[item.id]
            assert row["reversed"] is (not item.live)
            if not item.live:
                continue
            from_project = Decimal(row["drawn_from_project_credit"])
            from_org = Decimal(row["drawn_from_customer_credit"])
            uncovered = Decimal(row["uncovered"])
            assert min(from_project, from_org, uncovered) >= 0, row
            assert from_project + from_org + uncovered == item.amount, row
            assert (row["project_credit_uuid"] is None) is (from_project == 0), row
            assert (row["customer_credit_uuid"] is None) is (from_project + from_org == 0), row
        drawn = self._drawn_through(figures)
        organisations = {row["uuid"]: row for row in self._get("/api/customer-credits/")}
        earmarks = {row["uuid"]: row for row in self._get("/api/project-credits/")}
        settled = self._settled()
        for org, credit in enumerate(self.org_credits):
            row = organisations[credit["uuid"]]
            value, withdrawable = Decimal(row["value"]), Decimal(row["withdrawable_balance"])
            uuid = credit["uuid"]
            assert value == (self.base[uuid] - drawn.get(uuid, ZERO)
                             + settled.get(uuid, ZERO)), (org, row)
            assert ZERO <= withdrawable <= value, row
            assert Decimal(row["allocated_to_projects"]) == sum(
                (Decimal(earmarks[pc["uuid"]]["value"])
                 for project, pc in self.project_credits.items()
                 if self._org_of(project) == org), ZERO), row
        for project, credit in self.project_credits.items():
            value = Decimal(earmarks[credit["uuid"]]["value"])
            uuid = credit["uuid"]
            assert value >= 0
            assert value == (self.base[uuid] - drawn.get(uuid, ZERO)
                             + settled.get(uuid, ZERO)), (project, credit)

    @invariant()
    def usage_shows_every_live_item_posted_drawn_or_uncovered(self) -> None:
        for period in sorted({item.period for item in self.items}):
            usage = self._get("/api/reconciliation/usage/", period=period)
            assert usage["closed"] is (period in self.closed)
            posted: dict[str, Decimal] = {}
            for item in self._live_items():
                if item.period == period:
                    uuid = self.projects[item.project]["uuid"]
                    posted[uuid] = posted.get(uuid, ZERO) + item.amount
            shown = {row["project_uuid"]: row for row in usage["projects"]}
            assert {uuid: Decimal(row["posted"]) for uuid, row in shown.items()
                    if Decimal(row["posted"])} == {uuid: amount for uuid, amount in
                                                   posted.items() if amount}
            for row in shown.values():
                assert Decimal(row["posted"]) == Decimal(row["drawn"]) + Decimal(
                    row["uncovered"]), row

    @invariant()
    def this_months_reconciliation_ties_out(self) -> None:
        report = self._get("/api/reconciliation/", period=str(self._month()))
        assert report["summary"]["all_rows_tie_out"] is True, report["summary"]
        assert report["summary"]["totals_tie_out"] is True, report["summary"]
        assert report["summary"]["closing_matches"] is True, report["summary"]

    # --- at the end ----------------------------------------------------------------------------

    @invariant()
    def each_credits_transactions_chain_to_its_value(self) -> None:
        """Oldest first, each row's balance_after is the one before plus its amount, and
        the newest is the credit's value: summing the column gives the balance."""
        for param, rows in (("credit_uuid", self._get("/api/customer-credits/")),
                            ("project_credit_uuid", self._get("/api/project-credits/"))):
            for credit in rows:
                balance = ZERO
                for row in self._pages("/api/credit-transactions/", o="created",
                                       **{param: credit["uuid"]}):
                    balance += Decimal(row["amount"])
                    assert Decimal(row["balance_after"]) == balance, (row, balance)
                assert balance == Decimal(credit["value"]), (credit, balance)

    @invariant()
    def the_months_csv_columns_sum_to_its_totals(self) -> None:
        """Read as a spreadsheet reads it, a CSV's money column sums to the JSON total of
        its kind, per credit and per credit and billing period alike."""
        period = str(self._month())
        totals = self._get("/api/reconciliation/", period=period)["totals"]
        for lines, columns in (("credits", ("opening", *COLUMNS, "closing")),
                               ("billing_periods", COLUMNS)):
            summed: dict[str, dict[str, Decimal]] = {}
            for line in self._csv("/api/reconciliation/", period=period, lines=lines):
                kind = summed.setdefault(line["kind"], dict.fromkeys(columns, ZERO))
                for column in columns:
                    kind[column] += Decimal(line[column])
            for kind, figures in totals.items():
                expected = {column: Decimal(figures[column]) for column in columns}
                assert summed.get(kind, dict.fromkeys(columns, ZERO)) == expected, (
                    lines, kind)

    @invariant()
    def each_statement_opens_moves_and_closes_to_the_balance(self) -> None:
        """An organisation's statement this month: opening plus its movements is its
        closing, which is the credit's value now."""
        values = {row["uuid"]: Decimal(row["value"])
                  for row in self._get("/api/customer-credits/")}
        for credit in self.org_credits:
            statement = self._get(f"/api/customer-credits/{credit['uuid']}/statement/",
                                  period=str(self._month()))
            moved = sum((Decimal(line["amount"]) for line in statement["lines"]
                         if line["credit"] == "organisation"), ZERO)
            assert statement["ties_out"] is True
            assert Decimal(statement["opening"]) + moved == Decimal(statement["closing"])
            assert Decimal(statement["closing"]) == values[credit["uuid"]]

    @invariant()
    def ended_months_reports_never_change(self) -> None:
        """A month's report is final once the month has ended, whatever is posted, closed
        or re-opened later: later movements are booked in the month they are recorded."""
        month = Period.of(START)
        while month.next().first_day <= self.clock.today:
            report = self._get("/api/reconciliation/", period=str(month))
            expected = self.ended_reports.setdefault(str(month), report)
            assert report == expected, str(month)
            month = month.next()

    @invariant()
    def remember_what_was_seen(self) -> None:
        """Each credit's value now, to ask for again as of this moment at the end."""
        self.seen.append((datetime.now(UTC).isoformat(), self._credit_values()))

    def _csv(self, path: str, **params: Any) -> list[dict[str, str]]:
        result = self.client.simulate_get(path, params={**params, "format": "csv"},
                                          headers=self.staff)
        assert result.status_code == 200, result.text
        return csv_rows(result)

    def _credit_values(self, **params: Any) -> dict[str, str]:
        """Every credit's value by uuid, organisation and project credits alike."""
        return {row["uuid"]: row["value"]
                for path in ("/api/customer-credits/", "/api/project-credits/")
                for row in self._get(path, **params)}

    def _pages(self, path: str, **params: Any) -> list[Any]:
        rows: list[Any] = []
        page = 1
        while True:
            found = self._get(path, page=page, page_size=100, **params)
            rows.extend(found)
            if len(found) < 100:
                return rows
            page += 1

    def _as_of_repeats_what_was_seen(self) -> None:
        """Balances as of any moment: what a caller saw then, the ledger answers now."""
        for moment, values in self.seen:
            found = self._credit_values(as_of=moment)
            assert {uuid: found.get(uuid) for uuid in values} == values, moment

    def _journal_balances(self) -> None:
        """The double-entry journal through the last closed month loads in beancount (what
        `bean-check` runs) with no error: every transaction balances and every month-end
        balance assertion, a reconciliation closing, holds."""
        if not self.closed:
            return
        result = self.client.simulate_get("/api/journal/", params={
            "format": "beancount", "through": self.closed[-1]}, headers=self.staff)
        assert result.status_code == 200, result.text
        _, errors, _ = loader.load_string(result.text)  # empty when nothing was recorded yet
        assert errors == [], errors[:3]

    def _history_agrees_with_as_of_and_transactions(self) -> None:
        """Each live credit's history: the balance after every event is what `as_of` that
        event's moment answers, the last is the value, and its balance changes are exactly
        the credit's transaction rows."""
        for kind, param in (("customer", "credit_uuid"), ("project", "project_credit_uuid")):
            for credit in self._get(f"/api/{kind}-credits/"):
                path = f"/api/{kind}-credits/{credit['uuid']}/"
                history = self._get(f"{path}history/")
                changes = set()
                for entry, following in zip(history, [*history[1:], None], strict=True):
                    if following is None or following["timestamp"] != entry["timestamp"]:
                        then = self._get(path, as_of=entry["timestamp"])  # its last event then
                        assert then["value"] == entry["balance_after"], (entry, then["value"])
                    changes |= {line["transaction_uuid"] for line in entry.get("lines") or ()}
                    changes |= {entry["transaction_uuid"]} - {None}
                assert history[-1]["balance_after"] == credit["value"]
                rows = self._pages("/api/credit-transactions/", **{param: credit["uuid"]})
                assert {row["uuid"] for row in rows} == changes, credit["uuid"]

    def _replay_equals_live(self) -> None:
        self._as_of_repeats_what_was_seen()
        self._history_agrees_with_as_of_and_transactions()
        self._journal_balances()
        checked = verify(self.services.ledger, self.services.engine)
        assert checked.differences == [], [str(found) for found in checked.differences[:5]]
        live = read_model_rows(self.services.engine)
        self.services.projector.rebuild()
        assert read_model_rows(self.services.engine) == live


@pytest.mark.parametrize("backend", BACKENDS)
def test_money_invariants_hold_under_any_sequence_of_operations(
        backend: str, request: pytest.FixtureRequest) -> None:
    class Machine(MoneyModel):
        pass

    Machine.backend = backend
    Machine.admin_url = (request.getfixturevalue("postgres_database")
                         if backend == "postgresql" else "")

    run_state_machine_as_test(Machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        derandomize=True, suppress_health_check=list(HealthCheck)))
