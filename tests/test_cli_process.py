"""The installed `credit-ledger` script as a user runs it: version, help, guard rails.

Each case is one fresh process (about a second of imports each), so only what needs a real
process is here: exit codes and that no traceback ever reaches the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = str(Path(sys.executable).with_name("credit-ledger"))


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version_and_help_on_every_option() -> None:
    from importlib.metadata import version

    assert run("--version").stdout == f"credit-ledger {version('credit-ledger')}\n"
    help_text = run("serve", "--help").stdout
    for option in ("--database-url", "--bind", "--workers", "LEDGER_BIND", "LEDGER_WORKERS"):
        assert option in help_text


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ledger.db"
    line = one_error_line(run("verify", env={"LEDGER_DATABASE_URL": f"sqlite:///{missing}"}))
    assert line.startswith(f"Error: No database at {missing}.")
    assert not missing.parent.exists()
    line = one_error_line(run("users", "list", "--database-url", "mysql://u:secret@h/db"))
    assert line == ("Error: Unsupported database URL 'mysql://u:***@h/db': use "
                    "sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    line = one_error_line(run("verify", "--database-url",
                              "postgresql://root:secret@127.0.0.1:1/x"))
    assert line.startswith("Error: Cannot use the database postgresql://root:***@127.0.0.1:1/x"
                           ": connection failed:"), line


def test_an_unwritable_export_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run("users", "create", "admin", env={"LEDGER_DATABASE_URL": url}).returncode == 0
    out = tmp_path / "missing" / "report.csv"
    result = run("export", "reconciliation", "--period", "2026-01", "--out", str(out),
                 "--database-url", url)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: No such file or directory: {out}")


def test_users_create_makes_the_default_database_whatever_the_directory(
        tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "LEDGER_DATABASE_URL": ""}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    created = run("users", "create", "admin", "--staff", env=env, cwd=tmp_path / "a")
    database = tmp_path / "data" / "credit-ledger" / "credit-ledger.db"
    assert created.returncode == 0, created.stderr
    assert created.stderr == f"Created database {database}.\n"
    listed = run("users", "list", env=env, cwd=tmp_path / "b")
    assert listed.stdout.splitlines()[1].split() == ["admin", "staff", "yes", "-"]


# A Ctrl-C reaches the command even when this suite was started with SIGINT ignored (a
# background job of a script): a process that starts so keeps ignoring it, as it should.
INTERRUPTIBLE = ["env", "--default-signal=INT"]


def test_ctrl_c_ends_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run("users", "create", "admin", env={"LEDGER_DATABASE_URL": url}).returncode == 0
    proc = subprocess.Popen([*INTERRUPTIBLE, SCRIPT, "project", "--database-url", url], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.0)  # imported and polling
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip() == "Interrupted.", err


def test_ctrl_c_while_the_commands_load_ends_with_one_line(tmp_path: Path) -> None:
    """A Ctrl-C in the first second, while the commands are still being imported, ends as
    one later does (it showed a traceback and died of the signal)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run("users", "create", "admin", env={"LEDGER_DATABASE_URL": url}).returncode == 0
    proc = subprocess.Popen([*INTERRUPTIBLE, SCRIPT, "project", "--database-url", url], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not importing_sqlalchemy(proc.pid):
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.strip()) == (130, "Interrupted.")


def importing_sqlalchemy(pid: int) -> bool:
    """SQLAlchemy's compiled modules are mapped: the commands' imports are under way."""
    try:
        return "sqlalchemy" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_close_period_future_month_in_a_process(tmp_path: Path) -> None:
    period = "2099-01"
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run("users", "create", "admin", env={"LEDGER_DATABASE_URL": url}).returncode == 0
    line = one_error_line(run("close-period", period, "--database-url", url))
    assert line.startswith(f"Error: Billing period {period} has not started yet.")
