"""The credit-ledger command against the same database the API uses."""

from __future__ import annotations

from datetime import date

import pytest

from api.cli import main
from api.wiring import Services
from tests.support import Clock, Directory, auth, read_model_rows


@pytest.fixture(autouse=True)
def same_database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)


def test_users_roles_close_and_rebuild(directory: Directory, services: Services, clock: Clock,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    clock.today = date(2025, 3, 2)
    assert main(["users", "create", "alice"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(token) == 40
    org = directory.customer("Org")
    project = directory.project(org, "P")
    directory.customer_credit(org, "100", expected_consumption="30")
    assert main(["roles", "grant", "alice", "owner", "--customer", org["uuid"]]) == 0
    created = directory.client.simulate_post("/api/project-credits/", headers=auth(token),
                                             json={"project": project["url"], "value": "10"})
    assert created.status_code == 201, created.text
    assert main(["close-period", "2025-02"]) == 0
    out, err = capsys.readouterr()
    assert "Closed billing period 2025-02: settled 1 customers." in out
    assert "settled customers of 1: 1" in err
    assert main(["close-period", "2025-02"]) == 0
    assert "already closed" in capsys.readouterr().out
    org_credit = directory.client.simulate_get("/api/customer-credits/",
                                               headers=directory.staff).json[0]
    assert org_credit["value"] == "70.00000"
    before = read_model_rows(services.engine)
    assert main(["rebuild"]) == 0
    out, err = capsys.readouterr()
    assert "Rebuilt every read model" in out and "replayed events" in err
    assert read_model_rows(services.engine) == before
    assert main(["roles", "grant", "alice", "owner", "--customer", "0" * 32]) == 1
    assert main(["users", "create", "alice"]) == 1
