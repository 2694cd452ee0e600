"""Name search: the `icontains` filters answered from an index on both databases.

PostgreSQL: a trigram GIN index on `lower(column)` serves `lower(column) LIKE '%text%'`.
SQLite: a full-text table with the trigram tokenizer beside each searched table, kept in
step by triggers, serves `LIKE '%text%'` on its copy of the names, and the row is found by
rowid. Without its index each database still answers, by scanning every row (issue 18: a
`project_name=` page on SQLite scanned 100,000 names, 24 requests a second).
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from functools import cache
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy import table as lightweight_table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from projections.changes import quote

log = logging.getLogger(__name__)
SEARCHED = {  # the columns the API's name filters search, per table
    "project_credits": ("project_name", "customer_name", "customer_slug"),
    "customer_credits": ("customer_name", "customer_slug"),
}
WILDCARDS = ("%", "_")


def icontains(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    """`column` contains `text`, case ignored, as upstream's `icontains`."""
    lowered = func.lower(column).contains(text.lower(), autoescape=True)
    table = getattr(column, "table", None)
    searched = SEARCHED.get(getattr(table, "name", ""), ())
    if getattr(column, "name", None) not in searched or any(c in text for c in WILDCARDS):
        return lowered  # the full-text LIKE takes no ESCAPE: a wildcard in the text scans
    return Contains(column, text, lowered)


class Contains(ColumnElement[bool]):
    """`lowered` (`lower(column) LIKE '%text%'`) everywhere but SQLite, where the rowid is
    looked up in the column's full-text table. Both forms are bound at construction, so a
    cached compilation takes this statement's values (`_traverse_internals`)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition as it stands: SQLite must not get `... = 1`
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("lowered", InternalTraversal.dp_clauseelement),
        ("pattern", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], text: str,
                 lowered: ColumnElement[bool]) -> None:
        self.column = column
        self.lowered = lowered
        self.pattern = bindparam(None, f"%{text}%", type_=String())


@compiles(Contains)
def _scan_or_trigram(element: Contains, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.lowered, **kw)


@compiles(Contains, "sqlite")
def _full_text(element: Contains, compiler: SQLCompiler, **kw: Any) -> str:
    if not full_text_available():
        return compiler.process(element.lowered, **kw)
    table_name = element.column.table.name  # type: ignore[attr-defined]
    column_name = element.column.name  # type: ignore[attr-defined]
    index = lightweight_table(search_table(table_name))
    rowids: Select[Any] = (select(literal_column("rowid")).select_from(index)
              .where(literal_column(quote(column_name)).like(element.pattern)))
    return compiler.process(literal_column(f"{quote(table_name)}.rowid").in_(rowids), **kw)


@cache
def full_text_available() -> bool:
    """Whether this Python's SQLite has FTS5 and its trigram tokenizer (3.34 and later,
    built with FTS5, as CPython's own builds are); without them the filters scan."""
    try:
        with closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(name, tokenize = 'trigram')")
    except sqlite3.Error:
        return False
    return True


def search_table(table_name: str) -> str:
    return f"{table_name}_search"


def create_search_indexes(conn: Connection, schema: str | None = None,
                          fresh: bool = False) -> None:
    """Each database's index for the name filters; rows already there are indexed.

    `fresh` (SQLite): the tables were just replaced (a rebuild's swap), so their
    full-text tables are made anew."""
    if conn.dialect.name == "postgresql":
        _create_trigram_indexes(conn, schema)
    elif conn.dialect.name == "sqlite":
        if not full_text_available():
            log.warning("SQLite has no FTS5 trigram tokenizer: name filters will scan")
            return
        for table_name, columns in SEARCHED.items():
            _create_full_text(conn, table_name, columns, fresh)


def _create_trigram_indexes(conn: Connection, schema: str | None) -> None:
    """pg_trgm is a trusted extension; where it cannot be created the filters still work,
    by scanning."""
    operators = _trigram_schema(conn)
    if operators is None:
        log.warning("pg_trgm is not available: name filters will scan")
        return
    prefix = f'"{schema}".' if schema else ""
    for table, columns in SEARCHED.items():
        for column in columns:
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {table}_{column}_trgm ON {prefix}{table} "
                f"USING gin (lower({column}) {operators}.gin_trgm_ops)")


def _trigram_schema(conn: Connection) -> str | None:
    find = "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n " \
           "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    schema = conn.exec_driver_sql(find).scalar()
    if schema is None:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        except DBAPIError:
            return None
        schema = conn.exec_driver_sql(find).scalar()
    return str(schema) if schema else None


def _create_full_text(conn: Connection, table_name: str, columns: tuple[str, ...],
                      fresh: bool) -> None:
    """An FTS5 table holding a copy of the searched columns under the row's rowid, and the
    triggers that keep it in step with every insert, delete and rename. An entry a row
    left behind is replaced, not refused, when its rowid comes round again; a rebuild
    makes the table anew."""
    index = search_table(table_name)
    listed = ", ".join(quote(column) for column in columns)
    if fresh:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(index)}")
    exists = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (index,)).scalar()
    if not exists:
        conn.exec_driver_sql(f"CREATE VIRTUAL TABLE {quote(index)} USING fts5({listed}, "
                             "tokenize = 'trigram')")
        conn.exec_driver_sql(f"INSERT INTO {quote(index)} (rowid, {listed}) "
                             f"SELECT rowid, {listed} FROM {quote(table_name)}")
    new = ", ".join(f"new.{quote(column)}" for column in columns)
    assigned = ", ".join(f"{quote(column)} = new.{quote(column)}" for column in columns)
    for event, action in (
            ("INSERT", f"INSERT OR REPLACE INTO {quote(index)} (rowid, {listed}) "
                       f"VALUES (new.rowid, {new})"),
            ("DELETE", f"DELETE FROM {quote(index)} WHERE rowid = old.rowid"),
            (f"UPDATE OF {listed}",
             f"UPDATE {quote(index)} SET {assigned} WHERE rowid = old.rowid")):
        trigger = f"{index}_{event.split()[0].lower()}"
        conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS {quote(trigger)} AFTER {event} "
                             f"ON {quote(table_name)} BEGIN {action}; END")
