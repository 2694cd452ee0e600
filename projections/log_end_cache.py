"""Answers read from the read models, kept while the log still ends where it did.

Users, roles and closed months change only through events, so a request whose catch-up
saw the log end at N reads what the last request that saw N read. A log end this thread
does not know (-1) is never trusted, and nothing (None) is never kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LogEndCache(Generic[K, V]):
    """At most `size` answers; full, it starts again (one dict, shared by threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.found: dict[K, tuple[int, V]] = {}

    def peek(self, key: K, log_end: int) -> V | None:
        """The answer kept at this log end, if any."""
        cached = self.found.get(key)
        if cached is not None and cached[0] == log_end >= 0:
            return cached[1]
        return None

    def get(self, key: K, log_end: int, read: Callable[[], V]) -> V:
        cached = self.peek(key, log_end)
        if cached is not None:
            return cached
        value = read()
        if value is not None and log_end >= 0:
            if len(self.found) >= self.size:
                self.found.clear()
            self.found[key] = (log_end, value)
        return value
