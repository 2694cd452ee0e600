"""The statement cache: reuse by key, least recently used out, nothing kept on failure."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Select, literal, select

from api.http.listing import STATEMENTS
from api.http.statement_cache import StatementCache
from tests.support import Directory


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


def test_fetching_credits_one_by_one_shares_one_statement(directory: Directory) -> None:
    """The credit's uuid is bound when the statement runs: a statement cached per credit
    (60 KB each) grew a worker by 120 MB fetching random credits (issue 18)."""
    org = directory.customer("Org")
    directory.customer_credit(org, "100")
    credits = [directory.project_credit(directory.project(org, f"P{n}"), str(n + 1))
               for n in range(3)]
    fetched = [directory.client.simulate_get(f"/api/project-credits/{credit['uuid']}/",
                                             headers=directory.staff).json["value"]
               for credit in credits]
    assert fetched == ["1.00000", "2.00000", "3.00000"]
    uuids = {credit["uuid"] for credit in credits}
    assert not [key for key in STATEMENTS.statements
                if isinstance(key, tuple) and uuids & set(key)]
