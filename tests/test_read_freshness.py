"""A retrieve reads the log's end beside its row (api/http/freshness.py): one round trip
for a known caller, and still every guarantee of the check it no longer runs first.

"Another process" is a second set of services on the same database: what it writes, this
app's projector has not seen, as when another worker, the CLI or a killed writer wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy.exc import OperationalError

from api.server.wiring import Services, build_services
from tests.support import Directory, capture_statements, count_log_end_queries


@pytest.fixture
def elsewhere(services: Services) -> Iterator[Services]:
    other = build_services(services.url)
    try:
        yield other
    finally:
        other.close()


@pytest.fixture
def credit(directory: Directory) -> dict[str, Any]:
    org = directory.customer("Org")
    directory.customer_credit(org, "500")
    return directory.project_credit(directory.project(org, "Alpha"), "100")  # type: ignore[no-any-return]


def retrieve(directory: Directory, credit: dict[str, Any], name: str = "staff") -> Any:
    return directory.client.simulate_get(f"/api/project-credits/{credit['uuid']}/",
                                         headers={"Authorization":
                                                  f"Token {directory.tokens[name]}"})


def test_a_known_callers_retrieve_is_one_statement(
        directory: Directory, services: Services, credit: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once this thread knows the caller at the log's end, a retrieve asks nothing first:
    its one statement brings the row and the log's end (issue 18: two round trips were
    half of a retrieve's time)."""
    directory.staff  # noqa: B018 (creates the staff user)
    assert retrieve(directory, credit).status_code == 200
    asked = count_log_end_queries(services, monkeypatch)
    statements: list[str] = []
    with capture_statements(services.reads, statements):
        answer = retrieve(directory, credit)
    assert answer.status_code == 200 and answer.json["value"] == "100.00000"
    selects = [statement for statement in statements if statement != "BEGIN"]  # SQLite's
    assert asked == [] and len(selects) == 1 and "log_end" in selects[0]
    for kind in ("customer-credits", "project-credits"):  # both retrieves, by two callers
        first = directory.client.simulate_get(f"/api/{kind}/", headers=directory.staff).json[0]
        one = directory.client.simulate_get(f"/api/{kind}/{first['uuid']}/",
                                            headers=directory.staff)
        assert one.json == first


@pytest.mark.parametrize("which", ["the credit", "a malformed uuid"])
def test_a_user_deactivated_elsewhere_is_refused_at_once(
        directory: Directory, elsewhere: Services, credit: dict[str, Any], which: str) -> None:
    """Also when the retrieve fails before it reads anything: a malformed uuid's 404 is
    answered only to a caller who is checked."""
    directory.staff  # noqa: B018
    for _ in range(2):  # the second is read unconfirmed
        assert retrieve(directory, credit).status_code == 200
    elsewhere.ledger.deactivate_user("staff", "another process")
    uuid = credit["uuid"] if which == "the credit" else "not-a-uuid"
    answer = directory.client.simulate_get(f"/api/project-credits/{uuid}/",
                                           headers=directory.staff)
    assert (answer.status_code, answer.json) == (401, {"detail": "Invalid token."})


def test_a_role_revoked_elsewhere_hides_the_credit_at_once(
        directory: Directory, elsewhere: Services, credit: dict[str, Any]) -> None:
    directory.user("owner")
    directory.grant("owner", "customer", credit["customer_uuid"], "owner")
    assert retrieve(directory, credit, "owner").json["uuid"] == credit["uuid"]
    elsewhere.ledger.revoke_role("owner", "customer", UUID(credit["customer_uuid"]), "owner",
                                 "another process")
    answer = retrieve(directory, credit, "owner")
    assert answer.status_code == 404
    assert answer.json == {"detail": "No ProjectCredit matches the given query."}


def test_a_retrieve_applies_what_another_process_left_unprojected(
        directory: Directory, elsewhere: Services, credit: dict[str, Any]) -> None:
    directory.staff  # noqa: B018
    before = retrieve(directory, credit)
    assert before.json["value"] == "100.00000"
    elsewhere.ledger.update_project_credit(UUID(credit["uuid"]), "another process",
                                           value=Decimal("150"))
    after = retrieve(directory, credit)
    assert after.json["value"] == "150.00000"
    assert after.headers["ETag"] != before.headers["ETag"]


def test_reads_that_do_not_confirm_are_checked_before_they_read(
        directory: Directory, elsewhere: Services, credit: dict[str, Any]) -> None:
    """A list, a count and another resource's retrieve read no log end of their own: the
    request let through unconfirmed is checked before they read."""
    directory.staff  # noqa: B018
    assert retrieve(directory, credit).status_code == 200
    elsewhere.ledger.update_project_credit(UUID(credit["uuid"]), "another process",
                                           value=Decimal("150"))
    page = directory.client.simulate_get("/api/project-credits/", headers=directory.staff)
    assert [row["value"] for row in page.json] == ["150.00000"]
    elsewhere.ledger.deactivate_user("staff", "another process")
    for method in ("GET", "HEAD"):
        refused = directory.client.simulate_request(method, "/api/customer-credits/",
                                                    headers=directory.staff)
        assert refused.status_code == 401


def test_a_failed_catch_up_leaves_nothing_read_as_of_its_log_end(
        directory: Directory, services: Services, elsewhere: Services,
        credit: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The log end a catch-up saw is trusted (a known caller let through unconfirmed, a
    cached answer) only once the read models hold it: a failed catch-up forgets it, so the
    next request checks afresh and sees the event."""
    directory.staff  # noqa: B018
    assert retrieve(directory, credit).status_code == 200
    assert services.projector.log_end >= 0
    elsewhere.ledger.update_project_credit(UUID(credit["uuid"]), "another process",
                                           value=Decimal("150"))

    def busy() -> None:
        raise OperationalError("SELECT", {}, Exception("database is busy"))

    with monkeypatch.context() as patched:
        patched.setattr(services.projector, "_apply_batch", busy)
        patched.setattr(services.projector, "_try_apply_batch", busy)
        with pytest.raises(OperationalError):
            services.projector.catch_up()
    assert services.projector.log_end == -1
    assert retrieve(directory, credit).json["value"] == "150.00000"


def test_while_writers_move_the_log_a_retrieve_checks_first(
        directory: Directory, services: Services, elsewhere: Services,
        credit: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Read unconfirmed under a moving log, a retrieve would read its row twice. Once this
    thread has seen the log move, its next retrieve asks the log's end first, as every
    read did before, and reads its row once; with the log quiet again, the one after goes
    back to one statement."""
    directory.staff  # noqa: B018
    for _ in range(2):
        assert retrieve(directory, credit).status_code == 200
    asked = count_log_end_queries(services, monkeypatch)
    for value in ("110", "120"):
        elsewhere.ledger.update_project_credit(UUID(credit["uuid"]), "another process",
                                               value=Decimal(value))
        statements: list[str] = []
        with capture_statements(services.reads, statements):
            answer = retrieve(directory, credit)
        assert answer.json["value"] == f"{value}.00000"
        rows_read = [statement for statement in statements if "log_end" in statement]
        if value == "110":  # the log was quiet: read unconfirmed, then checked, read again
            assert (len(asked), len(rows_read)) == (1, 2)
        else:  # this thread saw the log move: checked first, the row read once
            assert (len(asked), len(rows_read)) == (2, 1)
    statements = []
    with capture_statements(services.reads, statements):
        assert retrieve(directory, credit).status_code == 200  # checked: the log was quiet
        assert retrieve(directory, credit).status_code == 200  # so this one is unconfirmed
    assert len(asked) == 3
