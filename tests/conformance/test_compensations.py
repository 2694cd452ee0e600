"""The organisation credit's staff actions and the credit ledger through waldur-api-client:
adjust_withdrawable, clear/apply_compensations, credit_transactions_*, grant comments,
protected earmarks and upstream's permission order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from waldur_api_client.api.credit_transactions import (
    credit_transactions_count,
    credit_transactions_list,
    credit_transactions_retrieve,
)
from waldur_api_client.api.customer_credits import (
    customer_credits_adjust_withdrawable,
    customer_credits_apply_compensations,
    customer_credits_clear_compensations,
    customer_credits_retrieve,
)
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models.credit_transaction_o_enum import CreditTransactionOEnum
from waldur_api_client.models.withdrawable_adjustment_request import (
    WithdrawableAdjustmentRequest,
)

from tests.conformance.conftest import PERMISSION_DENIED, LedgerServer, Staff, this_month


def _item(org: dict[str, Any], project: dict[str, Any], label: str, amount: str) -> Any:
    return {"id": f"{org['uuid']}-{label}", "project": project["url"], "amount": amount,
            "period": this_month()}


def test_adjust_clear_apply_and_the_ledger(server: LedgerServer, staff: Staff) -> None:
    api = server.client("staff")
    org = staff.customer("Refunds")
    a, b = staff.project(org, "A"), staff.project(org, "B")
    cc = staff.customer_credit(org, "100")
    pa = staff.project_credit(a, "30")
    credit_id = UUID(cc["uuid"])
    started = datetime.now(UTC) - timedelta(seconds=1)

    adjusted = customer_credits_adjust_withdrawable.sync(credit_id, client=api, body=(
        WithdrawableAdjustmentRequest(amount="20", comment="affiliate fee")))
    assert (adjusted.value, adjusted.withdrawable_balance) == ("120.00000", "20.00000")
    with pytest.raises(UnexpectedStatus) as raised:
        customer_credits_adjust_withdrawable.sync(credit_id, client=api, body=(
            WithdrawableAdjustmentRequest(amount="-21", comment="payout")))
    assert (raised.value.status_code, json.loads(raised.value.content)) == (
        400, {"amount": ["Reduction would exceed the withdrawable balance."]})

    # A 20 from its earmark; B 50, then 50 of 60 from the pool (cheapest first): all 120 is
    # drawn, and the withdrawable part, spent last, with it
    staff.consume([_item(org, a, "a", "20"), _item(org, b, "b60", "60"),
                   _item(org, b, "b50", "50")])
    spent = customer_credits_retrieve.sync(credit_id, client=api)
    assert (spent.value, spent.withdrawable_balance) == ("0.00000", "0.00000")

    cleared = customer_credits_clear_compensations.sync_detailed(credit_id, client=api)
    assert (cleared.status_code, cleared.content) == (200, b"")
    after = customer_credits_retrieve.sync(credit_id, client=api)
    assert (after.value, after.withdrawable_balance) == ("120.00000", "0.00000")
    assert staff.http.get(f"/api/project-credits/{pa['uuid']}/").json()["value"] == "30.00000"
    assert staff.http.get(f"/api/consumptions/{org['uuid']}-b60/").json()["uncovered"] == (
        "60.00000")

    staff.http.patch(f"/api/customer-credits/{cc['uuid']}/",
                     json={"value": "200", "comment": "top-up PO#7"}).raise_for_status()
    applied = customer_credits_apply_compensations.sync_detailed(credit_id, client=api)
    assert (applied.status_code, applied.content) == (200, b"")
    assert customer_credits_retrieve.sync(credit_id, client=api).value == "70.00000"
    assert staff.http.get(f"/api/consumptions/{org['uuid']}-b60/").json()["uncovered"] == (
        "0.00000")

    rows = credit_transactions_list.sync(client=api, credit_uuid=credit_id, page_size=50,
                                         o=[CreditTransactionOEnum.CREATED])
    assert [(r.transaction_type.value, r.amount, r.comment) for r in rows] == [
        ("staff_grant", "100.00000", ""),
        ("withdrawable_adjustment", "20.00000", "affiliate fee"),
        ("compensation", "-20.00000", f"Consumption item {org['uuid']}-a."),
        ("compensation", "-50.00000", f"Consumption item {org['uuid']}-b50."),
        ("compensation", "-50.00000", f"Consumption item {org['uuid']}-b60."),
        ("rollback", "20.00000", f"Consumption item {org['uuid']}-a."),
        ("rollback", "50.00000", f"Consumption item {org['uuid']}-b50."),
        ("rollback", "50.00000", f"Consumption item {org['uuid']}-b60."),
        ("staff_grant", "80.00000", "top-up PO#7"),
        ("compensation", "-20.00000", f"Consumption item {org['uuid']}-a."),
        ("compensation", "-50.00000", f"Consumption item {org['uuid']}-b50."),
        ("compensation", "-60.00000", f"Consumption item {org['uuid']}-b60."),
    ]
    assert credit_transactions_count.sync(client=api, credit_uuid=credit_id) == len(rows)
    grant = credit_transactions_retrieve.sync(rows[8].uuid, client=api)
    assert (grant.comment, grant.amount, grant.billing_period) == ("top-up PO#7", "80.00000", None)

    # created_from (inclusive) / created_to (exclusive), with or without a zone
    moment = rows[8].created
    params = {"credit_uuid": cc["uuid"], "page_size": 50}
    since = staff.http.get("/api/credit-transactions/", params={
        **params, "created_from": moment.isoformat()}).json()
    assert [r["uuid"] for r in since] == [r.uuid.hex for r in reversed(rows[8:])]
    naive = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    before = staff.http.get("/api/credit-transactions/", params={
        **params, "created_to": naive, "created_from": started.isoformat()}).json()
    assert [r["uuid"] for r in before] == [r.uuid.hex for r in reversed(rows[:8])]
    bad = staff.http.get("/api/credit-transactions/", params={"created_to": "yesterday"})
    assert (bad.status_code, bad.json()) == (400, {"created_to": ["Enter a valid date/time."]})


@pytest.mark.parametrize("protect", [True, False])
def test_protected_earmarks(staff: Staff, protect: bool) -> None:
    """On: the pool stops at the unallocated balance and every earmark stays drawable.
    Off (upstream): the pool draws the organisation to 0 and the earmarks are stranded."""
    org = staff.customer("Earmarks")
    pool, a, b = (staff.project(org, name) for name in ("Pool", "A", "B"))
    staff.customer_credit(org, "100", protect_allocations=protect)
    pa, pb = staff.project_credit(a, "40"), staff.project_credit(b, "25")
    drawn = staff.consume([_item(org, pool, "pool", "100")])[0]
    assert drawn["drawn_from_customer_credit"] == ("35.00000" if protect else "100.00000")
    earmarks = staff.consume([_item(org, a, "a", "40"), _item(org, b, "b", "25")])
    assert [row["drawn_from_project_credit"] for row in earmarks] == (
        ["40.00000", "25.00000"] if protect else ["0.00000", "0.00000"])
    shown = staff.http.get(f"/api/project-credits/{pa['uuid']}/").json()
    assert shown["value"] == ("0.00000" if protect else "40.00000")
    assert shown["is_limited_by_organization_credit"] is (not protect)
    assert staff.http.get(f"/api/project-credits/{pb['uuid']}/").json()["spendable_value"] == (
        "0.00000")


@pytest.mark.parametrize("user", ["owner", "manager", "member", "outsider", "support"])
def test_organisation_credit_writes_are_staff_only_before_lookup(
        server: LedgerServer, world: Any, user: str) -> None:
    http = server.http(user)
    for uuid in (world.customer_credit["uuid"], uuid4().hex):
        url = f"/api/customer-credits/{uuid}/"
        for response in (http.put(url, json={"value": "1"}), http.patch(url, json={}),
                         http.delete(url),
                         http.post(url + "adjust_withdrawable/",
                                   json={"amount": "1", "comment": "x"}),
                         http.post(url + "clear_compensations/"),
                         http.post(url + "apply_compensations/")):
            assert (response.status_code, response.json()) == (403, PERMISSION_DENIED), (
                response.request.method, response.request.url)
