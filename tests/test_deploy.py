"""Deployment files: what can be checked without Docker or systemd is checked here.

The compose file parses with the expected services; the Dockerfile's command, run with the
image's environment outside a container, serves, and its health check passes against it;
the systemd units start commands that exist.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def dockerfile() -> dict[str, str]:
    """The final stage's ENV, CMD and HEALTHCHECK, with line continuations joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    found = {"ENV": "", "CMD": "", "HEALTHCHECK": "", "USER": ""}
    for line in final.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in found:
            found[word] = rest.strip()
    return found


def test_compose_file_has_the_database_api_and_projector() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "api", "projector"}
    assert services["projector"]["command"] == ["credit-ledger", "project"]
    for name in ("api", "projector"):
        url = services[name]["environment"]["LEDGER_DATABASE_URL"]
        assert url == "postgresql://ledger:ledger@db:5432/ledger"
    assert services["api"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == "ledger"
    # one image, built once (by api) and reused (issue 21 row 16)
    assert services["api"]["build"] == "." and "build" not in services["projector"]
    assert services["api"]["image"] == services["projector"]["image"] == "credit-ledger:local"


def test_the_image_runs_as_a_user_and_its_command_serves_and_passes_its_health_check(
        tmp_path: Path) -> None:
    image = dockerfile()
    assert image["USER"] == "credit-ledger"
    env = dict(re.findall(r"(\w+)=(\S+)", image["ENV"]))
    assert env["LEDGER_BIND"] == "0.0.0.0:8000"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.update(LEDGER_BIND=f"127.0.0.1:{port}",
               LEDGER_DATABASE_URL=f"sqlite:///{tmp_path / 'credit-ledger.db'}",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    command = json.loads(image["CMD"])
    assert command == ["credit-ledger", "serve"]
    health = json.loads(image["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert health[0] == "python" and "127.0.0.1:8000" not in health[2]  # port of LEDGER_BIND
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        passed = False
        deadline = time.monotonic() + 30
        while not passed and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.3)
            check = subprocess.run([sys.executable, *health[1:]], capture_output=True,
                                   timeout=10, env=env)
            passed = check.returncode == 0
        assert passed, (tmp_path / "server.log").read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    lines = (tmp_path / "server.log").read_text().splitlines()
    first = json.loads(lines[0])  # LEDGER_LOG_FORMAT=json: every line, start-up's too
    assert first["message"] == f"Created database {tmp_path / 'credit-ledger.db'}."
    assert first["level"] == "info" and json.loads(lines[1])["message"].startswith("Serving ")
    assert all(json.loads(line) for line in lines)


def test_systemd_units_start_existing_commands() -> None:
    for name, subcommand in (("credit-ledger.service", "serve"),
                             ("credit-ledger-projector.service", "project")):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read(ROOT / "deploy" / name)
        exec_start = shlex.split(unit["Service"]["ExecStart"])
        assert exec_start == ["/opt/credit-ledger/.venv/bin/credit-ledger", subcommand]
        assert unit["Service"]["User"] == "credit-ledger"
        assert unit["Install"]["WantedBy"] == "multi-user.target"
        help_text = subprocess.run([str(BIN / "credit-ledger"), subcommand, "--help"],
                                   capture_output=True, text=True, timeout=60)
        assert help_text.returncode == 0 and "--database-url" in help_text.stdout
