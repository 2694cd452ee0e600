"""Read models: rebuild equals live, crashes recover, nothing is applied twice."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy.exc
from sqlalchemy import event, func, select

from api.server.wiring import Services, build_services
from ledger.terms import Terms
from projections import projector as projector_module
from projections.changes import Changes
from projections.tables import (
    counters,
    credit_transactions,
    credit_versions,
    customer_credits,
    customers,
    project_credits,
)
from tests.scenario import run_scenario
from tests.support import Directory, capture_statements, read_model_rows


def test_rebuild_from_scratch_equals_live(directory: Directory, services: Services) -> None:
    run_scenario(directory)
    live = read_model_rows(services.engine)
    assert live["credit_transactions"] and live["consumptions"]
    replayed = services.projector.rebuild()
    assert replayed == services.ledger.recorder.max_notification_id()
    assert read_model_rows(services.engine) == live
    assert services.projector.position() == replayed


def test_crash_between_save_and_projection_recovers(directory: Directory,
                                                    services: Services) -> None:
    """Events saved by a process that died before projecting are applied by the next one."""
    org = directory.customer("Org")
    customer_id = UUID(org["uuid"])
    credit_id = services.ledger.create_customer_credit(customer_id, Decimal(50), Terms(), [],
                                                       "crashed")
    with services.engine.connect() as conn:
        assert conn.execute(select(customer_credits)).first() is None
    seen = directory.client.simulate_get(f"/api/customer-credits/{credit_id.hex}/",
                                         headers=directory.staff)
    assert seen.status_code == 200
    assert seen.json["value"] == "50.00000"


def test_a_failing_batch_leaves_nothing_behind(directory: Directory, services: Services,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    org = directory.customer("Org")
    customer_id = UUID(org["uuid"])
    services.ledger.create_customer_credit(customer_id, Decimal(50), Terms(), [], "t")
    before = services.projector.position()

    def explode(*args: object) -> None:
        raise RuntimeError("killed mid-batch")

    monkeypatch.setattr(projector_module, "HANDLERS", (*projector_module.HANDLERS, explode))
    with pytest.raises(RuntimeError):
        services.projector.catch_up()
    assert services.projector.position() == before
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(customer_credits)).scalar() == 0
    monkeypatch.undo()
    assert services.projector.catch_up() == 2  # the credit and the customer's link to it
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(customer_credits)).scalar() == 1


def test_concurrent_projectors_apply_each_event_once(directory: Directory, services: Services,
                                                     database_url: str) -> None:
    org = directory.customer("Org")
    project = directory.project(org, "A")
    directory.customer_credit(org, "1000")
    credit = directory.project_credit(project, "500")
    project_id = UUID(project["uuid"])
    from ledger.periods import Period
    from ledger.posting import ConsumptionInput

    for n in range(40):
        services.ledger.post_consumption(
            [ConsumptionInput(f"i{n}", project_id, None, Decimal("1.5"),
                              Period.parse("2025-02"))], "t")
    others = [build_services(database_url) for _ in range(3)]
    try:
        threads = [threading.Thread(target=s.projector.catch_up) for s in [services, *others]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for other in others:
            other.close()
    with services.engine.connect() as conn:
        value = conn.execute(select(project_credits.c.value)
                             .where(project_credits.c.uuid == credit["uuid"])).scalar()
        rows = conn.execute(select(func.count()).select_from(credit_transactions)
                            .where(credit_transactions.c.transaction_type == "compensation")
                            ).scalar()
    assert value == Decimal("440.00000")
    assert rows == 80  # 40 draws on the project credit and 40 on the organisation credit
    assert services.projector.position() == services.ledger.recorder.max_notification_id()


def test_reads_are_served_during_rebuild(directory: Directory, services: Services) -> None:
    """The live tables answer while the shadow copy is built; events saved meanwhile
    are in the swapped-in tables; the new tables have planner statistics."""
    org = directory.customer("Org")
    directory.customer_credit(org, "1000")
    credits = [directory.project_credit(directory.project(org, f"P{n}"), str(10 + n))
               for n in range(5)]
    live = read_model_rows(services.engine)
    seen_during: list[list[str]] = []

    def read_and_write_meanwhile(done: int) -> None:
        listed = directory.client.simulate_get("/api/project-credits/",
                                               headers=directory.staff)
        assert listed.status_code == 200
        seen_during.append([row["value"] for row in listed.json])
        changed = directory.client.simulate_patch(f"/api/project-credits/{credits[0]['uuid']}/",
                                                  json={"value": "99"},
                                                  headers=directory.staff)
        assert changed.status_code == 200

    services.projector.rebuild(read_and_write_meanwhile)

    assert seen_during[0] == ["10.00000", "11.00000", "12.00000", "13.00000", "14.00000"]
    after = directory.client.simulate_get("/api/project-credits/", headers=directory.staff)
    assert [row["value"] for row in after.json][:2] == ["99.00000", "11.00000"]
    assert services.projector.position() == services.ledger.recorder.max_notification_id()
    assert read_model_rows(services.engine).keys() == live.keys()
    with services.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            analysed = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE relname = 'project_credits' "
                "AND relnamespace = current_schema()::regnamespace").scalar()
            assert analysed == 5
        else:
            analysed = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'project_credits'").scalar()
            assert analysed and analysed > 0


def test_counts_are_kept_not_scanned(directory: Directory, services: Services) -> None:
    """HEAD's total comes from the maintained counter; it follows creations and deletions."""
    org = directory.customer("Org")
    directory.customer_credit(org, "1000")
    credits = [directory.project_credit(directory.project(org, f"P{n}"), "10")
               for n in range(3)]

    def count() -> str:
        head = directory.client.simulate_head("/api/project-credits/", headers=directory.staff)
        return str(head.headers["X-Result-Count"])

    assert count() == "3"
    deleted = directory.client.simulate_delete(f"/api/project-credits/{credits[1]['uuid']}/",
                                               headers=directory.staff)
    assert deleted.status_code == 204
    assert count() == "2"
    from projections.tables import counters

    with services.engine.connect() as conn:
        kept: dict[str, int] = dict(
            conn.execute(select(counters.c.name, counters.c.value)).tuples().all())
    assert kept == {"project_credits.listed": 2, "customer_credits.listed": 1}


def test_bulk_batches_write_what_single_events_write(services: Services) -> None:
    """A batch big enough for the bulk statements (PostgreSQL: loads and updates bound as
    one array per column, inserts by COPY) leaves the rows one-event batches leave. The
    organisations are registered first and funded after, as `import waldur` records them,
    so the funding batch updates rows an earlier batch wrote."""
    from ledger.credits import CustomerCredit, ProjectCredit
    from ledger.directory import Customer, Project

    registered = [(customer := Customer(name=f"Org {n}", slug=f"org-{n}", actor="test"),
                   Project(name=f"P {n}", slug=f"p-{n}", customer_id=customer.id, actor="test"))
                  for n in range(80)]
    services.ledger.save(*(aggregate for pair in registered for aggregate in pair))
    services.projector.catch_up()
    funded: list[object] = []
    for n, (customer, project) in enumerate(registered):
        org = CustomerCredit(customer_id=customer.id, value=Decimal(1000 + n),
                             terms=Terms().as_kwargs(), offering_ids=[], actor="test")
        customer.attach_credit(org.id, "test")
        credit = ProjectCredit(project_id=project.id, customer_id=customer.id,
                               value=Decimal(n) / 7, terms=Terms().as_kwargs(),
                               mark_unused_credit_as_spent_on_project_termination=False,
                               actor="test")
        project.attach_credit(credit.id, "test")
        org.sync_allocation(credit, "test")
        funded += [customer, project, org, credit]
    services.ledger.save(*funded)
    services.projector.catch_up()  # one batch: 80 organisations' rows updated at once
    in_bulk = read_model_rows(services.engine)
    assert len(in_bulk["customer_credits"]) == 80
    services.projector.batch_size = 1
    services.projector.rebuild()
    assert read_model_rows(services.engine) == in_bulk


def test_a_second_catch_up_compiles_no_statement(directory: Directory,
                                                services: Services) -> None:
    """Every statement a catch-up runs is compiled once per process and then found in
    SQLAlchemy's cache: the month counters' upserts, built with a dialect's
    `on_conflict_do_update`, had no cache key and were compiled for every item posted
    (three of a single item's statements, issue 18)."""
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import CacheStats

    from ledger.periods import Period
    from ledger.posting import ConsumptionInput

    org = directory.customer("Org")
    project = directory.project(org, "P")
    directory.customer_credit(org, "100")
    seen: list[tuple[str, CacheStats]] = []

    def record(conn: object, cursor: object, statement: str, parameters: object,
               context: Any, executemany: bool) -> None:
        if context.compiled is not None:
            seen.append((statement, context.cache_hit))

    for n in range(2):
        services.ledger.post_consumption([ConsumptionInput(
            f"c{n}", UUID(project["uuid"]), None, Decimal("1"), Period.parse("2025-02"))], "t")
        seen.clear()
        event.listen(services.engine, "after_cursor_execute", record)
        try:
            services.projector.catch_up()
        finally:
            event.remove(services.engine, "after_cursor_execute", record)
    assert any("ON CONFLICT" in statement for statement, _ in seen)
    assert [(statement, hit) for statement, hit in seen if hit != CacheStats.CACHE_HIT] == []


def test_month_counters_are_upserted_not_read_first(directory: Directory,
                                                    services: Services) -> None:
    """A posted item's month counters (the credit's, the project's, the organisation's)
    are made by the first item and added to by the next, each in one statement: reading
    them first cost three of a single item's twenty statements (issue 18)."""

    from ledger.periods import Period
    from ledger.posting import ConsumptionInput
    from projections.tables import credit_months, customer_months, project_months

    org = directory.customer("Org")
    project = directory.project(org, "P")
    directory.customer_credit(org, "100")
    statements: list[str] = []
    for n, amount in enumerate(("1.5", "2.25")):
        services.ledger.post_consumption([ConsumptionInput(
            f"m{n}", UUID(project["uuid"]), None, Decimal(amount), Period.parse("2025-02"))],
            "t")
        with capture_statements(services.engine, statements):
            services.projector.catch_up()
    month_tables = ("credit_months", "project_months", "customer_months")
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")
                and any(f"FROM {name}" in s for name in month_tables)]
    with services.engine.connect() as conn:
        assert conn.execute(select(credit_months.c.drawn)).scalar() == Decimal("3.75")
        assert conn.execute(select(project_months.c.cost)).scalar() == Decimal("3.75")
        assert conn.execute(select(customer_months.c.item_count)).scalar() == 2


def test_a_read_does_not_queue_behind_a_catch_up_in_progress(
        directory: Directory, services: Services, database_url: str) -> None:
    """PostgreSQL: while another connection holds the projection lock (applying what is
    pending), a GET answers from the read models as they are instead of waiting; once the
    lock is free, the next GET applies what was recorded meanwhile (issue 18)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite readers take its write lock in turn")
    staff = directory.staff
    services.ledger.register_customer("Recorded meanwhile", "meanwhile", "cli")
    holder = services.engine.connect()
    holder.begin()
    holder.execute(projector_module.LOCK_POSITION)
    answers: list[Any] = []
    reader = threading.Thread(target=lambda: answers.append(
        directory.client.simulate_get("/api/customers/", headers=staff)))
    reader.start()
    try:
        reader.join(timeout=30)
        waited = reader.is_alive()
    finally:
        holder.rollback()
        holder.close()
        reader.join()
    assert not waited, "the read waited for the lock"
    assert answers[0].status_code == 200
    assert "Recorded meanwhile" not in [row["name"] for row in answers[0].json]
    after = directory.client.simulate_get("/api/customers/", headers=staff)
    assert "Recorded meanwhile" in [row["name"] for row in after.json]


def test_a_write_failing_inside_the_pipelined_flush_fails_its_batch(
        directory: Directory, services: Services) -> None:
    """The flush's writes go out pipelined on PostgreSQL (issue 18): one that fails is
    raised as SQLAlchemy raises a statement's error, and the batch leaves nothing."""
    org = directory.customer("Org")
    with services.engine.connect() as conn:
        row = dict(conn.execute(select(customers).where(
            customers.c.uuid == org["uuid"])).mappings().one())
        count_before = conn.execute(select(func.count()).select_from(counters)).scalar()
        conn.rollback()
        transaction = conn.begin()
        changes = Changes(conn)
        changes.add(counters, "pipelined-before-the-failure", value=1)
        changes.insert(customers, {**row})  # its key exists: the INSERT fails
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            changes.flush()
        transaction.rollback()
        assert conn.execute(select(func.count()).select_from(counters)).scalar() == count_before
        assert conn.execute(select(customers.c.name).where(
            customers.c.uuid == org["uuid"])).scalar() == "Org"


def test_the_known_position_moves_only_once_its_batch_is_committed(
        directory: Directory, services: Services) -> None:
    """Another thread that sees the known position past its own write reads at once
    (`catch_up_to` returns early), so the position may move only after the commit: moved
    before, a request read its own new customer as 404 (SQLite, eight writers)."""
    directory.customer("Org")
    services.ledger.register_customer("Later", "later", "t")
    before = services.projector.known_position
    at_commit: list[int] = []

    def committing(conn: Any) -> None:
        at_commit.append(services.projector.known_position)

    event.listen(services.engine, "commit", committing)
    try:
        assert services.projector.catch_up() == 1
    finally:
        event.remove(services.engine, "commit", committing)
    assert at_commit[0] == before
    assert services.projector.known_position > before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rows_with_a_key_of_two_columns_load_through_the_keys_index(
        directory: Directory, services: Services) -> None:
    """SQLite scans the whole table for a list of row values alone (issue 18: every batch
    of a month close read all 300,000 credit versions at 100,000 organisations)."""
    org = directory.customer("Org")
    directory.customer_credit(org, "10")
    for name in ("Alpha", "Beta", "Gamma"):
        directory.project_credit(directory.project(org, name), "1")
    with services.engine.connect() as conn:
        stored = conn.execute(select(credit_versions.c.uuid, credit_versions.c.version)).all()
        assert len(stored) >= 4
        statements: list[str] = []
        changes = Changes(conn)
        with capture_statements(services.engine, statements):
            changes.load(credit_versions, [tuple(row) for row in stored])
        assert all(changes.rows[credit_versions][tuple(row)] is not None for row in stored)
        lookup = next(s for s in statements if "credit_versions" in s)
        plan = " ".join(str(row[3]) for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + lookup.replace("?", "NULL")))
    assert "SEARCH credit_versions USING" in plan, plan
    assert "SCAN credit_versions" not in plan, plan
