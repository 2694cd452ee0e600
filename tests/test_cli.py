"""The credit-ledger command against the same database the API uses."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from api.cli import main
from api.cli.periods import follow_log
from api.server.wiring import Services
from notifications.notifier import Notifier
from tests.support import Clock, Directory, auth, read_model_rows


@pytest.fixture(autouse=True)
def same_database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)


def test_users_roles_close_and_rebuild(directory: Directory, services: Services, clock: Clock,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    clock.today = date(2025, 2, 20)
    assert main(["users", "create", "alice"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(token) == 40
    org = directory.customer("Org")
    project = directory.project(org, "P")
    directory.customer_credit(org, "100", expected_consumption="30")
    clock.today = date(2025, 3, 2)
    assert main(["roles", "grant", "alice", "owner", "--customer", org["uuid"]]) == 0
    created = directory.client.simulate_post("/api/project-credits/", headers=auth(token),
                                             json={"project": project["url"], "value": "10"})
    assert created.status_code == 201, created.text
    assert main(["close-period", "2025-02"]) == 0
    out, err = capsys.readouterr()
    assert "Closed billing period 2025-02: settled 1 customers." in out
    assert "settling 2025-02" in err and "1/1" in err
    assert main(["close-period", "2025-02"]) == 0
    assert "already closed" in capsys.readouterr().out
    org_credit = directory.client.simulate_get("/api/customer-credits/",
                                               headers=directory.staff).json[0]
    assert org_credit["value"] == "70.00000"
    before = read_model_rows(services.engine)
    assert main(["rebuild"]) == 0
    out, err = capsys.readouterr()
    assert "Rebuilt every read model" in out and "replaying events" in err
    assert read_model_rows(services.engine) == before
    assert main(["roles", "grant", "alice", "owner", "--customer", "0" * 32]) == 1
    assert main(["users", "create", "alice"]) == 1


def test_close_period_refuses_a_future_month_and_names_the_next(
        directory: Directory, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    clock.today = date(2025, 1, 10)
    directory.customer_credit(directory.customer("Org"), "100")
    clock.today = date(2026, 11, 26)
    assert main(["close-period", "2099-01"]) == 1
    err = capsys.readouterr().err
    assert "Billing period 2099-01 has not started yet." in err
    assert main(["close-period", "2025-01"]) == 0
    capsys.readouterr()
    assert main(["close-period", "2099-01"]) == 1
    assert "The next period to close is 2025-02." in capsys.readouterr().err
    assert [p["period"] for p in directory.client.simulate_get(
        "/api/billing-periods/", headers=directory.staff).json] == ["2025-01"]


def test_users_list_rotate_and_deactivate(directory: Directory,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    old = directory.user("carol")
    assert main(["users", "rotate-token", "carol"]) == 0
    new = auth(capsys.readouterr().out.strip().splitlines()[-1])
    assert directory.client.simulate_get("/api/customers/", headers=old).status_code == 401
    assert directory.client.simulate_get("/api/customers/", headers=new).status_code == 200
    assert main(["users", "deactivate", "carol"]) == 0
    assert capsys.readouterr().out == "Deactivated carol.\n"
    assert directory.client.simulate_get("/api/customers/", headers=new).json == {
        "detail": "Invalid token."}
    assert main(["users", "rotate-token", "carol"]) == 1
    assert "User 'carol' is deactivated." in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ACTIVE", "ROLES"]
    assert [line.split() for line in lines[1:]] == [["carol", "user", "no", "-"]]
    assert main(["users", "deactivate", "nobody"]) == 1
    assert "No user named 'nobody'." in capsys.readouterr().err


def test_every_command_and_option_has_help() -> None:
    import click

    from api.cli.commands import cli

    def walk(command: click.Command, path: str) -> list[str]:
        missing = [] if command.help else [path]
        missing += [f"{path} {p.opts[0]}" for p in command.params
                    if isinstance(p, click.Option) and not p.help]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(cli, "credit-ledger") == []
    assert set(cli.commands) >= {"serve", "project", "rebuild", "verify", "close-period",
                                 "reopen-period", "export", "users", "roles"}


def test_serve_takes_bind_and_workers_from_the_environment_like_gunicorn_c(
        monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    import api.server.server

    started: list[tuple[str, int]] = []
    monkeypatch.setattr(api.server.server, "serve", lambda bind, workers: started.append(
        (bind, workers)))
    monkeypatch.setenv("LEDGER_BIND", "127.0.0.1:18399")
    monkeypatch.setenv("LEDGER_WORKERS", "3")
    assert main(["serve"]) == 0
    assert main(["serve", "--port", "18398", "--workers", "1"]) == 0
    assert started == [("127.0.0.1:18399", 3), ("127.0.0.1:18398", 1)]


# --- issue 21 rows 12 and 14 ---------------------------------------------------------------

def test_users_create_retried_after_its_commit_landed_succeeds(
        services: Services, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """eventsourcing re-sends an insert whose connection broke at commit; when the first
    attempt landed, the re-send meets the user it created: that is success, not a clash."""
    from eventsourcing.application import Application
    from eventsourcing.persistence import IntegrityError

    plain_save = Application.save

    def landed_then_failed(self: Application, *objs: object, **kwargs: object) -> object:
        plain_save(self, *objs, **kwargs)  # type: ignore[arg-type]
        raise IntegrityError("duplicate key (the retry of a commit that landed)")

    monkeypatch.setattr(Application, "save", landed_then_failed)
    assert main(["users", "create", "root", "--staff"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    monkeypatch.setattr(Application, "save", plain_save)
    assert main(["users", "create", "root"]) == 1
    assert "User 'root' already exists." in capsys.readouterr().err
    services.projector.catch_up()
    import falcon.testing

    from api.app import create_app

    client = falcon.testing.TestClient(create_app(services))
    assert client.simulate_get("/api/customers/", headers=auth(token)).status_code == 200


@pytest.mark.parametrize("name", ["", "  ", " root", "ro\tot", "root\n"])
def test_users_create_refuses_a_blank_or_padded_name(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "create", name]) == 1
    assert "A user name may not" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []


def test_revoking_a_role_not_held_is_an_error(
        directory: Directory, capsys: pytest.CaptureFixture[str]) -> None:
    org = directory.customer("Org")
    assert main(["users", "create", "alice"]) == 0
    assert main(["roles", "revoke", "alice", "owner", "--customer", org["uuid"]]) == 1
    assert f"alice does not hold the customer role owner of {org['uuid']}" in (
        capsys.readouterr().err.replace("-", ""))
    assert main(["roles", "grant", "alice", "owner", "--customer", org["uuid"]]) == 0
    assert main(["roles", "revoke", "alice", "owner", "--customer", org["uuid"]]) == 0
    assert "Revoked customer role owner" in capsys.readouterr().out
    assert main(["roles", "revoke", "nobody", "owner", "--customer", org["uuid"]]) == 1
    assert "No user named 'nobody'." in capsys.readouterr().err


def test_export_of_a_month_that_has_not_started_is_an_error(
        directory: Directory, tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    directory.customer_credit(directory.customer("Org"), "100")
    assert main(["export", "reconciliation", "--period", "2099-01", "--out", "-"]) == 1
    assert "Billing period 2099-01 has not started yet." in capsys.readouterr().err
    assert main(["export", "reconciliation", "--period", "2026-01\n", "--out", "-"]) == 1
    assert "Enter a billing period as YYYY-MM." in capsys.readouterr().err
    assert main(["export", "reconciliation", "--period", "2025-01", "--out", "-"]) == 0


def test_close_period_projects_alongside_on_postgresql(
        directory: Directory, services: Services, clock: Clock, database_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A large close on PostgreSQL projects in a second process while it settles; the read
    models it leaves are exactly what replaying the log builds."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a second projecting process is for PostgreSQL only")
    from api.cli import periods

    monkeypatch.setattr(periods, "PROJECT_ALONGSIDE_FROM", 2)
    clock.today = date(2025, 1, 10)
    for name in ("A", "B", "C"):
        directory.customer_credit(directory.customer(name), "100", expected_consumption="10")
    clock.today = date(2025, 2, 3)
    assert main(["close-period", "2025-01"]) == 0
    out, err = capsys.readouterr()
    assert "settled 3 customers" in out and "follower stopped" not in err
    values = sorted(c["value"] for c in directory.client.simulate_get(
        "/api/customer-credits/", headers=directory.staff).json)
    assert values == ["90.00000"] * 3
    after_close = read_model_rows(services.engine)
    assert main(["rebuild"]) == 0
    assert read_model_rows(services.engine) == after_close


def test_the_follower_catches_up_until_told_to_stop(
        directory: Directory, services: Services, database_url: str) -> None:
    services.ledger.register_customer("Org", "org", actor="test")
    assert services.projector.pending()
    done = threading.Event()
    follower = threading.Thread(target=follow_log, args=(database_url, done))
    follower.start()
    try:
        for _ in range(100):
            if not services.projector.pending():
                break
            done.wait(0.05)
        assert not services.projector.pending()
    finally:
        done.set()
        follower.join(timeout=10)
    assert not follower.is_alive()


def test_notify_once_shows_how_far_it_has_followed_the_log(
        directory: Directory, services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    org = directory.customer("Org")
    directory.customer_credit(org, "100")
    log_end = int(services.ledger.recorder.max_notification_id() or 0)
    capsys.readouterr()
    assert main(["notify", "--once"]) == 0
    err = capsys.readouterr().err
    assert "following events" in err and f"{log_end}/{log_end}" in err
    assert Notifier(services.ledger, services.engine).position() == log_end
