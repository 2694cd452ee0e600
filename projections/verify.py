"""Replay the whole event log into fresh read models and compare them with the live ones.

The fresh models live in a temporary SQLite file, whatever the live database is, so a
check never touches production tables. The live side is read in one transaction
(repeatable read on PostgreSQL) together with its tracking position, and the replay stops
at that position, so a projector running meanwhile does not show up as drift.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, select

from ledger.application import Ledger
from projections.database import make_engine
from projections.projector import NAME, apply_events
from projections.tables import READ_MODEL_TABLES, metadata, tracking

BATCH = 500
Rows = dict[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class Difference:
    """One cell (or a whole row, when column is None) that differs."""

    table: str
    key: tuple[Any, ...]
    column: str | None
    live: Any
    replayed: Any

    def __str__(self) -> str:
        key = ", ".join(str(part) for part in self.key)
        if self.column is None:
            return f"{self.table}[{key}]: live {self.live}, replayed {self.replayed}"
        return (f"{self.table}[{key}].{self.column}: live {self.live!r}, "
                f"replayed {self.replayed!r}")


@dataclass(frozen=True)
class Verification:
    position: int
    rows_compared: int
    differences: list[Difference]
    warnings: list[str]


def verify(app: Ledger, engine: Engine,
           progress: Callable[[int], None] = lambda n: None) -> Verification:
    """Compare every read-model table with a replay up to the live tracking position."""
    position, live = read_live(engine)
    with tempfile.TemporaryDirectory(prefix="credit-ledger-verify-") as folder:
        fresh = make_engine(f"sqlite:///{Path(folder) / 'replay.db'}")
        try:
            replay(app, fresh, position, progress)
            with fresh.connect() as conn:
                replayed = {table.name: load(conn, table) for table in READ_MODEL_TABLES}
        finally:
            fresh.dispose()
    differences = [d for table in READ_MODEL_TABLES
                   for d in compare(table, live[table.name], replayed[table.name])]
    return Verification(position, sum(len(rows) for rows in live.values()), differences,
                        app.calendar().irregularities())


def read_live(engine: Engine) -> tuple[int, dict[str, Rows]]:
    """The position and every table, as one consistent snapshot."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            found = conn.execute(select(tracking.c.position).where(tracking.c.name == NAME))
            position = int(found.scalar() or 0)
            return position, {table.name: load(conn, table) for table in READ_MODEL_TABLES}


def replay(app: Ledger, fresh: Engine, stop: int, progress: Callable[[int], None]) -> None:
    metadata.create_all(fresh, tables=READ_MODEL_TABLES)  # no trigram indexes: SQLite
    done = 0
    with fresh.begin() as conn:
        for batch in notifications(app, stop):
            apply_events(conn, [(app.mapper.to_domain_event(n), n.id) for n in batch])
            done += len(batch)
            progress(done)


def notifications(app: Ledger, stop: int) -> Iterator[list[Any]]:
    position = 0
    while position < stop:
        batch = list(app.recorder.select_notifications(
            start=position, limit=BATCH, stop=stop, inclusive_of_start=False))
        if not batch:
            return
        yield batch
        position = batch[-1].id


def load(conn: Connection, table: Table) -> Rows:
    key_columns = [column.name for column in table.primary_key.columns]
    rows: Rows = {}
    for row in conn.execute(select(table)).mappings():
        values = {name: normalise(value) for name, value in row.items()}
        rows[tuple(values[name] for name in key_columns)] = values
    return rows


def normalise(value: Any) -> Any:
    """SQLite hands timestamps back naive (they are UTC); PostgreSQL hands them aware."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    return value


def compare(table: Table, live: Rows, replayed: Rows) -> Iterator[Difference]:
    for key in sorted(live.keys() | replayed.keys(), key=lambda k: tuple(map(str, k))):
        if key not in replayed:
            yield Difference(table.name, key, None, "has the row", "does not")
        elif key not in live:
            yield Difference(table.name, key, None, "does not have the row", "has it")
        else:
            for column in table.columns:
                mine, theirs = live[key][column.name], replayed[key][column.name]
                if mine != theirs:
                    yield Difference(table.name, key, column.name, mine, theirs)
