"""The double-entry journal: every movement as a balanced transaction, for beancount
(`bean-check`) or as CSV postings.

Chart of accounts (liabilities carry credit balances, so they are negative in beancount):

- ``Liabilities:Credits:Customer-<customer>``: the organisation credit, the site's
  liability to the organisation. Its sub-accounts split it: ``:Pool`` (not earmarked) and
  ``:Project-<project credit>`` (a project credit's earmark).
- ``Expenses:Credits:Grants`` (credits created, topped up, reduced),
  ``Expenses:Credits:Withdrawable`` (withdrawable adjustments), ``Income:Usage`` (draws
  and their reversals), ``Income:Floors`` (minimal-consumption draws), ``Income:Expiry``,
  ``Income:WriteOffs``, ``Income:SettlementReversals`` (a re-opened month gives floors
  and expiry back), ``Equity:Credits:Deleted`` (the balance of a deleted credit).

A movement of an organisation credit moves the pool against the account of its kind; a
movement of a project credit moves its earmark against the pool (the organisation
credit's own movement, recorded beside it, then moves the pool against the income). So
the organisation account (with its sub-accounts) always holds the organisation credit's
balance and each earmark its project credit's. Each closed month ends with a ``balance``
assertion per credit at the first day of the next month, equal to the reconciliation's
closing. Transactions are dated by their UTC day; one recorded at exactly midnight of a
month's first day would belong to the closing but be dated after the assertion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from ledger.money import format_money
from ledger.periods import Period
from projections.reconciliation import column_of, instant, reconcile
from projections.tables import billing_periods, credit_transactions

CURRENCY = "CREDIT"
OPENED = date(1970, 1, 1)
COUNTER = {
    "created": "Expenses:Credits:Grants", "top_ups": "Expenses:Credits:Grants",
    "reductions": "Expenses:Credits:Grants",
    "withdrawable_adjustments": "Expenses:Credits:Withdrawable",
    "consumed": "Income:Usage", "draws_reversed": "Income:Usage",
    "floor_draws": "Income:Floors", "expired": "Income:Expiry",
    "written_off": "Income:WriteOffs", "reversed": "Income:SettlementReversals",
    "adjustments": "Equity:Credits:Deleted",
}
CSV_HEADER = ("date", "transaction_id", "account", "debit", "credit", "currency", "reference")
tx = credit_transactions


def organisation(customer_uuid: str) -> str:
    return f"Liabilities:Credits:Customer-{customer_uuid}"


def earmark(customer_uuid: str, project_credit_uuid: str) -> str:
    return f"{organisation(customer_uuid)}:Project-{project_credit_uuid}"


@dataclass
class Transaction:
    """A balanced transaction: postings are (account, amount) in beancount's sign."""

    day: date
    uuid: str
    kind: str
    reference: str
    narration: str
    postings: list[tuple[str, Decimal]]


@dataclass
class Assertion:
    day: date
    account: str
    amount: Decimal  # beancount's sign: a liability's balance is negative
    credit_uuids: list[str]


@dataclass
class Journal:
    transactions: list[Transaction]
    assertions: list[Assertion]

    def accounts(self) -> list[str]:
        found = {account for t in self.transactions for account, _ in t.postings}
        return sorted(found | {a.account for a in self.assertions})


def closed_through(conn: Connection, through: Period) -> list[Period]:
    """The closed months up to and including `through`."""
    rows = conn.execute(select(billing_periods.c.period).where(
        billing_periods.c.closed, billing_periods.c.period <= str(through)))
    return sorted(Period.parse(row[0]) for row in rows)


def journal(conn: Connection, through: Period, today: date) -> Journal:
    """Every movement recorded up to the end of `through`, and the closed months' balances."""
    end = instant(through.next())
    query = select(tx).where(tx.c.created <= end).order_by(tx.c.position)
    transactions = [_transaction(row) for row in conn.execute(query)]
    assertions = [found for period in closed_through(conn, through)
                  for found in _assertions(conn, period, today)]
    return Journal(transactions, assertions)


def _transaction(row: Any) -> Transaction:
    column = column_of(row.event_type, row.amount)
    if row.credit_uuid:
        postings = [(f"{organisation(row.customer_uuid)}:Pool", -row.amount),
                    (COUNTER[column], row.amount)]
    else:
        postings = [(earmark(row.customer_uuid, row.project_credit_uuid), -row.amount),
                    (f"{organisation(row.customer_uuid)}:Pool", row.amount)]
    created = row.created if row.created.tzinfo else row.created.replace(tzinfo=UTC)
    return Transaction(created.astimezone(UTC).date(), row.uuid, row.transaction_type,
                       row.item_id or row.transaction_type, row.comment or column, postings)


def _assertions(conn: Connection, period: Period, today: date) -> Iterator[Assertion]:
    """One per credit: organisation credits on their organisation's account (the sum of its
    credits that month, normally one), project credits on their earmark."""
    day = period.next().first_day
    by_organisation: dict[str, Assertion] = {}
    for row in reconcile(conn, period, today).rows:
        if row.kind == "project_credit":
            yield Assertion(day, earmark(row.customer_uuid, row.uuid), -row.figures.closing,
                            [row.uuid])
            continue
        found = by_organisation.setdefault(row.customer_uuid, Assertion(
            day, organisation(row.customer_uuid), Decimal(0), []))
        found.amount -= row.figures.closing
        found.credit_uuids.append(row.uuid)
    yield from by_organisation.values()


def _quoted(text: str) -> str:
    return '"' + " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def beancount(found: Journal, through: Period) -> str:
    """The journal as a beancount file that `bean-check` accepts."""
    lines = [f"; credit-ledger journal through {through}",
             f'option "title" "credit-ledger through {through}"',
             f'option "operating_currency" "{CURRENCY}"', ""]
    lines += [f"{OPENED} open {account} {CURRENCY}" for account in found.accounts()]
    entries: list[tuple[date, int, list[str]]] = []
    for transaction in found.transactions:
        entries.append((transaction.day, 1, [
            f"{transaction.day} * {_quoted(transaction.kind)} "
            f"{_quoted(transaction.narration)}",
            f"  transaction_id: {_quoted(transaction.uuid)}",
            f"  reference: {_quoted(transaction.reference)}",
            *(f"  {account}  {format_money(amount)} {CURRENCY}"
              for account, amount in transaction.postings)]))
    for assertion in found.assertions:
        entries.append((assertion.day, 0, [
            f"{assertion.day} balance {assertion.account}  {format_money(assertion.amount)} "
            f"{CURRENCY}", f"  credits: {_quoted(' '.join(assertion.credit_uuids))}"]))
    for _, _, entry in sorted(entries, key=lambda item: (item[0], item[1])):
        lines += ["", *entry]
    return "\n".join(lines) + "\n"


def csv_rows(found: Journal) -> Iterator[list[Any]]:
    """Header, then one line per posting: debits and credits each positive, per transaction
    equal."""
    yield list(CSV_HEADER)
    for transaction in found.transactions:
        for account, amount in transaction.postings:
            yield [transaction.day.isoformat(), transaction.uuid, account,
                   amount if amount > 0 else None, -amount if amount < 0 else None,
                   CURRENCY, transaction.reference]
