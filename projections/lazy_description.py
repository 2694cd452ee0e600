"""A psycopg cursor whose `description` builds its columns only when one is looked at.

psycopg builds a `Column` object per result column on every access to `description`, and
SQLAlchemy reads it after every statement, only to learn whether rows came back: for a
cached statement it already knows the columns. A retrieve's 27 columns cost about 8 % of
its CPU (issue 18's profile); here they are built only if someone reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import psycopg
from psycopg.pq import ExecStatus

RETURNS_ROWS = (ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK)


class LazyColumns(Sequence[psycopg.Column]):
    """The result's columns, each made when it is looked at (as psycopg's, anew each time)."""

    def __init__(self, cursor: psycopg.Cursor[Any], count: int) -> None:
        self._cursor, self._count = cursor, count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> psycopg.Column: ...

    @overload
    def __getitem__(self, index: slice) -> list[psycopg.Column]: ...

    def __getitem__(self, index: int | slice) -> psycopg.Column | list[psycopg.Column]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("column index out of range")
        return psycopg.Column(self._cursor, index)


class LazyDescriptionCursor(psycopg.Cursor[Any]):
    @property
    def description(self) -> Any:
        """As psycopg's: None unless the statement returned tuples (or fields)."""
        result = self.pgresult
        if result and (result.nfields or result.status in RETURNS_ROWS):
            return LazyColumns(self, result.nfields)
        return None
