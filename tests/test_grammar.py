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


# --- row 7: consumption ids fit the URL path they are read and reversed at ----------------

@pytest.mark.parametrize("item_id", ["a/b", "..", ".", "a b", " a", "a\n", "a%2Fb", "a?b",
                                     "a#b", "é", "１", "a\x00b", ""])
def test_a_consumption_id_that_cannot_be_a_path_segment_is_refused(
        directory: Directory, item_id: str) -> None:
    project = directory.project(directory.customer("Org"))
    posted = directory.client.simulate_post("/api/consumptions/", headers=directory.staff,
                                            json=[{"id": item_id, "project": project["url"],
                                                   "amount": "1", "period": "2026-10"}])
    assert posted.status_code == 400
    assert list(posted.json[0]) == ["id"]
    assert directory.services.ledger.find_consumption(item_id) is None


def test_every_id_the_grammar_admits_can_be_read_and_reversed(directory: Directory) -> None:
    org = directory.customer("Org")
    directory.customer_credit(org, "100")
    project = directory.project(org)
    ids = ["c-5", "a.b", "...", "x~y_z", "u:1@h", "!$&'()*+,;=", "Z" * 255, 42]
    posted = directory.client.simulate_post("/api/consumptions/", headers=directory.staff,
                                            json=[{"id": item_id, "project": project["url"],
                                                   "amount": "1", "period": "2026-10"}
                                                  for item_id in ids])
    assert posted.status_code == 201, posted.text
    for item_id in map(str, ids):
        read = directory.client.simulate_get(f"/api/consumptions/{item_id}/",
                                             headers=directory.staff)
        assert (read.status_code, read.json["id"]) == (200, item_id)
        gone = directory.client.simulate_delete(f"/api/consumptions/{item_id}/",
                                                headers=directory.staff)
        assert gone.status_code == 204, item_id


# --- row 9: numbers, periods, dates, uuids and ETags in ASCII, nothing around them --------

LOOSE_NUMBERS = ["١٢٣", "１２３", "5_000", "+5", " 5 ", "5\n", "1e2", "0x10"]


@pytest.mark.parametrize("amount", LOOSE_NUMBERS)
def test_an_amount_python_would_read_is_refused(directory: Directory, amount: str) -> None:
    org = directory.customer("Org")
    created = directory.client.simulate_post("/api/customer-credits/", headers=directory.staff,
                                             json={"customer": org["url"], "value": amount,
                                                   "grace_coefficient": amount})
    assert (created.status_code, created.json) == (400, {
        "value": ["A valid number is required."],
        "grace_coefficient": ["A valid number is required."]})
    listed = directory.client.simulate_get("/api/customer-credits/", headers=directory.staff)
    assert listed.json == []


def test_an_integral_json_number_is_a_grace_coefficient(directory: Directory) -> None:
    credit = directory.customer_credit(directory.customer("Org"), "10", grace_coefficient=5.0)
    assert credit["grace_coefficient"] == "5"


@pytest.mark.parametrize("number", [10 ** 30, -22742971510312982705625746828697796608,
                                    4.883055148411991e+279, 1e16])
def test_a_json_number_beyond_every_limit_is_refused_by_its_limit(directory: Directory,
                                                                   number: float) -> None:
    """Found by schemathesis: an integral number with more digits than Decimal's precision
    answered 500 instead of the field's digit limit."""
    org = directory.customer("Org")
    credit = directory.customer_credit(org, "10")
    path = f"/api/customer-credits/{credit['uuid']}/"
    for body, field, limit in (({"grace_coefficient": number}, "grace_coefficient", 3),
                               ({"value": number}, "value", 16)):
        changed = directory.client.simulate_patch(path, json=body, headers=directory.staff)
        assert (changed.status_code, changed.json) == (400, {field: [
            f"Ensure that there are no more than {limit} digits in total."]}), body
    shown = directory.client.simulate_get(path, headers=directory.staff).json
    assert (shown["value"], shown["grace_coefficient"]) == ("10.00000", "0")


@pytest.mark.parametrize("period", ["2026-01\n", "２０２６-01", "2026-0１", " 2026-01"])
def test_a_period_with_anything_around_or_other_digits_is_refused(directory: Directory,
                                                                   period: str) -> None:
    project = directory.project(directory.customer("Org"))
    posted = directory.client.simulate_post("/api/consumptions/", headers=directory.staff,
                                            json=[{"id": "a", "project": project["url"],
                                                   "amount": "1", "period": period}])
    assert (posted.status_code, posted.json) == (
        400, [{"period": ["Enter a billing period as YYYY-MM."]}])


@pytest.mark.parametrize(("name", "value"), [
    ("billing_period", "2026-10-01\n"), ("billing_period", " 2026-10-01"),
    ("billing_period", "２０２６-10-01"), ("credit_uuid", "{" + "0" * 32 + "}"),
    ("credit_uuid", "urn:uuid:" + "0" * 32), ("credit_uuid", "٠" * 32),
    ("credit_uuid", " " + "0" * 32)])
def test_filters_read_by_a_strict_grammar(directory: Directory, name: str, value: str) -> None:
    listed = directory.client.simulate_get("/api/credit-transactions/", params={name: value},
                                           headers=directory.staff)
    assert listed.status_code == 400 and list(listed.json) == [name]


@pytest.mark.parametrize("tag", ['"²"', '"١"', "7 7", '"7', "W/", '"-1"', '"' + "9" * 19 + '"'])
def test_an_if_match_that_is_not_an_etag_of_ours_is_a_412(directory: Directory,
                                                          tag: str) -> None:
    credit = directory.customer_credit(directory.customer("Org"), "10")
    changed = directory.client.simulate_patch(
        f"/api/customer-credits/{credit['uuid']}/", json={"value": "20"},
        headers={**directory.staff, "If-Match": tag})
    assert (changed.status_code, changed.json) == (
        412, {"detail": "If-Match must be an ETag this API gave out."})
    etag = directory.client.simulate_get(f"/api/customer-credits/{credit['uuid']}/",
                                         headers=directory.staff).headers["ETag"]
    now = directory.client.simulate_patch(
        f"/api/customer-credits/{credit['uuid']}/", json={"value": "20"},
        headers={**directory.staff, "If-Match": etag})
    assert (now.status_code, now.json["value"]) == (200, "20.00000")


# --- row 10: what schemathesis found refused although the schema admitted it -------------

def test_the_schema_says_an_adjustment_is_not_zero_and_has_a_comment(
        directory: Directory) -> None:
    import jsonschema

    from api.resources.customer_credits import ADJUSTMENT_FIELDS

    amount, comment = (jsonschema.Draft7Validator(field.schema) for field in ADJUSTMENT_FIELDS)
    assert [amount.is_valid(v) for v in ("0", "0.00000", "-0", 0, "0.00001", "-3", 7)] == [
        False, False, False, False, True, True, True]
    assert [comment.is_valid(v) for v in ("", "  ", "a\x00", "why")] == [
        False, False, False, True]
    credit = directory.customer_credit(directory.customer("Org"), "10")
    refused = directory.client.simulate_post(
        f"/api/customer-credits/{credit['uuid']}/adjust_withdrawable/",
        json={"amount": "0.00000", "comment": " "}, headers=directory.staff)
    assert (refused.status_code, refused.json) == (400, {
        "amount": ["Amount must not be zero."], "comment": ["A comment is required."]})


@pytest.mark.parametrize("path", ["/api/reconciliation/", "/api/reconciliation/usage/"])
def test_a_bad_bom_is_refused_even_for_json(directory: Directory, path: str) -> None:
    answer = directory.client.simulate_get(path, params={"period": "2026-10", "bom": "null"},
                                           headers=directory.staff)
    assert (answer.status_code, answer.json) == (400, {"bom": ["Must be a valid boolean."]})
    plain = directory.client.simulate_get(path, params={"period": "2026-10", "bom": "false"},
                                          headers=directory.staff)
    assert plain.status_code == 200 and isinstance(plain.json, dict) and plain.json


def test_a_comment_with_nul_is_outside_the_schema_and_refused(directory: Directory) -> None:
    import jsonschema

    from api.http.fields import COMMENT

    assert not jsonschema.Draft7Validator(COMMENT.schema).is_valid("a\x00b")
    org = directory.customer("Org")
    created = directory.client.simulate_post("/api/customer-credits/", headers=directory.staff,
                                             json={"customer": org["url"], "value": "1",
                                                   "comment": "a\x00b"})
    assert (created.status_code, created.json) == (
        400, {"comment": ["Null characters are not allowed."]})
