"""The README's First steps, run verbatim against a live server on a fresh database.

Only the address (a free port instead of 8000) and the path of the installed script differ
from what a newcomer pastes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conformance.conftest import _start, _stop

README = Path(__file__).resolve().parent.parent / "README.md"
SCRIPT = str(Path(sys.executable).with_name("credit-ledger"))


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_set_up_has_exactly_two_commands() -> None:
    blocks = shell_blocks(section("Set up"))
    assert [len(block.strip().splitlines()) for block in blocks] == [1, 1]
    assert blocks[0].strip().endswith("credit-ledger serve")
    assert blocks[1].strip().endswith(".venv/bin/python -m pytest")


def test_first_steps_reach_a_closed_month_and_its_reconciliation(tmp_path: Path) -> None:
    steps, = shell_blocks(section("First steps"))
    env = {**os.environ, "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "LEDGER_ACCESS_LOG": "/dev/null"}
    server, base = _start(env, tmp_path, tmp_path / "server.log")
    try:
        script = (steps.replace("http://127.0.0.1:8000", base)
                  .replace(".venv/bin/credit-ledger", SCRIPT))
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        _stop(server)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    answers = [json.loads(line) for line in lines if line.startswith(("{", "["))]
    customer_credit, project_credit, posted, projects, customers, closed, periods, report = (
        answers[:8])
    assert (customer_credit["value"], project_credit["value"]) == ("1000.00000", "300.00000")
    assert [(i["drawn_from_project_credit"], i["uncovered"]) for i in posted] == [
        ("120.50000", "0.00000"), ("30.00000", "0.00000")]
    assert (projects[0]["value"], customers[0]["value"]) == ("149.50000", "849.50000")
    assert (closed["state"], periods[0]["state"]) == ("closed", "closed")
    row = next(r for r in report["rows"] if r["kind"] == "project_credit")
    assert (row["opening"], row["created"], row["consumed"], row["closing"],
            row["ties_out"]) == ("0.00000", "300.00000", "-150.50000", "149.50000", True)
    assert report["summary"]["all_rows_tie_out"] and report["summary"]["closing_matches"]
    assert any(line.split(",")[1] == "project_credit"
               and line.endswith(",149.50000,true") for line in lines)
    assert lines[-1].startswith("Read models match a replay of")


def test_every_test_the_readme_names_exists() -> None:
    """Each money rule in the README names the test that proves it."""
    named = set(re.findall(r"`(test_\w+)`", README.read_text()))
    defined = {match for path in Path(__file__).parent.glob("test_*.py")
               for match in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert named and named <= defined, sorted(named - defined)


def test_the_webhook_receiver_in_ten_lines_verifies_a_signed_delivery(tmp_path: Path) -> None:
    """The README's receiver, run as written (with a real secret and a free port)."""
    import time

    import httpx

    from notifications.signing import headers, new_secret
    from tests.live import free_port

    text = section("API")
    code, = re.findall(r"```python\n(.*?)```", text[text.index("### Notifications"):], re.S)
    assert len([line for line in code.splitlines() if line.strip()]) <= 11
    secret, port = new_secret(), free_port()
    script = code.replace("whsec_...", secret).replace("8080", str(port))
    receiver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        body = json.dumps({"type": "credit.balance_low", "timestamp": "2026-11-26T00:00:00Z",
                           "data": {"threshold": "50%", "balance": "40.00000"}})
        for _ in range(100):
            try:
                signed = headers(secret, "msg_1", int(time.time()), body)
                answer = httpx.post(f"http://127.0.0.1:{port}/hook", content=body,
                                    headers=signed)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert answer.status_code == 204
        try:  # a forged body raises in the handler: no 204
            forged = httpx.post(f"http://127.0.0.1:{port}/hook",
                                content=body.replace("50", "5"), headers=signed).status_code
        except httpx.RemoteProtocolError:
            forged = None
        assert forged != 204
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "credit.balance_low 50% 40.00000"
    finally:
        receiver.kill()
        receiver.wait()
