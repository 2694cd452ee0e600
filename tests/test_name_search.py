"""Name filters (`project_name=`, `customer_name=`, `customer_slug`'s search) from an index.

Upstream's `icontains`: any part of the name, case ignored. PostgreSQL answers from trigram
indexes; SQLite from a full-text table per searched table that triggers keep in step with
the read model. Each test runs on both databases and asserts what the API returns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import text

from api.app import create_app
from api.server.wiring import Services, build_services
from projections import search
from projections.search import SEARCHED, search_table
from tests.support import Clock, Directory, capture_statements


def names(directory: Directory, collection: str, **params: str) -> list[str]:
    found = directory.client.simulate_get(f"/api/{collection}/", params=params,
                                          headers=directory.staff)
    assert found.status_code == 200, found.text
    field = "project_name" if collection == "project-credits" else "customer_name"
    return sorted(row[field] for row in found.json)


def credits_for(directory: Directory, *projects: tuple[str, str]) -> dict[str, Any]:
    """(organisation, project) names: each organisation gets 10,000 of credit, each project
    100 of it. Returns the projects by name."""
    made: dict[str, Any] = {}
    organisations: dict[str, Any] = {}
    for organisation, project in projects:
        if organisation not in organisations:
            organisations[organisation] = directory.customer(organisation)
            directory.customer_credit(organisations[organisation], "10000")
        made[project] = directory.project(organisations[organisation], project)
        directory.project_credit(made[project], "100")
    return made


def test_a_name_filter_finds_any_part_of_the_name_ignoring_case(
        directory: Directory) -> None:
    credits_for(directory, ("Acme Research", "Project 000999"), ("Acme Research", "Alpha"),
                ("Beta Labs", "Project 010999"), ("Beta Labs", "Gamma 100% off_peak"))
    assert names(directory, "project-credits", project_name="0999") == [
        "Project 000999", "Project 010999"]
    assert names(directory, "project-credits", project_name="PROJECT 01") == [
        "Project 010999"]
    assert names(directory, "project-credits", project_name="ha") == ["Alpha"]  # 2 letters
    assert names(directory, "project-credits", project_name="100% off_") == [
        "Gamma 100% off_peak"]  # the wildcards are the name's own characters
    assert names(directory, "project-credits", project_name="0%") == ["Gamma 100% off_peak"]
    assert names(directory, "project-credits", project_name="x_p") == []
    assert names(directory, "project-credits", customer_name="LABS") == [
        "Gamma 100% off_peak", "Project 010999"]
    assert names(directory, "customer-credits", customer_name="research") == [
        "Acme Research"]
    assert names(directory, "project-credits", query="acme-res") == [
        "Alpha", "Project 000999"]  # the organisation's slug
    assert names(directory, "customer-credits", query="beta-l") == ["Beta Labs"]


def test_a_name_filter_follows_moves_and_deletions(directory: Directory) -> None:
    client, staff = directory.client, directory.staff
    org = directory.customer("Org")
    directory.customer_credit(org, "1000")
    alpha, beta, delta = (directory.project(org, name) for name in ("Alpha", "Beta", "Delta"))
    first = directory.project_credit(alpha, "100")
    moving = directory.project_credit(beta, "100")
    deleted = client.simulate_delete(f"/api/project-credits/{first['uuid']}/", headers=staff)
    assert deleted.status_code == 204
    assert names(directory, "project-credits", project_name="alp") == []
    directory.project_credit(alpha, "5")
    assert names(directory, "project-credits", project_name="alp") == ["Alpha"]
    moved = client.simulate_put(f"/api/project-credits/{moving['uuid']}/", headers=staff,
                                json={"project": delta["url"], "value": "50"})
    assert moved.status_code == 200, moved.text
    assert names(directory, "project-credits", project_name="bet") == []
    assert names(directory, "project-credits", project_name="DEL") == ["Delta"]
    assert names(directory, "project-credits", customer_name="org") == ["Alpha", "Delta"]


def test_name_filters_answer_alike_after_a_rebuild(directory: Directory,
                                                  services: Services) -> None:
    credits_for(directory, ("Acme", "Project 000999"), ("Acme", "Alpha"),
                ("Zeta", "Project 010999"))
    asked = [("project-credits", {"project_name": "0999"}),
             ("project-credits", {"customer_name": "zet"}),
             ("customer-credits", {"customer_name": "ACM"})]
    before = [names(directory, collection, **params) for collection, params in asked]
    assert before == [["Project 000999", "Project 010999"], ["Project 010999"], ["Acme"]]
    services.projector.rebuild()
    assert [names(directory, collection, **params) for collection, params in asked] == before
    credits_for(directory, ("Zeta", "Project 020999"))  # written after the swap
    assert names(directory, "project-credits", project_name="0999") == [
        "Project 000999", "Project 010999", "Project 020999"]


def test_an_older_database_gets_its_name_index_at_start_up(directory: Directory,
                                                          services: Services) -> None:
    credits_for(directory, ("Acme", "Project 000999"), ("Acme", "Alpha"))
    if services.engine.dialect.name == "sqlite":  # as a database from before the index
        with services.engine.begin() as conn:
            for table in SEARCHED:
                conn.exec_driver_sql(f'DROP TABLE "{search_table(table)}"')
                for event in ("insert", "delete", "update"):
                    conn.exec_driver_sql(f'DROP TRIGGER "{search_table(table)}_{event}"')
    restarted = build_services(services.url, create_tables=True, today=services.today)
    try:
        assert names(directory, "project-credits", project_name="0999") == ["Project 000999"]
        credits_for(directory, ("Acme", "Project 010999"))
        assert names(directory, "project-credits", project_name="0999") == [
            "Project 000999", "Project 010999"]
    finally:
        restarted.close()


def test_name_filters_are_answered_from_an_index(directory: Directory,
                                                 services: Services) -> None:
    credits_for(directory, *(("Org", f"Project {n:06d}") for n in range(30)))
    statements: list[str] = []
    with capture_statements(services.reads, statements):
        assert names(directory, "project-credits", project_name="000012") == [
            "Project 000012"]
    page = next(s for s in statements if "LIMIT" in s and "project_credits" in s)
    with services.reads.connect() as conn:
        if conn.dialect.name == "sqlite":
            bound = page.replace("?", "NULL")  # the plan does not depend on the values
            plan = " ".join(str(row[3]) for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {bound}"))
            assert f"SCAN {search_table('project_credits')} VIRTUAL TABLE" in plan, plan
            assert "SEARCH project_credits USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
            assert re.search(r"SCAN project_credits\b(?!_search)", plan) is None, plan
        else:
            indexes = conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'project_credits' "
                "AND indexdef LIKE '%gin_trgm_ops%' AND schemaname = current_schema()"
            )).scalars().all()
            assert sorted(indexes) == [f"project_credits_{column}_trgm"
                                       for column in sorted(SEARCHED["project_credits"])]
            assert "lower(project_credits.project_name) LIKE" in page


def test_a_row_removed_from_the_read_model_leaves_the_index(directory: Directory,
                                                           services: Services) -> None:
    """The handlers never delete a credit's row (a deleted credit is unlisted), but the
    index must not outlive a row whatever removes it."""
    credits_for(directory, ("Org", "Project 000999"), ("Org", "Project 010999"))
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM project_credits WHERE project_name = :name"),
                     {"name": "Project 000999"})
    credits_for(directory, ("Other", "Alpha"))
    assert names(directory, "project-credits", project_name="0999") == ["Project 010999"]
    assert names(directory, "project-credits", project_name="alpha") == ["Alpha"]
    if services.engine.dialect.name == "sqlite":  # the index holds the rows, no more
        for table, columns in SEARCHED.items():
            listed = ", ".join(("rowid", *columns))
            with services.engine.connect() as conn:
                indexed = conn.exec_driver_sql(
                    f"SELECT {listed} FROM {search_table(table)} ORDER BY rowid").all()
                rows = conn.exec_driver_sql(f"SELECT {listed} FROM {table} ORDER BY rowid").all()
            assert indexed == rows


def test_without_full_text_search_sqlite_filters_by_scanning(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python whose SQLite lacks FTS5's trigram tokenizer still starts and answers."""
    monkeypatch.setattr(search, "full_text_available", lambda: False)
    services = build_services(f"sqlite:///{tmp_path}/plain.db", create_tables=True,
                              today=clock)
    try:
        directory = Directory(services, falcon.testing.TestClient(create_app(services)))
        credits_for(directory, ("Acme", "Project 000999"), ("Acme", "Alpha"))
        assert names(directory, "project-credits", project_name="0999") == ["Project 000999"]
        assert names(directory, "customer-credits", customer_name="ACM") == ["Acme"]
        with services.engine.connect() as conn:
            tables = conn.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
        assert [name for name in tables if "search" in name] == []
    finally:
        services.close()
