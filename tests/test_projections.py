"""Read models: rebuild equals live, crashes recover, nothing is applied twice."""

from __future__ import annotations

import threading
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import func, select

from api.wiring import Services, build_services
from ledger.terms import Terms
from projections import projector as projector_module
from projections.tables import credit_transactions, customer_credits, project_credits
from tests.scenario import run_scenario
from tests.support import Directory, read_model_rows


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
