"""The read models' schema version: a server never serves tables older than its code.

Read-model tables are made with `CREATE TABLE IF NOT EXISTS`, so a changed table (a new
column, a new meaning) is not changed in a database made by an older release; serving it
would give 500s or wrong answers. One row records the version the read models were built
at. A database whose row is older, or missing while the read models hold data, is stale
until `credit-ledger rebuild` (or LEDGER_AUTO_REBUILD=1 at start) replays the log into
fresh tables and records the current version.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, select

from projections.tables import tracking

# Bump whenever a read-model table or what a projector writes into it changes.
# 1: users.is_active (user deactivation).
# 2: tables shaped for their queries (names on credit rows, month totals, counters).
# 3: customer_credits.withdrawable_balance and protect_allocations; items' coverage changes.
# 4: credit_versions (as-of state per credit version), credit_transactions indexed by credit
#    and time (month-end balances, statements).
# 5: consumptions.reversed_at and reversed_by (the consumption items list);
#    low_balance_thresholds on credit rows and versions.
READ_MODEL_VERSION = 5
NAME = "read_models"

metadata = MetaData()
read_model_version = Table(
    "read_model_version", metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


def stored_version(conn: Connection) -> int | None:
    found = conn.execute(select(read_model_version.c.version)
                         .where(read_model_version.c.name == NAME))
    return found.scalar()


def record(conn: Connection, version: int = READ_MODEL_VERSION) -> None:
    """Say the read models were (re)built at `version` (rebuild calls this in its transaction)."""
    metadata.create_all(conn)
    conn.execute(read_model_version.delete().where(read_model_version.c.name == NAME))
    conn.execute(read_model_version.insert(), dict(name=NAME, version=version))


def initialise(engine: Engine) -> None:
    """Create the table; empty read models are built at the current version from the start."""
    with engine.begin() as conn:
        metadata.create_all(conn)
        if stored_version(conn) is None and not _has_data(conn):
            record(conn)


def problem(engine: Engine) -> str | None:
    """Why the read models cannot be served, or None when they are current."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, read_model_version.name):
            return _stale("none")
        version = stored_version(conn)
        if version is None and not _has_data(conn):
            return None
    if version is None or version < READ_MODEL_VERSION:
        return _stale(str(version) if version is not None else "none")
    return None


def _stale(found: str) -> str:
    return (f"The read models are at schema version {found}; this release needs "
            f"{READ_MODEL_VERSION}. Run `credit-ledger rebuild` (or start with "
            f"LEDGER_AUTO_REBUILD=1).")


def _has_data(conn: Connection) -> bool:
    return bool(conn.execute(select(tracking.c.position).where(tracking.c.position > 0)).first())
