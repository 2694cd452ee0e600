"""Pagination through the real client: page/page_size, Link headers, and `sync_all`.

`sync_all` forces `page_size=100` and follows `rel="next"` by copying its `page` number, so
it only spans pages past 100 rows; the 12-row organisation is walked with `sync_detailed`
and a small page size, the 101-row one with `sync_all` itself.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.project_credits import (
    project_credits_count,
    project_credits_list,
)
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models.project_credit_o_enum import ProjectCreditOEnum
from waldur_api_client.utils import parse_link_header

from tests.conformance.conftest import LedgerServer, Staff, money, seed_project_credits

SMALL = 12
LARGE = 101  # one more than sync_all's forced page size


def _organisation(staff: Staff, label: str, count: int) -> tuple[dict[str, Any], list[Any]]:
    """An organisation with `count` project credits valued 1, 2, ... (created in that order)."""
    org = staff.customer(label)
    staff.customer_credit(org, "1000000")
    credits = []
    for number in range(1, count + 1):
        project = staff.project(org, f"{label} P{number:03d}")
        credits.append(staff.project_credit(project, str(number)))
    return org, credits


@pytest.fixture(scope="module")
def small(staff: Staff) -> tuple[dict[str, Any], list[Any]]:
    return _organisation(staff, "Small", SMALL)


@pytest.fixture(scope="module")
def large(server: LedgerServer, staff: Staff) -> tuple[dict[str, Any], list[str]]:
    """101 credits valued 1..101, seeded in bulk (the customer and its credit via the API)."""
    org = staff.customer("Large")
    staff.customer_credit(org, "1000000")
    return org, seed_project_credits(server, org, "Large", list(range(1, LARGE + 1)))


def _params(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_pages_of_five_walk_twelve_credits_by_link_headers(
        server: LedgerServer, staff_api: AuthenticatedClient,
        small: tuple[dict[str, Any], list[Any]]) -> None:
    org, created = small
    seen: list[str] = []
    page: int | None = 1
    pages = 0
    while page is not None:
        response = project_credits_list.sync_detailed(
            client=staff_api, customer_uuid=UUID(org["uuid"]), page=page, page_size=5)
        assert response.status_code == 200
        assert response.headers["x-result-count"] == str(SMALL)
        assert response.parsed is not None
        rows = response.parsed
        assert len(rows) == (5 if page < 3 else SMALL - 10)
        seen.extend(row.uuid.hex for row in rows)
        links = parse_link_header(response.headers["link"])
        assert set(links) == ({"first", "last"} | ({"prev"} if page > 1 else set())
                              | ({"next"} if page < 3 else set()))
        for url in links.values():
            assert url.startswith(f"{server.base_url}/api/project-credits/?")
            # the client sends the uuid hyphenated; links echo the request's parameters
            assert _params(url)["customer_uuid"] == [str(UUID(org["uuid"]))]
            assert _params(url)["page_size"] == ["5"]
        assert "page" not in _params(links["first"])
        assert _params(links["last"])["page"] == ["3"]
        if page == 2:  # like DRF, the link back to page 1 drops `page`
            assert "page" not in _params(links["prev"])
        if page == 3:
            assert _params(links["prev"])["page"] == ["2"]
        pages += 1
        page = int(_params(links["next"])["page"][0]) if "next" in links else None
    assert pages == 3
    # default ordering is creation order; nothing skipped or repeated across pages
    assert seen == [credit["uuid"] for credit in created]


def test_page_past_the_end_is_invalid(staff_api: AuthenticatedClient,
                                      small: tuple[dict[str, Any], list[Any]]) -> None:
    org, _ = small
    with pytest.raises(UnexpectedStatus) as raised:
        project_credits_list.sync_detailed(client=staff_api, customer_uuid=UUID(org["uuid"]),
                                           page=4, page_size=5)
    assert raised.value.status_code == 404
    assert json.loads(raised.value.content) == {"detail": "Invalid page."}


def test_page_size_is_clamped_to_three_hundred(server: LedgerServer,
                                               small: tuple[dict[str, Any], list[Any]]) -> None:
    org, _ = small
    response = server.http("staff").get("/api/project-credits/",
                                        params={"customer_uuid": org["uuid"], "page_size": 1000})
    assert response.status_code == 200
    assert len(response.json()) == SMALL
    assert 'rel="next"' not in response.headers["link"]


def test_sync_all_spans_pages_in_creation_order(
        staff_api: AuthenticatedClient, large: tuple[dict[str, Any], list[str]]) -> None:
    org, created = large
    first = project_credits_list.sync_detailed(client=staff_api, customer_uuid=UUID(org["uuid"]),
                                               page_size=100)
    assert first.parsed is not None and len(first.parsed) == 100
    assert first.headers["x-result-count"] == str(LARGE)
    assert _params(parse_link_header(first.headers["link"])["next"])["page"] == ["2"]

    everything = project_credits_list.sync_all(client=staff_api, customer_uuid=UUID(org["uuid"]))
    assert [row.uuid.hex for row in everything] == created
    assert project_credits_count.sync(client=staff_api, customer_uuid=UUID(org["uuid"])) == LARGE
    # every row carries the organisation totals as they are now, after all 101 allocations
    total = Decimal(LARGE * (LARGE + 1) // 2)
    assert {row.allocated_customer_credit for row in everything} == {f"{total}.00000"}
    assert {row.customer_credit for row in everything} == {"1000000.00000"}


def test_sync_all_keeps_ordering_across_pages(
        staff_api: AuthenticatedClient, large: tuple[dict[str, Any], list[str]]) -> None:
    org, _ = large
    descending = project_credits_list.sync_all(
        client=staff_api, customer_uuid=UUID(org["uuid"]), o=[ProjectCreditOEnum.VALUE_3])
    assert [money(row.value) for row in descending] == [
        Decimal(n) for n in range(LARGE, 0, -1)]
    by_name = project_credits_list.sync_all(
        client=staff_api, customer_uuid=UUID(org["uuid"]), o=[ProjectCreditOEnum.VALUE_2])
    assert [row.project_name for row in by_name] == sorted(
        (row.project_name for row in by_name), reverse=True)
    assert len({row.uuid for row in by_name}) == LARGE
