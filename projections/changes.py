"""A batch's effect on the read models: rows folded in memory, then written in bulk.

Handlers do not issue SQL per event. They read rows through `Changes` (loaded once per
batch, many keys per query), change them in memory, and `flush` writes each table's
new rows with one multi-row INSERT, its changed rows with one multi-row UPDATE and its
counters with one upsert. A batch of a thousand events costs a few dozen statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    Select,
    Table,
    TextClause,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from projections.tables import metadata

Key = tuple[Any, ...]
Row = dict[str, Any]
LOAD_CHUNK = 500
ARRAY_CHUNK = 5000
COPY_FROM = 50  # rows: below this a multi-row INSERT is as quick


@cache
def primary_key(table: Table) -> tuple[str, ...]:
    """Asked per event: SQLAlchemy's column collections are slow to walk."""
    return tuple(column.name for column in table.primary_key.columns)


@cache
def column_names(table: Table) -> frozenset[str]:
    return frozenset(column.name for column in table.columns)


@cache
def values_of(table: Table) -> Callable[[Row], tuple[Any, ...]]:
    """A row's values in column order, picked in C: COPY writes hundreds of thousands."""
    names = [column.name for column in table.columns]
    if len(names) == 1:
        return lambda row: (row[names[0]],)
    return itemgetter(*names)


@cache
def copy_processors(table: Table, dialect: Dialect) -> tuple[tuple[int, Callable[..., Any]], ...]:
    """(index, bind processor) of the columns that have one, in table order: COPY takes
    the values INSERT would bind, and most columns need no conversion."""
    found = ((index, column.type.bind_processor(dialect))
             for index, column in enumerate(table.columns))
    return tuple((index, process) for index, process in found if process is not None)


def by_list(table: Table, chunk: list[Key]) -> tuple[Select[Any], dict[str, list[Any]]]:
    """`key IN (...)`: one bound parameter per key part, expanded at execution. A key of
    several columns names its first column's values too (`list_lookup`)."""
    if len(primary_key(table)) == 1:
        return list_lookup(table), {"keys": [key[0] for key in chunk]}
    return list_lookup(table), {"keys": chunk,
                                "firsts": list(dict.fromkeys(key[0] for key in chunk))}


@cache
def list_lookup(table: Table) -> Select[Any]:
    """Built once per table: building and keying a statement per batch cost a small
    batch (one posted item) about a quarter of its CPU (issue 18).

    SQLite reads a list of row values (`(a, b) IN (VALUES ...)`) by scanning the whole
    table, so a key of several columns is also looked up by its first column, which the
    key's index serves: at 100,000 organisations each batch read all 300,000 credit
    versions (87 ms a chunk of 500 keys; 5 ms so)."""
    columns = [table.c[name] for name in primary_key(table)]
    keys: Any = bindparam("keys", expanding=True)
    if len(columns) == 1:
        return select(table).where(columns[0].in_(keys))
    firsts: Any = bindparam("firsts", expanding=True)
    return select(table).where(columns[0].in_(firsts), tuple_(*columns).in_(keys))


def by_arrays(table: Table, chunk: list[Key]) -> tuple[Select[Any], dict[str, list[Any]]]:
    """PostgreSQL: the keys as one array per key column, whatever their number. The
    statement's text stays the same, so the driver parses it once (a 500-key `IN` list
    cost psycopg milliseconds to split, each time: issue 18's rebuild), and the server
    probes the primary key once per key."""
    names = primary_key(table)
    params = {f"keys_{name}": [key[index] for key in chunk] for index, name in enumerate(names)}
    return array_lookup(table), params


@cache
def array_lookup(table: Table) -> Select[Any]:
    names = primary_key(table)
    columns = [table.c[name] for name in names]
    arrays = [bindparam(f"keys_{name}", type_=ARRAY(table.c[name].type)) for name in names]
    if len(columns) == 1:
        return select(table).where(columns[0] == any_(arrays[0]))
    keys = func.unnest(*arrays).table_valued(*names).render_derived(name="wanted")
    return select(table).where(tuple_(*columns).in_(select(*keys.c)))


@cache
def array_update(table: Table, columns: tuple[str, ...]) -> Executable:
    """UPDATE table SET columns FROM unnest(one array per key and column), by key."""
    names = primary_key(table)
    labels = [f"key_{name}" for name in names] + [f"new_{column}" for column in columns]
    types = [table.c[name].type for name in names] + [table.c[column].type for column in columns]
    arrays = [bindparam(label, type_=ARRAY(kind)) for label, kind in zip(labels, types,
                                                                         strict=True)]
    new = func.unnest(*arrays).table_valued(*labels).render_derived(name="new")
    return (sql_update(table)
            .where(*(table.c[name] == new.c[f"key_{name}"] for name in names))
            .values({column: new.c[f"new_{column}"] for column in columns}))


@cache
def insert_statement(table: Table) -> Executable:
    return insert(table)


def by_key(table: Table) -> list[ColumnElement[bool]]:
    """The row whose key is bound as `key_<column>` (see `key_params`)."""
    return [table.c[name] == bindparam(f"key_{name}") for name in primary_key(table)]


def key_params(table: Table, key: Key) -> Row:
    return {f"key_{name}": part for name, part in zip(primary_key(table), key, strict=True)}


@cache
def update_statement(table: Table, columns: tuple[str, ...]) -> Executable:
    """UPDATE table SET columns by key, one parameter set per row."""
    return (sql_update(table).where(*by_key(table))
            .values({column: bindparam(column) for column in columns}))


@cache
def delete_statement(table: Table) -> Executable:
    return delete(table).where(*by_key(table))


def quote(name: str) -> str:
    """Our names are lower case: quoted, they mean the same to SQLite and PostgreSQL."""
    return f'"{name}"'


def qualified(table: Table, schema: str | None) -> str:
    return f"{quote(schema)}.{quote(table.name)}" if schema else quote(table.name)


@cache
def add_statement(table: Table, columns: tuple[str, ...], schema: str | None) -> TextClause:
    """INSERT the row, or on its key add the amounts to its columns: counters.

    Written as text because SQLAlchemy caches no dialect INSERT (`inherit_cache = False`):
    built with `on_conflict_do_update`, each of a single posted item's three upserts was
    compiled anew (issue 18). Both dialects read the same ON CONFLICT clause. A shadow
    schema is named here, since `schema_translate_map` does not reach into text."""
    keys = primary_key(table)
    names = keys + columns
    listed = ", ".join(quote(name) for name in names)
    sql = (f"INSERT INTO {qualified(table, schema)} AS target ({listed}) "
           f"VALUES ({', '.join(f':{name}' for name in names)}) "
           f"ON CONFLICT ({', '.join(quote(name) for name in keys)}) DO UPDATE SET "
           + ", ".join(f"{quote(column)} = target.{quote(column)} + excluded.{quote(column)}"
                       for column in columns))
    return text(sql).bindparams(*(bindparam(name, type_=table.c[name].type) for name in names))


class Changes:
    """Rows of one batch: what was loaded, inserted, updated, deleted and counted."""

    def __init__(self, conn: Connection, schema: str | None = None) -> None:
        self.conn = conn
        self.schema = schema
        self.options = {"schema_translate_map": {None: schema}} if schema else {}
        self.rows: dict[Table, dict[Key, Row | None]] = defaultdict(dict)
        self.inserted: dict[Table, set[Key]] = defaultdict(set)
        self.updated: dict[Table, dict[Key, set[str]]] = defaultdict(dict)  # changed columns
        self.deleted: dict[Table, set[Key]] = defaultdict(set)
        self.deltas: dict[Table, dict[Key, dict[str, Any]]] = defaultdict(dict)

    # --- reading -------------------------------------------------------------------------

    def get(self, table: Table, *key: Any) -> Row | None:
        """The row as this batch sees it (None if absent); loaded by key on first use."""
        rows = self.rows[table]
        if key not in rows:
            self.load(table, [key])
        return rows[key]

    def row(self, table: Table, *key: Any) -> Row:
        found = self.get(table, *key)
        if found is None:
            raise LookupError(f"{table.name} has no row {key}")
        return found

    def load(self, table: Table, keys: Iterable[Key]) -> None:
        """Load many rows in few queries; keys not found are remembered as absent."""
        rows = self.rows[table]
        wanted = [key for key in dict.fromkeys(keys) if key not in rows]
        names = primary_key(table)
        by_array = self.conn.dialect.name == "postgresql"
        size = ARRAY_CHUNK if by_array else LOAD_CHUNK
        for start in range(0, len(wanted), size):
            chunk = wanted[start:start + size]
            statement, params = by_arrays(table, chunk) if by_array else by_list(table, chunk)
            for found in self._execute(statement, params).mappings().all():  # one fetch
                rows[tuple(found[name] for name in names)] = dict(found)
            for key in chunk:
                rows.setdefault(key, None)

    def find(self, table: Table, **where: Any) -> list[Row]:
        """Rows matching column values, by query (flushed first) — for rare lookups."""
        self.flush()
        condition = [table.c[name] == value for name, value in where.items()]
        names = primary_key(table)
        found = []
        for result in self._execute(select(table).where(*condition)).mappings():
            key = tuple(result[name] for name in names)
            known = self.rows[table].setdefault(key, dict(result))
            if known is not None:
                found.append(known)
        return found

    # --- writing -------------------------------------------------------------------------

    def insert(self, table: Table, row: Row) -> None:
        names = primary_key(table)
        if not row.keys() >= column_names(table):  # one multi-row INSERT names each column
            for name in column_names(table) - row.keys():
                row[name] = None
        key = tuple([row[name] for name in names])
        self.rows[table][key] = row
        if key in self.deleted[table]:  # deleted earlier in the batch: still in the table
            self.deleted[table].discard(key)
            self.updated[table][key] = set(row) - set(names)
        else:
            self.inserted[table].add(key)

    def update(self, table: Table, key: Key, **values: Any) -> Row:
        row = self.row(table, *key)
        row.update(values)
        if key not in self.inserted[table]:
            self.updated[table].setdefault(key, set()).update(values)
        return row

    def delete(self, table: Table, *key: Any) -> None:
        self.rows[table][key] = None
        if key in self.inserted[table]:
            self.inserted[table].discard(key)
        else:
            self.updated[table].pop(key, None)
            self.deleted[table].add(key)

    def add(self, table: Table, *key: Any, **deltas: Any) -> None:
        """Add to counter columns of a row that may not exist yet (an upsert at flush)."""
        pending = self.deltas[table].setdefault(key, {})
        for name, amount in deltas.items():
            pending[name] = pending.get(name, 0) + amount

    def execute(self, statement: Executable) -> Any:
        """Run a set-based statement after everything pending; forget cached rows."""
        self.flush()
        self.rows.clear()
        return self._execute(statement)

    def _execute(self, statement: Executable, params: Any = None) -> Any:
        """Every statement goes to this batch's schema (a rebuild writes to a shadow one)."""
        return self.conn.execute(statement, params, execution_options=self.options)

    # --- flushing ------------------------------------------------------------------------

    def flush(self) -> None:
        with self._pipelined():
            for table in self._pending_tables():
                self._flush_deleted(table)
                self._flush_inserted(table)
                self._flush_updated(table)
                self._flush_deltas(table)

    def _pending_tables(self) -> list[Table]:
        """The read models in dependency order, then any other table written through
        these changes (the notifier's own)."""
        pending = dict.fromkeys([*self.inserted, *self.updated, *self.deleted, *self.deltas])
        ordered = [table for table in metadata.sorted_tables if table in pending]
        return ordered + [table for table in pending if table not in ordered]

    @contextmanager
    def _pipelined(self) -> Iterator[None]:
        """PostgreSQL: the flush's writes go out together and their answers come back
        together (psycopg's pipeline mode), one round trip instead of one per statement:
        a single posted item's projection writes eight times under the projection lock
        (issue 18). Writes return no rows, so nothing waits for an answer in between; an
        error surfaces when the pipeline ends and fails the batch's transaction as before.
        COPY cannot run in a pipeline: a flush with one (a large batch) goes as it did."""
        if self.conn.dialect.name != "postgresql" or any(
                self._in_bulk(len(keys)) for keys in self.inserted.values()):
            yield
            return
        dbapi_connection: Any = self.conn.connection.dbapi_connection
        try:
            with dbapi_connection.pipeline():
                yield
        except psycopg.Error as error:  # raised as SQLAlchemy raises a statement's error
            lost = bool(dbapi_connection.closed)
            if lost:
                self.conn.invalidate()  # the pool must not hand a dead connection out again
            raise DBAPIError.instance(None, None, error, psycopg.Error,
                                      connection_invalidated=lost) from error

    def _in_bulk(self, rows: int) -> bool:
        """PostgreSQL writes this many rows by COPY or by arrays, not row by row."""
        return rows >= COPY_FROM and self.conn.dialect.name == "postgresql"

    def _flush_inserted(self, table: Table) -> None:
        keys = self.inserted.pop(table, set())
        rows = [row for key in keys if (row := self.rows[table][key]) is not None]
        if self._in_bulk(len(rows)):
            self._copy(table, rows)
        elif rows:
            self._execute(insert_statement(table), rows)

    def _copy(self, table: Table, rows: list[Row]) -> None:
        """PostgreSQL's COPY: many new rows in one stream, values bound as INSERT would."""
        columns = [column.name for column in table.columns]
        processors = copy_processors(table, self.conn.dialect)
        pick = values_of(table)
        name = qualified(table, self.schema)
        names = ", ".join(quote(column) for column in columns)
        dbapi_connection: Any = self.conn.connection.dbapi_connection
        with dbapi_connection.cursor() as cursor, cursor.copy(
                f"COPY {name} ({names}) FROM STDIN") as copy:
            for row in rows:
                values = list(pick(row))
                for index, process in processors:
                    if values[index] is not None:
                        values[index] = process(values[index])
                copy.write_row(values)

    def _flush_updated(self, table: Table) -> None:
        """One multi-row UPDATE per set of changed columns (most batches have a few)."""
        changed = self.updated.pop(table, {})
        groups: dict[frozenset[str], list[Key]] = defaultdict(list)
        for key, changed_columns in changed.items():
            groups[frozenset(changed_columns)].append(key)
        for columns, keys in groups.items():
            if self._in_bulk(len(keys)):
                self._update_by_arrays(table, sorted(columns), keys)
                continue
            params = []
            for key in keys:
                row = self.rows[table][key]
                assert row is not None
                params.append({**{column: row[column] for column in columns},
                               **key_params(table, key)})
            self._execute(update_statement(table, tuple(sorted(columns))), params)

    def _update_by_arrays(self, table: Table, columns: list[str], keys: list[Key]) -> None:
        """PostgreSQL: many rows' new values in one UPDATE ... FROM unnest(arrays), one
        array per column, instead of a statement per row."""
        names = primary_key(table)
        rows = [self.row(table, *key) for key in keys]
        params: dict[str, list[Any]] = {
            f"key_{name}": [key[index] for key in keys] for index, name in enumerate(names)}
        for column in columns:
            params[f"new_{column}"] = [row[column] for row in rows]
        self._execute(array_update(table, tuple(columns)), params)

    def _flush_deleted(self, table: Table) -> None:
        keys = self.deleted.pop(table, set())
        if keys:
            self._execute(delete_statement(table), [key_params(table, key) for key in keys])

    def _flush_deltas(self, table: Table) -> None:
        """Counters: one upsert per set of counted columns, adding to the row or making it.

        Read first, then inserted or updated, they cost a query more per table and batch:
        three of a single posted item's twenty statements (issue 18)."""
        pending = self.deltas.pop(table, {})
        if not pending:
            return
        names = primary_key(table)
        known = self.rows[table]
        groups: dict[tuple[str, ...], list[Row]] = defaultdict(list)
        for key, deltas in pending.items():
            made = {**dict(zip(names, key, strict=True)), **deltas}
            groups[tuple(sorted(deltas))].append(made)
            if key not in known:
                continue  # not read in this batch: read afresh if asked
            row = known[key]
            if row is None:
                known[key] = dict(made)
            else:
                for name, amount in deltas.items():
                    row[name] += amount
        for columns, rows in groups.items():
            self._execute(add_statement(table, columns, self.schema), rows)
