"""Issue 21 rows 7-10: every string a client sends is read by an explicit grammar (ASCII
digits, one optional sign where allowed, no whitespace, no control characters), on SQLite
and PostgreSQL; what Python's int()/Decimal()/strptime would also take is refused."""

from __future__ import annotations

import pytest

from tests.support import Directory

HUGE = str(10**20)


@pytest.mark.parametrize("page", [HUGE, str(2**63), "1000000001", "١", "１", "1_0", "+1",
                                  " 1", "1\n"])
def test_a_page_past_the_end_or_not_in_ascii_digits_is_an_invalid_page(
        directory: Directory, page: str) -> None:
    directory.customer("Org")
    listed = directory.client.simulate_get("/api/customers/", params={"page": page},
                                           headers=directory.staff)
    assert (listed.status_code, listed.json) == (404, {"detail": "Invalid page."})
    last = directory.client.simulate_get("/api/customers/", params={"page": "1"},
                                         headers=directory.staff)
    assert last.status_code == 200 and [row["name"] for row in last.json] == ["Org"]


@pytest.mark.parametrize("size", ["１２", "1_2", "+12", " 12", "12 "])
def test_a_page_size_not_in_ascii_digits_means_the_default(directory: Directory,
                                                           size: str) -> None:
    for n in range(12):
        directory.customer(f"Org {n}")
    listed = directory.client.simulate_get("/api/customers/", params={"page_size": size},
                                           headers=directory.staff)
    assert listed.status_code == 200 and len(listed.json) == 10
    plain = directory.client.simulate_get("/api/customers/", params={"page_size": "12"},
                                          headers=directory.staff)
    assert len(plain.json) == 12
