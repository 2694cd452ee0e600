"""Domain rules on the in-memory store: the ledger's story, step by step."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any
from uuid import UUID, uuid4

import pytest
import time_machine
from eventsourcing.domain import Aggregate

from ledger.application import Ledger
from ledger.consumption import ConsumptionItem
from ledger.credits import Credit, CustomerCredit, DrawLine, ProjectCredit
from ledger.errors import (
    AllocationExceeded,
    Conflict,
    DuplicateCredit,
    InvalidTerms,
    ItemIdReversed,
    ItemIdTaken,
    NoCustomerCredit,
    PeriodClosed,
    ProjectTerminated,
    RuleViolation,
)
from ledger.periods import Period
from ledger.posting import ConsumptionInput
from ledger.settlement import linear_expected, minimal_consumption, time_left_factor
from ledger.terms import Terms

FEB = Period.parse("2025-02")


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """Events are recorded in FEB, the month the examples settle (time-machine)."""
    with time_machine.travel(datetime(2025, 2, 15, 12, tzinfo=UTC), tick=True):
        yield Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def org_with_projects(ledger: Ledger, *names: str) -> tuple[UUID, list[UUID]]:
    customer = ledger.register_customer("Org", "org", "t")
    return customer, [ledger.register_project(n, n.lower(), customer, "t") for n in names]


def value(ledger: Ledger, credit_id: UUID) -> D:
    credit: Aggregate = ledger.repository.get(credit_id)
    assert isinstance(credit, CustomerCredit | ProjectCredit)
    return credit.value


def item(item_id: str, project: UUID, amount: str, period: Period = FEB,
         offering: UUID | None = None) -> ConsumptionInput:
    return ConsumptionInput(item_id, project, offering, D(amount), period)


def test_one_credit_per_customer_and_project(ledger: Ledger) -> None:
    customer, [project] = org_with_projects(ledger, "A")
    with pytest.raises(NoCustomerCredit):
        ledger.create_project_credit(project, D(10), Terms(), False, "t")
    ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    with pytest.raises(DuplicateCredit):
        ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    ledger.create_project_credit(project, D(10), Terms(), False, "t")
    with pytest.raises(DuplicateCredit):
        ledger.create_project_credit(project, D(10), Terms(), False, "t")


def test_allocation_rule_is_the_intended_one_not_upstreams_bug(ledger: Ledger) -> None:
    """Reference §4.13-H: upstream lets P2=50 through after P1=60 of 100; we do not."""
    customer, [p1, p2] = org_with_projects(ledger, "P1", "P2")
    ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    first = ledger.create_project_credit(p1, D(60), Terms(), False, "t")
    with pytest.raises(AllocationExceeded):
        ledger.create_project_credit(p2, D(50), Terms(), False, "t")
    second = ledger.create_project_credit(p2, D(40), Terms(), False, "t")
    with pytest.raises(AllocationExceeded):
        ledger.update_project_credit(second, "t", value=D("40.00001"))
    ledger.update_project_credit(first, "t", value=D(10))  # lowering is always allowed
    ledger.update_project_credit(second, "t", value=D(90))
    assert value(ledger, second) == D(90)


def test_end_date_must_be_first_of_month(ledger: Ledger) -> None:
    from datetime import date

    customer, [project] = org_with_projects(ledger, "A")
    ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    with pytest.raises(InvalidTerms):
        ledger.create_project_credit(project, D(1), Terms(end_date=date(2026, 1, 2)), False, "t")


def test_worked_example_a_mixed_project_credits(ledger: Ledger) -> None:
    """Reference §4.13-A, to the cent."""
    customer, [a, b, c] = org_with_projects(ledger, "A", "B", "C")
    org = ledger.create_customer_credit(customer, D(1000), Terms(), [], "t")
    credit_a = ledger.create_project_credit(a, D(300), Terms(), False, "t")
    floor_terms = Terms(expected_consumption=D(80), grace_coefficient=D(25))
    credit_b = ledger.create_project_credit(b, D(100), floor_terms, False, "t")
    results = ledger.post_consumption(
        [item("a1", a, "120"), item("a2", a, "250"), item("b1", b, "30"), item("c1", c, "200")],
        "t")
    assert [(r.drawn_from_project_credit, r.drawn_from_customer_credit, r.uncovered)
            for r in results] == [(D(120), 0, 0), (D(180), 0, D(70)), (D(30), 0, 0),
                                  (0, D(200), 0)]
    ledger.close_period(FEB, "t", [org])
    assert (value(ledger, credit_a), value(ledger, credit_b), value(ledger, org)) == (
        D(0), D(40), D(470))


def test_stale_project_links_only_cost_a_wasted_load(ledger: Ledger) -> None:
    """The read models' guesses of what a project leads to may be stale or wrong: the
    fresh aggregates' own links decide what is drawn (issue 18's one-round loading)."""
    from uuid import uuid4

    from ledger.posting import ProjectLinks

    customer, [a, b] = org_with_projects(ledger, "A", "B")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    credit_a = ledger.create_project_credit(a, D(10), Terms(), False, "t")
    other, [elsewhere] = org_with_projects(ledger, "C")
    wrong = {a: ProjectLinks(other, None, uuid4()), b: ProjectLinks(uuid4(), credit_a, org)}
    results = ledger.post_consumption([item("a1", a, "4"), item("b1", b, "3")], "t",
                                      project_links=wrong)
    assert [(r.drawn_from_project_credit, r.drawn_from_customer_credit) for r in results] == [
        (D(4), 0), (0, D(3))]
    assert (value(ledger, credit_a), value(ledger, org)) == (D(6), D(93))


def test_worked_example_b_organisation_floor(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(
        customer, D(1000), Terms(expected_consumption=D(300)), [], "t")
    ledger.post_consumption([item("u", a, "100")], "t")
    ledger.close_period(FEB, "t", [org])
    assert value(ledger, org) == D(700)


def test_worked_example_d_linear(ledger: Ledger) -> None:
    from datetime import date

    assert time_left_factor(date(2025, 7, 1), date(2025, 3, 1)) == D(31) / D(122)
    terms = Terms(end_date=date(2025, 7, 1), expected_consumption=D(200),
                  minimal_consumption_logic="linear")
    assert linear_expected(terms, D(1000), D(200), FEB) == D("254.09836")
    graced = Terms(end_date=date(2025, 7, 1), expected_consumption=D(200),
                   minimal_consumption_logic="linear", grace_coefficient=D(50))
    assert linear_expected(graced, D(1080), D(120), FEB) == D("334.09836")


def test_floor_is_full_in_the_month_the_credit_ends() -> None:
    from datetime import date

    terms = Terms(end_date=date(2026, 4, 1), expected_consumption=D(80),
                  grace_coefficient=D(25))
    assert minimal_consumption(terms, date(2026, 3, 1)) == D(60)
    assert minimal_consumption(terms, date(2026, 4, 1)) == D(80)
    assert minimal_consumption(Terms(apply_as_minimal_consumption=False), date(2026, 4, 1)) == 0


def test_replay_draws_nothing_more(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    [first] = ledger.post_consumption([item("x", a, "30")], "t")
    [again] = ledger.post_consumption([item("x", a, "30")], "t")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.drawn_from_customer_credit == D(30)
    with pytest.raises(ItemIdTaken):
        ledger.post_consumption([item("x", a, "999")], "t")
    ledger.reverse_consumption("x", "t")
    with pytest.raises(ItemIdReversed) as reversed_error:
        ledger.post_consumption([item("x", a, "30")], "t")
    assert reversed_error.value.reversed_by == "t"
    assert value(ledger, org) == D(100)


def test_reversal_and_closed_period(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    ledger.post_consumption([item("x", a, "30"), item("y", a, "20")], "t")
    ledger.reverse_consumption("x", "t")
    assert value(ledger, org) == D(80)
    with pytest.raises(Conflict):
        ledger.reverse_consumption("x", "t")
    ledger.close_period(FEB, "t", [org])
    with pytest.raises(PeriodClosed):
        ledger.reverse_consumption("y", "t")
    with pytest.raises(PeriodClosed):
        ledger.post_consumption([item("z", a, "1")], "t")
    assert ledger.close_period(FEB, "t", [org]).already_closed


def test_offering_restriction_and_expiry(ledger: Ledger) -> None:
    from datetime import date

    customer, [a] = org_with_projects(ledger, "A")
    vm = ledger.register_offering("VM", "vm", "t")
    storage = ledger.register_offering("Storage", "st", "t")
    org = ledger.create_customer_credit(
        customer, D(100), Terms(end_date=date(2025, 3, 1)), [vm], "t")
    [covered, other] = ledger.post_consumption(
        [item("v", a, "10", offering=vm), item("s", a, "10", offering=storage)], "t")
    assert (covered.drawn_from_customer_credit, other.uncovered) == (D(10), D(10))
    ledger.close_period(FEB, "t", [org])  # end date 2025-03-01: February was the last month
    assert value(ledger, org) == 0
    [late] = ledger.post_consumption([item("m", a, "5", Period.parse("2025-03"), vm)], "t")
    assert late.uncovered == D(5)


def test_termination_both_ways(ledger: Ledger) -> None:
    """Reference §4.13-G."""
    customer, [kept, forfeited] = org_with_projects(ledger, "Kept", "Forfeited")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    ledger.create_project_credit(kept, D(10), Terms(), False, "t")
    ledger.create_project_credit(forfeited, D(10), Terms(), True, "t")
    ledger.terminate_project(kept, "t")
    assert value(ledger, org) == D(100)
    ledger.terminate_project(forfeited, "t")
    assert value(ledger, org) == D(90)
    with pytest.raises(ProjectTerminated):
        ledger.post_consumption([item("late", kept, "1")], "t")


def test_consumption_item_records_its_split(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    ledger.create_customer_credit(customer, D(10), Terms(), [], "t")
    ledger.post_consumption([item("big", a, "25")], "t")
    recorded = ledger.find_consumption("big")
    assert isinstance(recorded, ConsumptionItem)
    assert (recorded.drawn_from_customer_credit, recorded.uncovered) == (D(10), D(15))


def test_names_refuse_characters_no_store_can_keep(ledger: Ledger) -> None:
    from ledger.errors import RuleViolation

    with pytest.raises(RuleViolation):
        ledger.register_customer("bad\x00name", "bad", "t")
    with pytest.raises(RuleViolation):
        ledger.create_user("x\ud800", "token", False, False, "t")


# --- batched posting ----------------------------------------------------------------------

def credit_events(ledger: Ledger, credit_id: UUID) -> list[Any]:
    return list(ledger.events.get(credit_id))


def test_batch_draws_cheapest_first_against_running_balances(ledger: Ledger) -> None:
    customer, [a, b] = org_with_projects(ledger, "A", "B")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    credit_a = ledger.create_project_credit(a, D(50), Terms(), False, "t")
    results = ledger.post_consumption(
        [item("a2", a, "40"), item("b2", b, "60"), item("a1", a, "30"), item("b1", b, "25")],
        "t")
    # cheapest first: b1 25 (pool), a1 30 (A), a2 40 (A has 20 left), b2 60 (pool has 25 left)
    assert [(r.item_id, r.drawn_from_project_credit, r.drawn_from_customer_credit,
             r.uncovered) for r in results] == [
        ("a2", D(20), 0, D(20)), ("b2", 0, D(25), D(35)), ("a1", D(30), 0, 0),
        ("b1", 0, D(25), 0)]
    assert (value(ledger, org), value(ledger, credit_a)) == (0, 0)
    [*_, org_draw] = credit_events(ledger, org)
    [*_, a_draw] = credit_events(ledger, credit_a)
    assert type(org_draw).__name__ == type(a_draw).__name__ == "ItemsDrawn"
    assert [(line["item_id"], line["amount"], line.get("project_credit_id"))
            for line in org_draw.lines] == [
        ("b1", D(-25), None), ("a1", D(-30), credit_a), ("a2", D(-20), credit_a),
        ("b2", D(-25), None)]
    assert (org_draw.amount, org_draw.period) == (D(-100), "2025-02")
    assert [(line["item_id"], line["amount"]) for line in a_draw.lines] == [
        ("a1", D(-30)), ("a2", D(-20))]
    org_credit: CustomerCredit = ledger.repository.get(org)
    assert org_credit.allocations == {credit_a.hex: D(0)}


def test_batch_spanning_two_periods_draws_once_per_period(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    credit_a = ledger.create_project_credit(a, D(60), Terms(), False, "t")
    march = Period.parse("2025-03")
    ledger.post_consumption([item("f1", a, "10"), item("m1", a, "15", march),
                             item("f2", a, "20"), item("m2", a, "5", march)], "t")
    for credit_id in (org, credit_a):
        draws = [e for e in credit_events(ledger, credit_id)
                 if type(e).__name__ == "ItemsDrawn"]
        assert [(e.period, e.amount) for e in draws] == [("2025-02", D(-30)),
                                                          ("2025-03", D(-20))]
        credit: Credit = ledger.repository.get(credit_id)
        assert (credit.drawn_in("2025-02"), credit.drawn_in("2025-03")) == (D(30), D(20))
    assert ledger.repository.get(org).allocations == {credit_a.hex: D(10)}
    ledger.reverse_consumption("m1", "t")
    assert (value(ledger, org), value(ledger, credit_a)) == (D(65), D(25))
    assert ledger.repository.get(org).allocations == {credit_a.hex: D(25)}
    assert ledger.repository.get(credit_a).drawn_in("2025-03") == D(5)


def test_items_drawn_replayed_from_the_store_equals_the_live_state(ledger: Ledger) -> None:
    """The command's in-memory state and a replay of its stored (transcoded) events agree."""
    project_credit = ProjectCredit(project_id=uuid4(), customer_id=uuid4(), value=D(50),
                                   terms=Terms().as_kwargs(),
                                   mark_unused_credit_as_spent_on_project_termination=False,
                                   actor="t")
    org = CustomerCredit(customer_id=uuid4(), value=D(100), terms=Terms().as_kwargs(),
                         offering_ids=[], actor="t")
    org.sync_allocation(project_credit, "t")
    project = project_credit.project_id
    project_credit.draw_items(FEB, [DrawLine("a", project, D(20))], "t")
    org.draw_items(FEB, [DrawLine("a", project, D(20), project_credit.id),
                         DrawLine("p", uuid4(), D("0.5"))], "t")
    for live in (org, project_credit):
        replayed: Aggregate | None = None
        for event in live.collect_events():
            stored = ledger.mapper.to_domain_event(ledger.mapper.to_stored_event(event))
            assert isinstance(stored, Aggregate.Event)
            replayed = stored.mutate(replayed)
        assert vars(replayed) == vars(live)
    assert org.allocations == {project_credit.id.hex: D(30)}
    assert (org.value, org.drawn_in(str(FEB))) == (D("79.5"), D("20.5"))


def test_draw_items_refuses_what_does_not_fit() -> None:
    org = CustomerCredit(customer_id=uuid4(), value=D(10), terms=Terms().as_kwargs(),
                         offering_ids=[], actor="t")
    with pytest.raises(RuleViolation):
        org.draw_items(FEB, [DrawLine("a", uuid4(), D(6)), DrawLine("b", uuid4(), D(6))], "t")
    with pytest.raises(RuleViolation):  # drawn through a project credit it does not fund
        org.draw_items(FEB, [DrawLine("a", uuid4(), D(1), uuid4())], "t")
    with pytest.raises(RuleViolation):
        org.draw_items(FEB, [DrawLine("a", uuid4(), D(0))], "t")
    assert org.value == D(10) and not org.collect_events()[1:]


def test_an_id_the_lookup_has_not_seen_yet_still_replays(ledger: Ledger) -> None:
    """The lookup (a read model) may lag: the save then fails and the retry asks the store."""
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    ledger.post_consumption([item("x", a, "30")], "t")
    asked: list[list[str]] = []

    def stale(item_ids: Sequence[str]) -> set[str]:
        asked.append(list(item_ids))
        return set()

    [again, new] = ledger.post_consumption([item("x", a, "30"), item("y", a, "5")], "t",
                                           known=stale)
    assert (again.replayed, again.drawn_from_customer_credit, new.replayed) == (
        True, D(30), False)
    assert value(ledger, org) == D(65)
    assert asked == [["x", "y"]]
    [third] = ledger.post_consumption([item("y", a, "5")], "t", known=lambda ids: {"y"})
    assert third.replayed and value(ledger, org) == D(65)


def test_protected_pool_leaves_running_earmarks_within_a_batch(ledger: Ledger) -> None:
    customer, [a, b, pool] = org_with_projects(ledger, "A", "B", "Pool")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t",
                                        protect_allocations=True)
    ledger.create_project_credit(a, D(40), Terms(), False, "t")
    ledger.create_project_credit(b, D(25), Terms(), False, "t")
    results = ledger.post_consumption(
        [item("pool", pool, "100"), item("a", a, "30"), item("b", b, "10")], "t")
    # b 10 and a 30 first; the pool then leaves what A (10) and B (15) still hold
    assert [(r.item_id, r.drawn_from_project_credit + r.drawn_from_customer_credit)
            for r in results] == [("pool", D(35)), ("a", D(30)), ("b", D(10))]
    assert value(ledger, org) == D(25)
    more = ledger.post_consumption([item("a2", a, "10"), item("b2", b, "15")], "t")
    assert [r.uncovered for r in more] == [0, 0]
    assert value(ledger, org) == 0


def test_created_events_stored_without_the_new_fields_still_replay(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(10), Terms(), [], "t", comment="why")
    pc = ledger.create_project_credit(a, D(5), Terms(), False, "t", comment="why")
    for credit_id, cls in ((org, CustomerCredit), (pc, ProjectCredit)):
        created = next(iter(ledger.events.get(credit_id)))
        stored = ledger.mapper.to_stored_event(created)
        state = ledger.mapper.transcoder.decode(stored.state)
        for name in ("comment", "protect_allocations"):
            state.pop(name, None)  # as events stored before these fields existed
        old = type(stored)(originator_id=stored.originator_id,
                           originator_version=stored.originator_version, topic=stored.topic,
                           state=ledger.mapper.transcoder.encode(state))
        decoded = ledger.mapper.to_domain_event(old)
        assert isinstance(decoded, Aggregate.Event)
        replayed: Aggregate | None = decoded.mutate(None)
        assert isinstance(replayed, cls) and replayed.value in (D(10), D(5))
        assert not hasattr(ledger.mapper.to_domain_event(old), "comment")
    assert ledger.repository.get(org).protect_allocations is False


def test_clear_refuses_an_item_list_that_misses_a_draw(ledger: Ledger) -> None:
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    ledger.post_consumption([item("x", a, "10"), item("y", a, "20")], "t")
    with pytest.raises(Conflict):
        ledger.clear_compensations(org, FEB, ["x"], "t")
    ledger.clear_compensations(org, FEB, ["x", "y"], "t")
    assert value(ledger, org) == D(100)
    found = ledger.find_consumption("y")
    assert found is not None and (found.drawn, found.uncovered) == (0, D(20))
    ledger.apply_compensations(org, FEB, ["x", "y"], "t")
    assert value(ledger, org) == D(70)


def test_a_save_whose_commit_landed_before_a_retry_is_not_an_error(ledger: Ledger) -> None:
    """eventsourcing retries an insert whose connection broke at commit; if the first
    attempt committed, the retry meets its own rows. For aggregates created here under
    random ids that means the save landed: no error, nothing recorded twice."""
    from copy import deepcopy

    from eventsourcing.persistence import IntegrityError

    from ledger.directory import Customer

    customer = Customer(name="Org", slug="org", actor="t")
    retried, again = deepcopy(customer), deepcopy(customer)  # the retry's pending events
    ledger.save(customer)
    assert ledger.save(retried) == []
    assert len(list(ledger.events.get(customer.id))) == 1
    other = Customer(name="Other", slug="other", actor="t")  # not stored: a real clash
    with pytest.raises(IntegrityError):
        ledger.save(again, other)
    assert list(ledger.events.get(other.id)) == []


def test_an_imported_credit_exists_from_its_import() -> None:
    """Months before the import are the source's to settle: no floor for them."""
    from ledger.importing import CustomerCreditRecord, CustomerRecord, Importer

    with time_machine.travel(datetime(2026, 9, 10, 12, tzinfo=UTC), tick=True) as travel:
        ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        ledger.register_customer("Native", "native", "t")  # the ledger's first month: 09
        travel.move_to(datetime(2026, 11, 10, 12, tzinfo=UTC))
        customer, credit = uuid4(), uuid4()
        Importer(ledger, "import").record([
            CustomerRecord(customer, "Imported", "imported"),
            CustomerCreditRecord(credit, customer, D(500), Terms(expected_consumption=D(100)),
                                 ())])
        for month in ("2026-09", "2026-10"):
            ledger.close_period(Period.parse(month), "t", [credit])
        assert value(ledger, credit) == D(500)
        ledger.close_period(Period.parse("2026-11"), "t", [credit])
        assert value(ledger, credit) == D(400)


def test_a_keyed_command_runs_once_and_returns_its_first_result(ledger: Ledger) -> None:
    from ledger.errors import KeyReused
    from ledger.keys import CommandKey

    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    key = CommandKey("owner", "k", "fingerprint")
    ledger.use_key(key)
    first = ledger.post_consumption([item("x", a, "30")], "t")
    assert ledger.current_key() is None  # used up by the command that recorded it
    position = ledger.recorder.max_notification_id()
    ledger.use_key(key)
    assert ledger.post_consumption([item("x", a, "30")], "t") == first  # replayed: False
    assert (ledger.recorder.max_notification_id(), value(ledger, org)) == (position, D(70))
    ledger.use_key(CommandKey("owner", "k", "another request"))
    with pytest.raises(KeyReused):
        ledger.adjust_withdrawable(org, D(5), "top-up", "t")
    ledger.use_key(CommandKey("someone else", "k", "fingerprint"))  # keys are per owner
    ledger.adjust_withdrawable(org, D(5), "top-up", "t")
    assert value(ledger, org) == D(75)


def test_a_close_once_begun_holds_the_month_until_it_is_finished(ledger: Ledger) -> None:
    """A close interrupted after CloseStarted (say, killed while settling): the month and
    anything earlier take no postings, so the first month cannot move back under it."""
    customer, [a] = org_with_projects(ledger, "A")
    org = ledger.create_customer_credit(customer, D(100), Terms(expected_consumption=D(10)),
                                        [], "t")
    calendar = ledger.calendar()
    calendar.start_close(FEB, ledger.activity_outside(calendar), "t")
    ledger.save(calendar)
    for period in (FEB, FEB.previous()):
        with pytest.raises(PeriodClosed, match="Billing period 2025-02 is being closed"):
            ledger.post_consumption([item(f"i{period}", a, "1", period)], "t")
    with pytest.raises(Conflict, match="close of billing period 2025-02 has begun"):
        ledger.reopen_period(FEB, "t", [org])
    assert ledger.next_to_close() == FEB
    assert ledger.close_period(FEB, "t", [org]).already_closed is False  # finishes it
    assert value(ledger, org) == D(90)
    assert ledger.calendar().closing is None


def test_a_calendar_of_an_earlier_release_learns_the_earliest_period_posted_once(
        ledger: Ledger) -> None:
    """Items recorded by a release whose calendar did not track postings still set the first
    month: the store's items are read, and the calendar records what they say."""
    customer, [a] = org_with_projects(ledger, "A")
    legacy = ConsumptionItem(item_id="old", project_id=a, customer_id=customer,
                             offering_id=None, amount=D(1), period="2024-11",
                             project_credit_id=None, customer_credit_id=None,
                             drawn_from_project_credit=D(0), drawn_from_customer_credit=D(0),
                             uncovered=D(1), actor="t")
    ledger.save(legacy)
    assert ledger.calendar().earliest_posted is None
    assert ledger.next_to_close() == Period.parse("2024-11")
    with pytest.raises(Conflict, match="the next month to close is 2024-11"):
        ledger.close_period(FEB, "t", [])
    ledger.close_period(Period.parse("2024-11"), "t", [])
    assert ledger.calendar().earliest_posted == "2024-11"


def test_a_command_that_keeps_losing_its_version_check_gives_up_with_a_conflict(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent writers are retried a bounded number of times, each wait drawn below a
    doubling bound with a cap, then refused (409 at the edge); nothing is saved."""
    from eventsourcing.persistence import IntegrityError

    from ledger import store

    customer, _ = org_with_projects(ledger)
    credit = ledger.create_customer_credit(customer, D(100), Terms(), [], "t")
    saves: list[int] = []
    waits: list[float] = []

    def losing_save(unit: store.Unit) -> None:
        saves.append(1)
        raise IntegrityError("a concurrent writer saved first")

    monkeypatch.setattr(store.Unit, "save", losing_save)
    monkeypatch.setattr(store.time, "sleep", waits.append)
    monkeypatch.setattr(store.random, "uniform", lambda low, high: high)  # the longest
    with pytest.raises(Conflict, match="changed concurrently"):
        ledger.update_customer_credit(credit, "t", value=D(200))
    assert len(saves) == store.MAX_ATTEMPTS
    assert waits == [0.005, 0.01, 0.02, 0.04, 0.08] + [0.15] * 7  # about 1.2 s in all
    monkeypatch.undo()
    assert value(ledger, credit) == D(100)
