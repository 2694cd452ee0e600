"""Monthly reconciliation: a month-end roll-forward that equals the ledger.

Attribution: every balance change belongs to the UTC month in which it was recorded (its
event timestamp) and also names the billing period it is for, when it has one. Opening of
month M is each credit's balance at the first instant of M and closing its balance at the
first instant of M+1, what `?as_of=` answers there (an event stamped exactly at an
instant is part of the balance at it). So no balance shown is negative, opening(M+1) =
closing(M), and a month's report never changes once the month has ended; usage posted
late, or an earlier period settled, in M is a movement of M keyed by its billing period.

Balances come from credit_versions, movements from credit_transactions, both indexed by
time: a row that ties out (opening + movements = closing) is a cross-check of two read
models, and closing is checked once more against credit_transactions' balance_after (and,
for the current month, against the live credits). `verify` proves the tables equal a
replay of the log.

Columns are signed, as the balance moved, one kind of movement each: created (a credit's
initial value), top_ups (value raised), reductions (value lowered),
withdrawable_adjustments, consumed (draws), draws_reversed (reversed items and cleared
compensations), floor_draws, expired, written_off (write-offs, releases on project
termination), reversed (settlement reversals of a re-opened period), adjustments
(deletions).

Organisation credits are the liability; project credits are earmarks inside them, so
totals are per kind and never added together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, and_, case, false, func, select

from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.money import ZERO
from ledger.periods import Period
from projections.as_of import latest_versions
from projections.tables import (
    billing_periods,
    consumptions,
    credit_transactions,
    credit_versions,
    customer_credits,
    customers,
    project_credits,
    projects,
)

COLUMNS = ("created", "top_ups", "reductions", "withdrawable_adjustments", "consumed",
           "draws_reversed", "floor_draws", "expired", "written_off", "reversed", "adjustments")
CLASSIFY: list[tuple[type, str]] = [
    (CustomerCredit.Created, "created"),
    (ProjectCredit.Created, "created"),
    (Credit.Granted, "top_ups"),  # "reductions" when negative: see column_of
    (CustomerCredit.WithdrawableAdjusted, "withdrawable_adjustments"),
    (Credit.Drawn, "consumed"),
    (Credit.ItemsDrawn, "consumed"),
    (Credit.DrawReversed, "draws_reversed"),
    (Credit.DrawsRolledBack, "draws_reversed"),
    (Credit.FloorCharged, "floor_draws"),
    (Credit.Expired, "expired"),
    (Credit.WrittenOff, "written_off"),
    (ProjectCredit.Released, "written_off"),
    (Credit.SettlementReversed, "reversed"),
    (Credit.Deleted, "adjustments"),
]
COLUMN_OF = {cls.__name__: column for cls, column in CLASSIFY}
KINDS = ("customer_credit", "project_credit")
USAGE_COLUMNS = ("consumed", "draws_reversed", "floor_draws", "expired", "reversed")
ITEM_COLUMNS = ("posted", "drawn", "uncovered")
ATTRIBUTION = ("movements belong to the UTC month in which they were recorded, each keyed "
               "also by its billing period; opening and closing are the balances at the "
               "first instant of the month and of the next one")
Money = Callable[[Decimal], Any]
tx = credit_transactions
v = credit_versions
credit_key = func.coalesce(tx.c.credit_uuid, tx.c.project_credit_uuid)


def column_of(event_type: str, amount: Decimal) -> str:
    """The report column of a transaction row, by its event class's name (and, for a
    grant, by whether it raised or lowered the value)."""
    column = COLUMN_OF[event_type.rsplit(".", 1)[-1]]
    return "reductions" if column == "top_ups" and amount < 0 else column


def instant(period: Period) -> datetime:
    """The first instant of the month (UTC)."""
    return datetime.combine(period.first_day, time(), UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 with an explicit offset on every backend (SQLite hands back naive UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def month_of(moment: datetime) -> Period:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return Period.of(aware.astimezone(UTC).date())


def same(amount: Decimal) -> Any:
    return amount


def zeros() -> dict[str, Decimal]:
    return dict.fromkeys(COLUMNS, ZERO)


@dataclass
class Figures:
    """Opening, movements by column and closing: of one credit, or a kind's total."""

    opening: Decimal = ZERO
    movements: dict[str, Decimal] = field(default_factory=zeros)
    closing: Decimal = ZERO

    @property
    def ties_out(self) -> bool:
        return self.opening + sum(self.movements.values(), ZERO) == self.closing

    def add(self, other: Figures) -> None:
        self.opening += other.opening
        self.closing += other.closing
        for name in COLUMNS:
            self.movements[name] += other.movements[name]

    def as_dict(self, money: Money = same) -> dict[str, Any]:
        return {"opening": money(self.opening),
                **{name: money(amount) for name, amount in self.movements.items()},
                "closing": money(self.closing), "ties_out": self.ties_out}


@dataclass
class CreditLabels:
    """Which credit a report row is about, with the names copied onto it."""

    kind: str
    uuid: str
    customer_uuid: str
    customer_name: str
    project_uuid: str
    project_name: str


@dataclass
class Row(CreditLabels):
    """One credit's month, with its movements also split by billing period (None: none)."""

    figures: Figures = field(default_factory=Figures)
    by_billing_period: dict[str | None, dict[str, Decimal]] = field(default_factory=dict)

    def labels(self) -> dict[str, Any]:
        return {"kind": self.kind, "uuid": self.uuid, "customer_uuid": self.customer_uuid,
                "customer_name": self.customer_name, "project_uuid": self.project_uuid,
                "project_name": self.project_name}

    def as_dict(self, money: Money = same) -> dict[str, Any]:
        return {**self.labels(), **self.figures.as_dict(money), "by_billing_period": [
            {"billing_period": period, **{name: money(v) for name, v in movements.items()}}
            for period, movements in sorted(self.by_billing_period.items(),
                                            key=lambda item: item[0] or "")]}


@dataclass
class Report:
    """A month's roll-forward; values are Decimals (the API and CLI format them)."""

    period: Period
    rows: list[Row]
    totals: dict[str, Figures]
    compared_with: list[str]
    mismatches: list[str]

    @property
    def all_rows_tie_out(self) -> bool:
        return all(row.figures.ties_out for row in self.rows)

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "all_rows_tie_out": self.all_rows_tie_out,
            "totals_tie_out": all(f.ties_out for f in self.totals.values()),
            "closing_compared_with": self.compared_with,
            "closing_matches": not self.mismatches,
            "mismatches": self.mismatches,
        }

    def as_dict(self, money: Money = same) -> dict[str, Any]:
        """Amounts as Decimals, or as `money` renders them."""
        return {
            "period": str(self.period),
            "opening_at": instant(self.period).isoformat(),
            "closing_at": instant(self.period.next()).isoformat(),
            "attribution": ATTRIBUTION,
            "rows": [row.as_dict(money) for row in self.rows],
            "totals": {kind: figures.as_dict(money)
                       for kind, figures in self.totals.items()},
            "summary": self.summary(),
        }


def reconcile(conn: Connection, period: Period, today: date) -> Report:
    """The month's roll-forward, with closing balances checked a second way."""
    start, end = instant(period), instant(period.next())
    rows = _rows(conn, start, end)
    sign = case((tx.c.amount < 0, -1), else_=1)
    for uuid, event_type, billing_period, signed, amount in conn.execute(
            select(credit_key, tx.c.event_type, tx.c.billing_period, sign,
                   func.sum(tx.c.amount))
            .where(tx.c.created > start, tx.c.created <= end)
            .group_by(credit_key, tx.c.event_type, tx.c.billing_period, sign)):
        row, column = rows[uuid], column_of(event_type, Decimal(signed))
        row.figures.movements[column] += amount
        key = str(Period.of(billing_period)) if billing_period else None
        row.by_billing_period.setdefault(key, zeros())[column] += amount
    ordered = sorted(rows.values(), key=lambda r: (
        r.customer_name, r.customer_uuid, r.kind != "customer_credit", r.project_name, r.uuid))
    totals = {kind: Figures() for kind in KINDS}
    for row in ordered:
        totals[row.kind].add(row.figures)
    compared_with = ["credit_transactions"]
    expected = [balances_after(conn, end)]
    if period == Period.of(today):
        compared_with.append("live_read_model")
        expected.append(live_balances(conn))
    mismatches = [row.uuid for row in ordered
                  if any(found.get(row.uuid, ZERO) != row.figures.closing for found in expected)]
    return Report(period, ordered, totals, compared_with, mismatches)


def _rows(conn: Connection, start: datetime, end: datetime) -> dict[str, Row]:
    """Every credit that existed in the month, with opening and closing balances.

    A credit deleted at or before the month's first instant is gone; one deleted during
    the month shows, closing at 0.
    """
    opening = {uuid: (value, deleted) for uuid, value, deleted in conn.execute(
        _balances_at(start))}
    names = (select(customers.c.name).where(customers.c.uuid == v.c.customer_uuid)
             .scalar_subquery(), select(projects.c.name).where(
                 projects.c.uuid == v.c.project_uuid).scalar_subquery())
    rows: dict[str, Row] = {}
    for state in conn.execute(_balances_at(end, v.c.is_org, v.c.customer_uuid,
                                           v.c.project_uuid, *names)):
        uuid, value, _, is_org, customer_uuid, project_uuid, customer_name, project_name = state
        before_value, gone = opening.get(uuid, (ZERO, False))
        if gone:
            continue
        rows[uuid] = Row(
            kind="customer_credit" if is_org else "project_credit", uuid=uuid,
            customer_uuid=customer_uuid, customer_name=customer_name or "",
            project_uuid=project_uuid or "", project_name=project_name or "",
            figures=Figures(opening=before_value, closing=value))
    return rows


def _balances_at(moment: datetime, *columns: Any) -> Select[Any]:
    """(uuid, value, deleted, *columns) of every credit's last version at the moment."""
    latest = latest_versions(moment)
    return select(v.c.uuid, v.c.value, v.c.deleted, *columns).join(
        latest, and_(v.c.uuid == latest.c.uuid, v.c.version == latest.c.version))


def balances_after(conn: Connection, moment: datetime) -> dict[str, Decimal]:
    """Each credit's balance_after on its last transaction at or before the moment."""
    last = (select(credit_key.label("uuid"), func.max(tx.c.position).label("position"))
            .where(tx.c.created <= moment).group_by(credit_key).subquery())
    query = select(last.c.uuid, tx.c.balance_after).join(tx, tx.c.position == last.c.position)
    return {uuid: balance for uuid, balance in conn.execute(query)}


def live_balances(conn: Connection) -> dict[str, Decimal]:
    """Every credit's value in the credits read model (deleted credits hold 0)."""
    found = {row.uuid: row.value for row in conn.execute(
        select(customer_credits.c.uuid, customer_credits.c.value))}
    found.update({row.uuid: row.value for row in conn.execute(
        select(project_credits.c.uuid, project_credits.c.value))})
    return found


# --- usage by billing period ------------------------------------------------------------

@dataclass
class UsageRow(CreditLabels):
    """What one credit paid for one billing period, wherever it was recorded."""

    movements: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(
        USAGE_COLUMNS, ZERO))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "uuid": self.uuid, "customer_uuid": self.customer_uuid,
                "customer_name": self.customer_name, "project_uuid": self.project_uuid,
                "project_name": self.project_name, **self.movements,
                "total": sum(self.movements.values(), ZERO)}


@dataclass
class Usage:
    """Usage of a billing period: per credit, per kind, and by the month it was recorded."""

    billing_period: Period
    closed: bool
    rows: list[UsageRow]
    recorded_in: dict[str, dict[str, Decimal]]  # kind -> month -> net amount
    projects: list[dict[str, Any]]  # per project: live items posted, drawn, uncovered

    def as_dict(self) -> dict[str, Any]:
        totals = {kind: dict.fromkeys(USAGE_COLUMNS, ZERO) for kind in KINDS}
        for row in self.rows:
            for name, amount in row.movements.items():
                totals[row.kind][name] += amount
        return {
            "billing_period": str(self.billing_period),
            "closed": self.closed,
            "rows": [row.as_dict() for row in self.rows],
            "totals": {kind: {**values, "total": sum(values.values(), ZERO),
                              "recorded_in": dict(sorted(self.recorded_in[kind].items()))}
                       for kind, values in totals.items()},
            "projects": self.projects,
            "project_totals": {name: sum((row[name] for row in self.projects), ZERO)
                               for name in ITEM_COLUMNS},
        }


def usage(conn: Connection, billing_period: Period) -> Usage:
    """Consumed, floor-charged, expired and given back for the period, as recorded so far."""
    pc, cc = project_credits, customer_credits
    query = (select(tx.c.credit_uuid, tx.c.project_credit_uuid, tx.c.event_type,
                    tx.c.created, tx.c.amount, cc.c.customer_uuid.label("org_customer"),
                    cc.c.customer_name.label("org_customer_name"), pc.c.customer_uuid,
                    pc.c.customer_name, pc.c.project_uuid, pc.c.project_name)
             .outerjoin(cc, cc.c.uuid == tx.c.credit_uuid)
             .outerjoin(pc, pc.c.uuid == tx.c.project_credit_uuid)
             .where(tx.c.billing_period == billing_period.first_day))
    rows: dict[str, UsageRow] = {}
    recorded_in: dict[str, dict[str, Decimal]] = {kind: defaultdict(lambda: ZERO)
                                                  for kind in KINDS}
    for found in conn.execute(query):
        column = column_of(found.event_type, found.amount)
        if column not in USAGE_COLUMNS:
            continue
        row = rows.get(found.credit_uuid or found.project_credit_uuid) or _usage_row(found)
        rows[row.uuid] = row
        row.movements[column] += found.amount
        recorded_in[row.kind][str(month_of(found.created))] += found.amount
    closed = conn.execute(select(billing_periods.c.closed).where(
        billing_periods.c.period == str(billing_period))).scalar()
    ordered = sorted(rows.values(), key=lambda r: (
        r.customer_name, r.customer_uuid, r.kind != "customer_credit", r.project_name, r.uuid))
    return Usage(billing_period, bool(closed), ordered, recorded_in,
                 project_usage(conn, billing_period))


def project_usage(conn: Connection, billing_period: Period) -> list[dict[str, Any]]:
    """Per project, the period's live items: what was posted, what credits covered (drawn)
    and what nobody paid for (uncovered): posted = drawn + uncovered."""
    item = consumptions.c
    query = (select(item.customer_uuid, customers.c.name, item.project_uuid, projects.c.name,
                    func.sum(item.amount), func.sum(item.drawn_from_project_credit),
                    func.sum(item.drawn_from_customer_credit), func.sum(item.uncovered))
             .outerjoin(customers, customers.c.uuid == item.customer_uuid)
             .outerjoin(projects, projects.c.uuid == item.project_uuid)
             .where(item.period == str(billing_period), item.reversed == false())
             .group_by(item.customer_uuid, customers.c.name, item.project_uuid,
                       projects.c.name))
    found = [{"billing_period": str(billing_period), "customer_uuid": customer_uuid,
              "customer_name": customer_name or "", "project_uuid": project_uuid,
              "project_name": project_name or "", "posted": posted,
              "drawn": from_project + from_customer, "uncovered": uncovered}
             for customer_uuid, customer_name, project_uuid, project_name, posted,
             from_project, from_customer, uncovered in conn.execute(query)]
    return sorted(found, key=lambda row: (row["customer_name"], row["customer_uuid"],
                                          row["project_name"], row["project_uuid"]))


def _usage_row(found: Any) -> UsageRow:
    if found.credit_uuid:
        return UsageRow("customer_credit", found.credit_uuid, found.org_customer,
                        found.org_customer_name, "", "")
    return UsageRow("project_credit", found.project_credit_uuid, found.customer_uuid,
                    found.customer_name, found.project_uuid, found.project_name)
