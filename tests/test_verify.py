"""`credit-ledger verify`: a replay of the whole log into fresh read models finds drift."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import delete, select, update

from api import cli
from projections.tables import credit_transactions, project_credits
from projections.verify import verify
from tests.support import Directory
from tests.test_transactions import Scenario, run_scenario


@pytest.fixture
def scenario(directory: Directory, database_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Scenario:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    return run_scenario(directory)


def test_verify_passes_on_untouched_read_models(scenario: Scenario,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify"]) == 0
    captured = capsys.readouterr()
    assert "Read models match a replay of" in captured.out
    assert "replaying events" in captured.err


def test_verify_catches_a_value_changed_behind_its_back(
        scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    credit = scenario.credits["A"]["uuid"]
    engine = scenario.directory.services.engine
    with engine.begin() as conn:
        conn.execute(update(project_credits).where(project_credits.c.uuid == credit)
                     .values(value=Decimal("999")))
    assert cli.main(["verify"]) == 1
    out = capsys.readouterr().out
    assert (f"project_credits[{credit}].value: live Decimal('999.00000'), "
            f"replayed Decimal('0.00000')") in out
    assert "Drift: 1 differences" in out


def test_verify_reports_missing_and_extra_rows(scenario: Scenario) -> None:
    services = scenario.directory.services
    with services.engine.begin() as conn:
        victim = conn.execute(select(credit_transactions.c.uuid).limit(1)).scalar_one()
        conn.execute(delete(credit_transactions).where(credit_transactions.c.uuid == victim))
    result = verify(services.ledger, services.engine)
    assert [str(d) for d in result.differences] == [
        f"credit_transactions[{victim}]: live does not have the row, replayed has it"]
    assert result.position == services.projector.position()


def test_verify_stops_at_the_live_position(scenario: Scenario) -> None:
    """Events the projector has not applied yet are not drift."""
    services = scenario.directory.services
    services.ledger.register_customer("Late", "late", "test")
    assert services.projector.pending()
    assert verify(services.ledger, services.engine).differences == []
