"""The read models' psycopg cursor builds result columns only when they are looked at."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import literal, select, text

from projections import lazy_description
from projections.database import make_engine
from tests.conftest import BACKENDS

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL only")
QUERY = "SELECT 1 AS one, 'two' AS two, now() AS three"


def test_the_description_reads_like_psycopgs_own(postgres_database: str) -> None:
    with psycopg.connect(postgres_database) as plain, psycopg.connect(
            postgres_database, cursor_factory=lazy_description.LazyDescriptionCursor) as lazy:
        expected: Any = plain.execute(QUERY).description
        found: Any = lazy.execute(QUERY).description
        assert len(found) == len(expected) == 3
        assert [c.name for c in found] == ["one", "two", "three"]
        assert (found[-1].name, [c.name for c in found[1:]]) == ("three", ["two", "three"])
        assert [c.type_code for c in found] == [c.type_code for c in expected]
        with pytest.raises(IndexError):
            found[3]
        assert lazy.execute("CREATE TEMP TABLE t (x int)").description is None
        no_columns: Any = lazy.execute("SELECT FROM t").description
        assert no_columns is not None and len(no_columns) == 0


def test_a_cached_statement_builds_no_columns(postgres_database: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    make = psycopg.Column.__init__

    def counted(column: psycopg.Column, *args: Any) -> None:
        built.append(args)
        make(column, *args)

    monkeypatch.setattr(psycopg.Column, "__init__", counted)
    engine = make_engine(postgres_database.replace("postgresql://", "postgresql+psycopg://"))
    numbers = select(literal(1).label("n"), literal(2).label("m"))
    try:
        with engine.connect() as conn:
            first = conn.execute(numbers).all()
            made = len(built)  # the first run reads the columns to cache their names
            again = conn.execute(numbers).mappings().all()
            assert len(built) == made  # the cached run reads none
            assert [tuple(row) for row in first] == [(1, 2)]
            assert again == [{"n": 1, "m": 2}]
            assert conn.execute(text(QUERY)).mappings().one()["two"] == "two"
    finally:
        engine.dispose()
