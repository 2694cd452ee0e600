"""Check an audit export and recompute the books from it.

Credits are the streams whose events' topics start with ``ledger.credits:``. A credit's
``Created`` event carries its initial ``value``; every other event of a credit that carries
a signed ``amount`` moved the balance by it. Billing periods are closed and re-opened by
``BillingCalendar.PeriodClosed`` / ``PeriodReopened`` events. A closed month's closing is
each credit's balance at the first instant of the next month (events stamped at or before
it), for every credit that existed then and had not been deleted before the month began,
as the reconciliation reports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from ledger_audit.chain import GENESIS, record_hash

CREDIT_TOPIC = "ledger.credits:"
CALENDAR = "ledger.consumption:BillingCalendar."
PLACES = Decimal("0.00001")


class Broken(Exception):
    """The chain fails at a record (1-based line number)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"record {line}: {reason}")
        self.line = line


@dataclass
class Credit:
    """A credit's movements: (timestamp, amount), and when it was deleted."""

    movements: list[tuple[datetime, Decimal]] = field(default_factory=list)
    deleted_at: datetime | None = None

    def balance(self, at: datetime | None = None) -> Decimal:
        return sum((amount for when, amount in self.movements if at is None or when <= at),
                   Decimal(0))


@dataclass
class Books:
    credits: dict[str, Credit] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    count: int = 0
    head: str = GENESIS

    def add(self, event: dict[str, object]) -> None:
        topic, state = str(event["topic"]), event["state"]
        assert isinstance(state, dict)
        when = moment(str(event["timestamp"]))
        if topic.startswith(CREDIT_TOPIC):
            credit = self.credits.setdefault(str(event["originator_id"]), Credit())
            if topic.endswith(".Created"):
                credit.movements.append((when, Decimal(str(state["value"]))))
            elif "amount" in state:
                credit.movements.append((when, Decimal(str(state["amount"]))))
            if topic.endswith(".Deleted"):
                credit.deleted_at = when
        elif topic == CALENDAR + "PeriodClosed":
            self.closed.add(str(state["period"]))
        elif topic == CALENDAR + "PeriodReopened":
            self.closed.discard(str(state["period"]))

    def closings(self) -> Iterator[tuple[str, str, Decimal]]:
        """(month, credit uuid, closing) for every closed month, in order."""
        for month in sorted(self.closed):
            start, end = first_instant(month), first_instant(next_month(month))
            for uuid, credit in sorted(self.credits.items()):
                existed = credit.movements and credit.movements[0][0] <= end
                gone = credit.deleted_at is not None and credit.deleted_at <= start
                if existed and not gone:
                    yield month, uuid, credit.balance(end)


def moment(text: str) -> datetime:
    found = datetime.fromisoformat(text)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def first_instant(month: str) -> datetime:
    year, number = map(int, month.split("-"))
    return datetime(year, number, 1, tzinfo=UTC)


def next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def money(amount: Decimal) -> str:
    return str(amount.quantize(PLACES))


def check(lines: Iterable[str]) -> Books:
    """Follow the chain record by record; Broken at the first that fails."""
    books = Books()
    number = 0
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise Broken(number, "not JSON") from None
        if not isinstance(record, dict):
            raise Broken(number, "not a record")
        if record.get("type") == "head":
            if record.get("count") != books.count or record.get("hash") != books.head:
                raise Broken(number, "the head does not match the records before it")
            return books
        if record.get("seq") != books.count + 1:
            raise Broken(number, f"expected seq {books.count + 1}")
        if record.get("prev_hash") != books.head:
            raise Broken(number, "prev_hash is not the previous record's hash")
        if record.get("hash") != record_hash(record):
            raise Broken(number, "hash does not match the record's content")
        books.add(record["event"])
        books.count, books.head = books.count + 1, record["hash"]
    raise Broken(number + 1, "the head record is missing")
