"""`credit-ledger notify` as a process: killed mid-delivery, and two of them at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from api.server.eventstore import DatabaseUnreachable
from api.server.notifier import run
from api.server.wiring import Services
from notifications.notifier import Notifier
from tests.live import ROOT
from tests.receiver import Receiver, receiver
from tests.support import Directory
from tests.test_notifications import LOW, consume, subscribe, world


@pytest.fixture(autouse=True)
def loopback_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_WEBHOOK_ALLOW_PRIVATE_TARGETS", "1")


def notify_process(database_url: str, log: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LEDGER_WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
           "LEDGER_WEBHOOK_TIMEOUT": "2", "LEDGER_WEBHOOK_RETRY_SCHEDULE": "0.2,0.5,1"}
    return subprocess.Popen([sys.executable, "-m", "api.cli", "notify", "--database-url",
                             database_url, "--interval", "0.1"], cwd=ROOT, env=env,
                            stdout=log, stderr=log)


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def three_crossings(directory: Directory, hook: Receiver) -> Any:
    org, project, _ = world(directory, ["50%", "10%", "0"])
    subscription = subscribe(directory, hook.url, org, LOW)
    for number, amount in enumerate(["60", "35", "5"]):
        consume(directory, project, f"item-{number}", amount)
    return subscription


def listed_ids(directory: Directory) -> list[str]:
    found = directory.client.simulate_get("/api/notifications/", headers=directory.staff)
    return [n["id"] for n in reversed(found.json)]


def test_a_dispatcher_killed_mid_delivery_resends_the_same_id_after_restart(
        directory: Directory, services: Services, database_url: str,
        tmp_path: Any) -> None:
    with receiver(delay=1.0) as hook, (tmp_path / "notify.log").open("ab") as log:
        subscription = three_crossings(directory, hook)
        first = notify_process(database_url, log)
        try:
            wait_for(hook.started.is_set, 30)
            first.send_signal(signal.SIGKILL)
            first.wait()
            started = time.monotonic()
            second = notify_process(database_url, log)
            try:
                wait_for(lambda: len(set(hook.ids())) == 3, 40)
                restarted_within = time.monotonic() - started
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=15) == 0
        finally:
            if first.poll() is None:
                first.kill()
        ids = listed_ids(directory)
        assert len(ids) == 3
        bodies = hook.verified(subscription["secret"])
    assert restarted_within < 30
    assert set(hook.ids()) == set(ids)
    assert list(dict.fromkeys(hook.ids())) == ids  # in order, repeats only of the same id
    assert [b["type"] for b in dict(zip(hook.ids(), bodies, strict=True)).values()] == [
        "credit.balance_low", "credit.balance_low", "credit.exhausted"]


def test_two_dispatchers_never_deliver_the_same_notification_twice(
        directory: Directory, services: Services, database_url: str,
        tmp_path: Any) -> None:
    with receiver(delay=0.3) as hook, (tmp_path / "notify.log").open("ab") as log:
        three_crossings(directory, hook)
        processes = [notify_process(database_url, log) for _ in range(2)]
        try:
            wait_for(lambda: len(hook.received) >= 3, 40)
            time.sleep(1.0)  # anything sent twice would have arrived by now
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)
        assert hook.ids() == listed_ids(directory)


@pytest.mark.parametrize("notifier", ["on", "off"])
def test_serve_runs_one_notifier_unless_it_is_off(database_url: str, tmp_path: Any,
                                                  notifier: str) -> None:
    import httpx

    from tests.conformance.conftest import _start, _stop
    from tests.live import make_users

    staff = make_users(database_url, staff=True)["staff"]
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_NOTIFIER": notifier,
           "LEDGER_WEBHOOK_ALLOW_PRIVATE_TARGETS": "1", "LEDGER_ACCESS_LOG": "/dev/null",
           "LEDGER_PUBLIC_URL": "https://ledger.example.org"}
    with receiver() as hook:
        server, base = _start(env, tmp_path, tmp_path / "serve.log")
        try:
            api = httpx.Client(base_url=base, headers=staff, timeout=10)
            org = api.post("/api/customers/", json={"name": "Org"}).json()
            project = api.post("/api/projects/", json={"name": "A", "customer": org["url"]})
            api.post("/api/customer-credits/", json={"customer": org["url"], "value": "100"})
            api.post("/api/project-credits/", json={
                "project": project.json()["url"], "value": "10",
                "low_balance_thresholds": ["50%"]}).raise_for_status()
            made = api.post("/api/webhooks/", json={"url": hook.url, "customer": org["url"],
                                                    "event_types": LOW}).json()
            api.post("/api/consumptions/", json=[{
                "id": "i-1", "project": project.json()["url"], "amount": "6",
                "period": "2026-11"}]).raise_for_status()
            if notifier == "on":
                wait_for(lambda: len(hook.received) == 1, 30)
                [body] = hook.verified(made["secret"])
                assert body["data"]["links"]["credit"].startswith(
                    "https://ledger.example.org/api/project-credits/")
            else:
                time.sleep(3)
                assert hook.received == []
        finally:
            _stop(server)


@pytest.mark.parametrize("outage", [
    DatabaseUnreachable("couldn't get a connection after 1.00 sec"),
    OperationalError("server closed the connection unexpectedly")])
def test_a_round_that_finds_the_event_store_down_is_tried_again_next_round(
        services: Services, monkeypatch: pytest.MonkeyPatch, outage: Exception,
        caplog: pytest.LogCaptureFixture) -> None:
    """The event store's outage errors are not SQLAlchemy's: they must not end the loop."""
    def unreachable(self: Notifier) -> None:
        raise outage

    monkeypatch.setattr(Notifier, "catch_up", unreachable)
    run(services, interval=0, once=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"notifier round failed: {type(outage).__name__}"]
