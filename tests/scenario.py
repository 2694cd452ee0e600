"""A scripted month of ledger activity through the public API, shared by several tests."""

from __future__ import annotations

from typing import Any

from tests.support import Directory


def run_scenario(directory: Directory) -> dict[str, Any]:
    """Worked example A (reference §4.13) plus a grant, a reversal and a termination."""
    client, staff = directory.client, directory.staff
    org = directory.customer("Org")
    a, b, c = (directory.project(org, name) for name in ("A", "B", "C"))
    vm = directory.offering("VM")
    cc = directory.customer_credit(org, "1000")
    pa = directory.project_credit(a, "300")
    pb = directory.project_credit(b, "100", expected_consumption="80", grace_coefficient="25")
    items = [
        {"id": "a-120", "project": a["url"], "offering": vm["url"], "amount": "120",
         "period": "2025-02"},
        {"id": "a-250", "project": a["url"], "offering": None, "amount": "250",
         "period": "2025-02"},
        {"id": "b-30", "project": b["url"], "amount": "30", "period": "2025-02"},
        {"id": "c-200", "project": c["url"], "amount": "200", "period": "2025-02"},
        {"id": "c-5", "project": c["url"], "amount": "5", "period": "2025-02"},
    ]
    posted = client.simulate_post("/api/consumptions/", json=items, headers=staff)
    assert posted.status_code == 201, posted.text
    reversed_ = client.simulate_delete("/api/consumptions/c-5/", headers=staff)
    assert reversed_.status_code == 204, reversed_.text
    closed = client.simulate_post("/api/billing-periods/2025-02/close/", headers=staff)
    assert closed.status_code == 200, closed.text
    granted = client.simulate_patch(f"/api/customer-credits/{cc['uuid']}/",
                                    json={"value": "600"}, headers=staff)
    assert granted.status_code == 200, granted.text
    terminated = client.simulate_delete(f"/api/projects/{b['uuid']}/", headers=staff)
    assert terminated.status_code == 204, terminated.text
    return {"org": org, "projects": (a, b, c), "cc": cc, "pa": pa, "pb": pb, "vm": vm}
