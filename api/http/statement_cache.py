"""Built SELECT statements, reused for requests that ask the same thing.

SQLAlchemy caches compiled SQL, but finds it by a key it derives from the statement object,
memoized on that object only: a list's statement rebuilt per request was walked anew every
time (building and keying it cost about a third of a page's CPU). Reusing the object skips
both. Keys must name everything a statement depends on; statements hold no results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import Select

# A list's statements take 60-150 KB: 1,024 of them grew a worker by 150 MB when every
# request filtered on another organisation (issue 18). Repeated lists, which the cache
# is for, fit in far fewer; a miss costs only the build.
SIZE = 256


class StatementCache:
    """A small LRU of statements by key, shared by a worker's threads."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.statements: OrderedDict[Hashable, Select[Any]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable | None, build: Callable[[], Select[Any]]) -> Select[Any]:
        """The statement stored under `key`, built (and stored) if absent; `None` as the
        key means this one must not be shared, so it is built every time."""
        if key is None:
            return build()
        with self.lock:
            found = self.statements.get(key)
            if found is not None:
                self.statements.move_to_end(key)
                return found
        statement = build()  # outside the lock: a build that raises stores nothing
        with self.lock:
            self.statements[key] = statement
            if len(self.statements) > self.size:
                self.statements.popitem(last=False)
        return statement
