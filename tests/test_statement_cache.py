"""The statement cache: reuse by key, least recently used out, nothing kept on failure."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Select, literal, select

from api.http.statement_cache import StatementCache


def test_reuses_by_key_and_evicts_the_least_recently_used() -> None:
    cache = StatementCache(size=2)
    built: list[int] = []

    def build(n: int) -> Any:
        def make() -> Select[Any]:
            built.append(n)
            return select(literal(n))
        return make

    first = cache.get("a", build(1))
    assert cache.get("a", build(99)) is first
    cache.get("b", build(2))
    cache.get("a", build(99))  # "a" used last: "b" goes when "c" arrives
    cache.get("c", build(3))
    assert cache.get("b", build(4)) is not None
    assert built == [1, 2, 3, 4]
    assert list(cache.statements) == ["c", "b"]


def test_no_key_builds_every_time_and_a_failed_build_stores_nothing() -> None:
    cache = StatementCache()
    assert cache.get(None, lambda: select(literal(1))) is not cache.get(
        None, lambda: select(literal(1)))

    def fail() -> Select[Any]:
        raise ValueError("bad filter")

    with pytest.raises(ValueError):
        cache.get("k", fail)
    assert "k" not in cache.statements
