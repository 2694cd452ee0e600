"""Monthly reconciliation: for every credit, opening + movements = closing, to the cent.

Built from the event log itself (one pass over every notification), then checked against
the read models, so a report that ties out is evidence, not an echo.

Attribution — one rule for every balance event: an event belongs to its billing period
when it has one (draws and their reversals, floors, expiry, settlement reversals), and
otherwise to the calendar month (UTC) of its timestamp (creation, grants, write-offs,
releases on termination, deletion). So a month's report shows that month's usage,
floors and expiry however late they were posted or settled. Opening of P = every
movement belonging to a month before P; closing = every movement belonging to P or
before; nothing is attributed to a month that has not begun, so the closing balance of
the latest month equals the live balance. A credit created after usage it covers was
posted for an earlier month shows a negative balance in that month.

Columns are signed, as the balance moved: granted (creation value and grants, upstream's
staff_grant, and withdrawable adjustments), consumed (draws net of their
reversals and of cleared compensations), floor_draws (minimal_draw),
expired, written_off (write-off, release on project termination, deletion), reversed
(settlement reversals of a re-opened period). A balance event of a kind not listed here
would land in opening/closing but in no column, and the row would not tie out.

Totals add every row; project credits are earmarks of their organisation's credit, so
the totals count earmarked money once per kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, select

from ledger.application import Ledger
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.directory import Customer, Project
from ledger.money import ZERO, format_money
from ledger.periods import Period
from projections.tables import credit_transactions, customer_credits, project_credits

COLUMNS = ("granted", "consumed", "floor_draws", "expired", "written_off", "reversed")
FIELDS = ("kind", "uuid", "customer_uuid", "customer_name", "project_uuid", "project_name",
          "opening", *COLUMNS, "closing", "ties_out")
CLASSIFY: list[tuple[type, str]] = [
    (CustomerCredit.Created, "granted"),
    (ProjectCredit.Created, "granted"),
    (Credit.Granted, "granted"),
    (CustomerCredit.WithdrawableAdjusted, "granted"),
    (Credit.Drawn, "consumed"),
    (Credit.ItemsDrawn, "consumed"),
    (Credit.DrawReversed, "consumed"),
    (Credit.DrawsRolledBack, "consumed"),
    (Credit.FloorCharged, "floor_draws"),
    (Credit.Expired, "expired"),
    (Credit.WrittenOff, "written_off"),
    (ProjectCredit.Released, "written_off"),
    (Credit.Deleted, "written_off"),
    (Credit.SettlementReversed, "reversed"),
]
BATCH = 500


def attributed_period(period: str | None, moment: datetime) -> Period:
    """The one attribution rule: the billing period if any, else the UTC month of the event."""
    if period:
        return Period.parse(period)
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return Period.of(aware.astimezone(UTC).date())


def column_of(event: Any) -> str | None:
    return next((name for cls, name in CLASSIFY if isinstance(event, cls)), None)


@dataclass
class Row:
    """One credit's month; also used for the totals row."""

    kind: str
    uuid: str
    customer_uuid: str = ""
    customer_name: str = ""
    project_uuid: str = ""
    project_name: str = ""
    opening: Decimal = ZERO
    movements: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(COLUMNS, ZERO))
    closing: Decimal = ZERO

    @property
    def ties_out(self) -> bool:
        return self.opening + sum(self.movements.values(), ZERO) == self.closing

    def add(self, other: Row) -> None:
        self.opening += other.opening
        self.closing += other.closing
        for name in COLUMNS:
            self.movements[name] += other.movements[name]

    def as_dict(self) -> dict[str, Any]:
        """Money as 5-dp strings, the same text in JSON and CSV."""
        return {
            "kind": self.kind, "uuid": self.uuid, "customer_uuid": self.customer_uuid,
            "customer_name": self.customer_name, "project_uuid": self.project_uuid,
            "project_name": self.project_name, "opening": format_money(self.opening),
            **{name: format_money(self.movements[name]) for name in COLUMNS},
            "closing": format_money(self.closing), "ties_out": self.ties_out,
        }


@dataclass
class _Credit:
    """What the scan learns about one credit."""

    row: Row
    customer_id: UUID
    project_id: UUID | None
    first: Period
    deleted_in: Period | None = None


@dataclass
class Report:
    period: Period
    rows: list[Row]
    totals: Row
    closing_compared_with: str
    mismatches: list[str]

    @property
    def all_rows_tie_out(self) -> bool:
        return all(row.ties_out for row in self.rows)

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "all_rows_tie_out": self.all_rows_tie_out,
            "totals_tie_out": self.totals.ties_out,
            "closing_compared_with": self.closing_compared_with,
            "closing_matches": not self.mismatches,
            "mismatches": self.mismatches,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": str(self.period),
            "attribution": "billing period where the event has one, else the UTC month "
                           "of the event's timestamp",
            "rows": [row.as_dict() for row in self.rows],
            "totals": self.totals.as_dict(),
            "summary": self.summary(),
        }


class _Scan:
    """One pass over the event log, folding every credit event into its row."""

    def __init__(self, period: Period) -> None:
        self.period = period
        self.credits: dict[UUID, _Credit] = {}
        self.names: dict[UUID, str] = {}
        self.latest = period

    def apply(self, event: Any) -> None:
        if _is(event, Customer.Registered, Project.Registered):
            self.names[event.originator_id] = event.name
        elif is_creation(event):
            self._created(event)
        if _is(event, ProjectCredit.Moved) and self._period_of(event, None) <= self.period:
            self.credits[event.originator_id].project_id = event.project_id
        amount = amount_of(event)
        if amount is not None:
            self._move(event, amount)

    def _created(self, event: Any) -> None:
        is_org = isinstance(event, CustomerCredit.Created)
        self.credits[event.originator_id] = _Credit(
            row=Row("customer_credit" if is_org else "project_credit", event.originator_id.hex),
            customer_id=event.customer_id, project_id=None if is_org else event.project_id,
            first=self._period_of(event, None))

    def _period_of(self, event: Any, period: str | None) -> Period:
        return attributed_period(period, event.timestamp)

    def _move(self, event: Any, amount: Decimal) -> None:
        credit = self.credits[event.originator_id]
        when = self._period_of(event, getattr(event, "period", None))
        self.latest = max(self.latest, when)
        credit.first = min(credit.first, when)
        if isinstance(event, Credit.Deleted):
            credit.deleted_in = when
        if when < self.period:
            credit.row.opening += amount
        if when <= self.period:
            credit.row.closing += amount
        column = column_of(event)
        if when == self.period and column is not None:
            credit.row.movements[column] += amount

    def rows(self) -> list[Row]:
        shown = [c for c in self.credits.values() if c.first <= self.period
                 and (c.deleted_in is None or c.deleted_in >= self.period)]
        for credit in shown:
            credit.row.customer_uuid = credit.customer_id.hex
            credit.row.customer_name = self.names.get(credit.customer_id, "")
            if credit.project_id is not None:
                credit.row.project_uuid = credit.project_id.hex
                credit.row.project_name = self.names.get(credit.project_id, "")
        return sorted((c.row for c in shown), key=lambda r: (
            r.customer_name, r.customer_uuid, r.kind != "customer_credit", r.project_name,
            r.uuid))


def _is(event: Any, *classes: type) -> bool:
    """isinstance without narrowing: the event classes' attributes are not declared."""
    return isinstance(event, classes)


def is_creation(event: Any) -> bool:
    return _is(event, CustomerCredit.Created, ProjectCredit.Created)


def amount_of(event: Any) -> Decimal | None:
    """How an event moved the balance: the initial value on creation, else its amount."""
    if is_creation(event):
        return Decimal(event.value)
    if isinstance(event, Credit.BalanceChanged):
        return Decimal(event.amount)
    return None


def scan(app: Ledger, period: Period, progress: Callable[[int], None]) -> _Scan:
    folded = _Scan(period)
    position, done = 0, 0
    while notifications := app.recorder.select_notifications(
            start=position, limit=BATCH, inclusive_of_start=False):
        for notification in notifications:
            folded.apply(app.mapper.to_domain_event(notification))
        position = notifications[-1].id
        done += len(notifications)
        progress(done)
    return folded


def reconcile(app: Ledger, engine: Engine, period: Period,
              progress: Callable[[int], None] = lambda n: None) -> Report:
    """The period's report, with closing balances checked against the read models."""
    folded = scan(app, period, progress)
    rows = folded.rows()
    totals = Row("total", "")
    for row in rows:
        totals.add(row)
    if folded.latest <= period:
        against, expected = "live_read_model", live_balances(engine)
    else:
        against, expected = "next_period_opening", next_openings(engine, period)
    mismatches = [row.uuid for row in rows if expected.get(row.uuid, ZERO) != row.closing]
    return Report(period, rows, totals, against, mismatches)


def live_balances(engine: Engine) -> dict[str, Decimal]:
    """Every credit's value in the credits read model (deleted credits hold 0)."""
    with engine.connect() as conn:
        found = {row.uuid: row.value for row in conn.execute(
            select(customer_credits.c.uuid, customer_credits.c.value))}
        found.update({row.uuid: row.value for row in conn.execute(
            select(project_credits.c.uuid, project_credits.c.value))})
    return found


def next_openings(engine: Engine, period: Period) -> dict[str, Decimal]:
    """The next period's opening per credit, summed from the credit-transactions read model."""
    tx = credit_transactions
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    with engine.connect() as conn:
        for row in conn.execute(select(tx.c.credit_uuid, tx.c.project_credit_uuid, tx.c.amount,
                                       tx.c.billing_period, tx.c.created)):
            when = (Period.of(row.billing_period) if row.billing_period
                    else attributed_period(None, row.created))
            if when <= period:
                totals[row.credit_uuid or row.project_credit_uuid] += row.amount
    return totals


def to_csv_rows(report: Report) -> list[list[str]]:
    """Header, one line per credit, then the totals line; booleans as true/false."""
    def line(values: dict[str, Any]) -> list[str]:
        return [str(values[name]).lower() if isinstance(values[name], bool)
                else str(values[name]) for name in FIELDS]

    return [list(FIELDS), *(line(row.as_dict()) for row in report.rows),
            line(report.totals.as_dict())]
