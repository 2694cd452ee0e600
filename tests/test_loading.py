"""ledger.loading on PostgreSQL: how many round trips a load of many aggregates costs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import psycopg
import pytest

from api.server.wiring import build_services
from ledger.credits import CustomerCredit
from ledger.loading import load_many
from ledger.terms import Terms


def test_a_probe_is_one_statement_and_jit_is_off_once_per_connection(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each probe of the event store is one statement: JIT is turned off once per pooled
    connection for its session, where a transaction scoping `SET LOCAL` cost every probe
    BEGIN, SET and COMMIT, three round trips more (issue 18). Loads stay correct."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite is asked aggregate by aggregate, in process")
    services = build_services(database_url, create_tables=True)
    try:
        ledger = services.ledger
        credits = []
        for n in range(3):
            customer_id = ledger.register_customer(f"Org {n}", f"org-{n}", "test")
            credits.append(ledger.create_customer_credit(customer_id, Decimal(100 + n),
                                                         Terms(), [], "test"))
        executed: list[str] = []
        turned_off: list[int] = []  # connections JIT was turned off on
        transactions: list[int] = []
        execute, transaction = psycopg.Cursor.execute, psycopg.Connection.transaction

        def recording(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            executed.append(query if isinstance(query, str) else query.as_string(cursor))
            if executed[-1] == "SET jit = off":
                turned_off.append(id(cursor.connection))
            return execute(cursor, query, *args, **kwargs)

        def counting(conn: Any, *args: Any, **kwargs: Any) -> Any:
            transactions.append(1)
            return transaction(conn, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", recording)
        monkeypatch.setattr(psycopg.Connection, "transaction", counting)
        loads = [load_many(ledger, dict.fromkeys(credits, CustomerCredit)) for _ in range(4)]
        monkeypatch.undo()
        values = [sorted(cast(CustomerCredit, credit).value for credit in found.values())
                  for found in loads]
        assert values == [[Decimal(100), Decimal(101), Decimal(102)]] * 4
        assert transactions == []
        probes = [query for query in executed if "LATERAL" in query]
        assert len(probes) >= 4  # the newer events of each load (and the first's snapshots)
        assert len(turned_off) == len(set(turned_off))  # once per pooled connection
        assert len(executed) == len(probes) + len(turned_off)
        again = load_many(ledger, dict.fromkeys(credits, CustomerCredit))
        assert len(again) == 3
    finally:
        services.close()
