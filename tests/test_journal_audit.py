"""The double-entry journal (beancount, CSV) and the hash-chained audit export, checked by
tools outside the service: `bean-check` and the stdlib-only `python -m ledger_audit`.

Uses the several-month script of test_reconciliation (grants, allocations, consumption,
floors, expiry, write-off, a re-opened and re-closed month) plus, in November, uncovered
usage, a reversed item and a withdrawable adjustment, and November closed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import ledger_audit
from api import cli
from ledger.users import hash_token
from tests.support import Directory, csv_rows
from tests.test_reconciliation import (  # noqa: F401 - fixtures
    Months,
    call,
    close,
    consume,
    labels,
    months,
    report,
)

BIN = Path(sys.executable).parent
CLOSED = ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]


@pytest.fixture
def books(months: Months, directory: Directory, labels: dict[str, str]) -> dict[str, str]:  # noqa: F811
    months.go("2026-11-27")
    other = next(c for c in call(directory, "GET", "/api/customers/") if c["name"] == "Other")
    project = directory.project(other, "Lab")
    consume(directory, "2026-11", ("big", project, "240"))       # 80 drawn, 160 uncovered
    org_projects = call(directory, "GET", "/api/projects/")
    c = next(p for p in org_projects if p["name"] == "C")
    consume(directory, "2026-11", ("oops", c, "12"))
    call(directory, "DELETE", "/api/consumptions/oops/")
    call(directory, "POST", f"/api/customer-credits/{labels['org']}/adjust_withdrawable/",
         {"amount": "15", "comment": "affiliate fee"})
    close(directory, "2026-11")
    return labels


def get(directory: Directory, path: str, headers: dict[str, str] | None = None,
        **params: Any) -> Any:
    return directory.client.simulate_get(path, params=params,
                                         headers=headers or directory.staff)


def closings(directory: Directory) -> dict[str, dict[str, str]]:
    """Per closed month, the reconciliation's closing per credit."""
    return {period: {row["uuid"]: row["closing"] for row in report(directory, period).json[
        "rows"]} for period in CLOSED}


def bean_check(tmp_path: Path, text: str, name: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return subprocess.run([str(BIN / "bean-check"), str(path)], capture_output=True,
                          text=True, timeout=120)


def test_beancount_journal_passes_bean_check_and_asserts_the_closings(
        directory: Directory, books: dict[str, str], tmp_path: Path) -> None:
    result = get(directory, "/api/journal/", format="beancount", through="2026-11")
    assert result.status_code == 200, result.text
    text = result.text
    checked = bean_check(tmp_path, text, "books.beancount")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    asserted: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for day, _account, amount, credits in re.findall(
            r"^(\d{4}-\d{2})-01 balance (\S+)\s+(-?[\d.]+) CREDIT\n  credits: \"([^\"]+)\"",
            text, re.M):
        month = {"2026-08": "2026-07", "2026-09": "2026-08", "2026-10": "2026-09",
                 "2026-11": "2026-10", "2026-12": "2026-11"}[day]
        asserted[month][credits] = -Decimal(amount)
    expected = closings(directory)
    for month in CLOSED:  # one assertion per credit (one organisation credit each)
        assert asserted[month] == {uuid: Decimal(closing)
                                   for uuid, closing in expected[month].items()}, month
    assert asserted["2026-11"][books["org"]] == Decimal("1050")  # 1035 + 15
    for account in ("Income:Usage", "Income:WriteOffs", "Expenses:Credits:Grants",
                    "Expenses:Credits:Withdrawable", f"Project-{books['B']}"):
        assert f"  {account}" in text or account in text, account
    tampered = re.sub(r"(Income:Usage\s+)(\d+)\.", lambda m: m.group(1) + str(
        int(m.group(2)) + 1) + ".", text, count=1)
    assert tampered != text
    broken = bean_check(tmp_path, tampered, "tampered.beancount")
    assert broken.returncode != 0
    assert "Balance failed" in broken.stdout + broken.stderr or \
        "does not balance" in broken.stdout + broken.stderr


def test_csv_journal_debits_equal_credits_per_transaction(directory: Directory,
                                                          books: dict[str, str]) -> None:
    result = get(directory, "/api/journal/", format="csv", through="2026-10")
    assert result.status_code == 200 and result.headers["Content-Type"].startswith("text/csv")
    rows = csv_rows(result)
    assert list(rows[0]) == ["date", "transaction_id", "account", "debit", "credit",
                             "currency", "reference"]
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in rows:
        sums[row["transaction_id"]][0] += Decimal(row["debit"] or 0)
        sums[row["transaction_id"]][1] += Decimal(row["credit"] or 0)
        assert (row["debit"] == "") != (row["credit"] == "") and row["currency"] == "CREDIT"
        assert row["date"] <= "2026-11-01"
    assert sums and all(debit == credit for debit, credit in sums.values())
    usage = sum((Decimal(r["credit"] or 0) - Decimal(r["debit"] or 0) for r in rows
                 if r["account"] == "Income:Usage"), Decimal(0))
    consumed = sum((Decimal(row["consumed"]) + Decimal(row["draws_reversed"])
                    for period in CLOSED[:4] for row in report(directory, period).json["rows"]
                    if row["kind"] == "customer_credit"), Decimal(0))
    assert usage == -consumed


def test_journal_requests(directory: Directory, books: dict[str, str]) -> None:
    assert get(directory, "/api/journal/", through="2026-06").json == {
        "through": ["Billing period 2026-06 is not closed."]}
    assert get(directory, "/api/journal/").json == {"through": ["This field is required."]}
    bad = get(directory, "/api/journal/", through="2026-11", format="xlsx")
    assert bad.status_code == 400 and list(bad.json) == ["format"]
    support = directory.user("helpdesk", support=True)
    assert get(directory, "/api/journal/", support, through="2026-11").status_code == 200
    owner = directory.user("someone")
    assert get(directory, "/api/journal/", owner, through="2026-11").status_code == 403


def test_cli_journal_matches_http(directory: Directory, books: dict[str, str], tmp_path: Path,
                                  database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    out = tmp_path / "journal.beancount"
    assert cli.main(["export", "journal", "--format", "beancount", "--through", "2026-11",
                     "--out", str(out)]) == 0
    http = get(directory, "/api/journal/", format="beancount", through="2026-11").text
    assert out.read_text(encoding="utf-8") == http
    assert cli.main(["export", "journal", "--through", "2026-12", "--out", "-"]) != 0


def export_audit(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    assert cli.main(["export", "audit", "--out", str(out)]) == 0
    return out


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    """The verifier as an auditor runs it: the package copied alone beside the file, a
    plain Python outside our virtualenv (standard library only), no site packages."""
    shipped = path.parent / "shipped"
    if not shipped.exists():
        shutil.copytree(Path(ledger_audit.__file__).parent, shipped / "ledger_audit")
    python = getattr(sys, "_base_executable", sys.executable)
    return subprocess.run([python, "-E", "-s", "-m", "ledger_audit", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=shipped)


def test_audit_export_verifies_and_its_closings_equal_the_reconciliation(
        directory: Directory, books: dict[str, str], tmp_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    path = export_audit(tmp_path, "audit.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[-1])
    assert head == {"type": "head", "count": len(lines) - 1,
                    "hash": json.loads(lines[-2])["hash"]}
    assert get(directory, "/api/audit/head/").json == {"count": head["count"],
                                                       "hash": head["hash"]}
    assert hash_token(directory.tokens["staff"]) not in path.read_text(encoding="utf-8")
    checked = verify(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for line in checked.stdout.splitlines():
        if re.match(r"^\d{4}-\d{2} ", line):
            month, uuid, closing = line.split()
            found[month][uuid] = closing
    assert found == closings(directory)
    live = {credit["uuid"]: credit["value"] for credit in call(
        directory, "GET", "/api/customer-credits/")}
    assert all(f"balance {uuid} {value}" in checked.stdout for uuid, value in live.items())


def test_a_later_export_extends_an_earlier_one(directory: Directory, books: dict[str, str],
                                               tmp_path: Path, database_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    first = export_audit(tmp_path, "first.jsonl").read_text().splitlines()
    pinned = get(directory, "/api/audit/head/").json
    call(directory, "PATCH", f"/api/customer-credits/{books['other']}/", {"value": "90"})
    second = export_audit(tmp_path, "second.jsonl").read_text().splitlines()
    assert second[:len(first) - 1] == first[:-1] and len(second) > len(first)
    assert json.loads(second[pinned["count"] - 1])["hash"] == pinned["hash"]
    assert get(directory, "/api/audit/head/").json["count"] == len(second) - 1
    assert get(directory, "/api/audit/head/", directory.user("x")).status_code == 403


def tampered(lines: list[str], how: str) -> tuple[list[str], int]:
    """The lines edited one way, and the 1-based line the verifier must name."""
    amounts = [i for i, line in enumerate(lines) if '"amount":"' in line]
    at = amounts[len(amounts) // 2]
    edited = list(lines)
    if how == "changed":
        edited[at] = re.sub(r'"amount":"(-?)(\d+)', lambda m: f'"amount":"{m.group(1)}'
                            f'{int(m.group(2)) + 1}', lines[at], count=1)
    elif how == "deleted":
        del edited[at]
    elif how == "swapped":
        edited[at], edited[at + 1] = lines[at + 1], lines[at]
    else:
        edited.insert(at, lines[at - 1])
    return edited, at + 1


@pytest.mark.parametrize("how", ["changed", "deleted", "swapped", "inserted"])
def test_the_verifier_names_the_first_bad_record(directory: Directory, books: dict[str, str],
                                                 tmp_path: Path, database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 how: str) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    lines = export_audit(tmp_path, "audit.jsonl").read_text().splitlines()
    edited, line = tampered(lines, how)
    assert edited != lines
    path = tmp_path / f"{how}.jsonl"
    path.write_text("\n".join(edited) + "\n")
    checked = verify(path)
    assert checked.returncode == 1, checked.stdout
    assert f"record {line}:" in checked.stdout, (how, checked.stdout)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-2] + lines[-1:]) + "\n")
    assert f"record {len(lines) - 1}:" in verify(truncated).stdout


def test_keyed_commands_are_in_the_audit_log(directory: Directory, tmp_path: Path,
                                             database_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyed command's record (its key, fingerprint and result: ids, consumption results)
    is an event like any other: the head answers, the export verifies."""
    customer = directory.customer()
    project = directory.project(customer)
    directory.customer_credit(customer, "100.00")
    keyed = {**directory.staff, "Idempotency-Key": "audit-post"}
    posted = directory.client.simulate_post("/api/consumptions/", headers=keyed, json=[{
        "id": "audit-item", "project": project["url"], "amount": "10.00",
        "period": "2026-11"}])
    assert posted.status_code == 201, posted.text
    head = get(directory, "/api/audit/head/").json
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    path = export_audit(tmp_path, "keyed.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[-1]) == {"type": "head", **head}
    assert any('"audit-post"' in line for line in lines)
    checked = verify(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
