"""The README's backup and restore: an online SQLite backup of the events alone, then
`rebuild` and `verify`, gives back every read-model row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from api.cli import main
from api.server.wiring import build_services
from tests.support import Directory, read_model_rows
from tests.test_transactions import run_scenario

EVENT_TABLES = ("stored_events", "stored_snapshots")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_events_alone_restore_every_read_model(directory: Directory, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run_scenario(directory)
    live_path = directory.services.engine.url.database
    assert live_path is not None
    backup = tmp_path / "backup.db"
    with sqlite3.connect(live_path) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)  # online: the service may be writing meanwhile
        tables = [name for (name,) in copy.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for name in tables:
            if name not in EVENT_TABLES:
                copy.execute(f'DROP TABLE IF EXISTS "{name}"')  # a full-text table's own go with it
    url = f"sqlite:///{backup}"
    assert main(["rebuild", "--database-url", url]) == 0
    assert main(["verify", "--database-url", url]) == 0
    assert "Read models match a replay of" in capsys.readouterr().out
    restored = build_services(url)
    try:
        assert read_model_rows(restored.engine) == read_model_rows(directory.services.engine)
    finally:
        restored.close()
