"""The read-model tables, shaped for their queries.

Money is stored as integer units of 10^-5, exact on every database. Each credit row
carries what its list shows and filters on (names, slugs, uuids), so a page is an index
range scan with LIMIT. Organisation-level figures (the organisation's balance, its
allocation to projects, its offering restriction) live once, on the organisation credit's
row: a draw then changes one row rather than every project credit of the organisation,
and a page fetches them for its few organisations by key.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    true,
)
from sqlalchemy.types import TypeDecorator

from ledger.money import money

PLACES = 5
SCALE = Decimal(10) ** PLACES


class Money(TypeDecorator[Decimal]):
    """A Decimal with 5 places stored exactly as a BIGINT count of 10^-5 units."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(money(value) * SCALE)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        """The conversion itself, in place of TypeDecorator's generic wrapper around a
        `process_result_value`: a wide page reads five amounts a row, and the driver hands
        BIGINT over as int already."""
        return units_to_money


def units_to_money(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value).scaleb(-PLACES)  # exact: the stored count, five places


def Uuid(name: str, **kwargs: Any) -> Column[str]:  # noqa: N802 - reads like a column type
    """UUIDs are stored as 32-char lowercase hex, as they appear on the wire."""
    return Column(name, String(32), **kwargs)


metadata = MetaData()

tracking = Table(
    "projection_tracking", metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

customers = Table(
    "customers", metadata,
    Uuid("uuid", primary_key=True),
    Column("name", String(500), nullable=False),
    Column("slug", String(500), nullable=False, index=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Uuid("credit_uuid", nullable=True),  # the live organisation credit, if any
)

projects = Table(
    "projects", metadata,
    Uuid("uuid", primary_key=True),
    Column("name", String(500), nullable=False),
    Column("slug", String(500), nullable=False),
    Uuid("customer_uuid", nullable=False, index=True),
    Column("terminated", Boolean, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

offerings = Table(
    "offerings", metadata,
    Uuid("uuid", primary_key=True),
    Column("name", String(500), nullable=False),
    Column("type", String(100), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users", metadata,
    Uuid("uuid", primary_key=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("is_staff", Boolean, nullable=False),
    Column("is_support", Boolean, nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
)

user_roles = Table(
    "user_roles", metadata,
    Uuid("user_uuid", primary_key=True),
    Column("scope", String(16), primary_key=True),
    Uuid("scope_uuid", primary_key=True),
    Column("role", String(16), primary_key=True),
)


def _credit_columns() -> list[Column[Any]]:
    return [
        Column("value", Money, nullable=False),
        Column("end_date", Date, nullable=True),
        Column("expected_consumption", Money, nullable=False),
        Column("minimal_consumption_logic", String(10), nullable=False),
        Column("grace_coefficient", Integer, nullable=False),
        Column("apply_as_minimal_consumption", Boolean, nullable=False),
        Column("deleted", Boolean, nullable=False),
        Column("low_balance_thresholds", Text, nullable=False),  # JSON list, as written
        Column("version", Integer, nullable=False),
        Column("created", DateTime(timezone=True), nullable=False),
        Column("modified", DateTime(timezone=True), nullable=False),
    ]


customer_credits = Table(
    "customer_credits", metadata,
    Uuid("uuid", primary_key=True),
    Uuid("customer_uuid", nullable=False, index=True),
    Column("customer_name", String(500), nullable=False),
    Column("customer_slug", String(500), nullable=False),
    Column("allocated_to_projects", Money, nullable=False),
    Column("offerings", Text, nullable=False),  # JSON [[uuid, name, type], ...] in given order
    Column("withdrawable_balance", Money, nullable=False),
    Column("protect_allocations", Boolean, nullable=False),
    *_credit_columns(),
)

project_credits = Table(
    "project_credits", metadata,
    Uuid("uuid", primary_key=True),
    Uuid("project_uuid", nullable=False, index=True),
    Uuid("customer_uuid", nullable=False, index=True),
    Column("project_name", String(500), nullable=False),
    Column("project_slug", String(500), nullable=False),
    Column("customer_name", String(500), nullable=False),
    Column("customer_slug", String(500), nullable=False, index=True),
    Column("mark_unused_credit_as_spent_on_project_termination", Boolean, nullable=False),
    # Upstream lists only credits whose organisation holds a live credit ("no orphans").
    Column("listed", Boolean, nullable=False),
    *_credit_columns(),
)

LISTED: dict[str, ColumnElement[bool]] = {
    "project_credits": project_credits.c.listed == true(),
    "customer_credits": customer_credits.c.deleted == false(),
}
LIST_ORDERINGS = {
    "project_credits": ("project_name", "value", "end_date", "expected_consumption"),
    "customer_credits": ("customer_name", "value", "end_date", "expected_consumption"),
}


def listed_index(table: Table, column: str | None) -> Index:
    """An index over the rows a list shows (partial on both engines), one per `o` key.

    Ties break on (created, uuid) in the key's direction, so one index serves `o=x` and
    `o=-x` alike, and the default order (created, uuid) has its own.
    """
    keys = [table.c[column]] if column else []
    where = LISTED[table.name]
    return Index(f"{table.name}_by_{column or 'created'}", *keys, table.c.created, table.c.uuid,
                 postgresql_where=where, sqlite_where=where)


for _table in (project_credits, customer_credits):
    for _column in (None, *LIST_ORDERINGS[_table.name]):
        listed_index(_table, _column)

consumptions = Table(
    "consumptions", metadata,
    Column("item_id", String(255), primary_key=True),
    Uuid("project_uuid", nullable=False),
    Uuid("customer_uuid", nullable=False),
    Uuid("offering_uuid", nullable=True),
    Column("period", String(7), nullable=False),
    Column("amount", Money, nullable=False),
    Column("drawn_from_project_credit", Money, nullable=False),
    Column("drawn_from_customer_credit", Money, nullable=False),
    Column("uncovered", Money, nullable=False),
    Uuid("project_credit_uuid", nullable=True),
    Uuid("customer_credit_uuid", nullable=True),
    Column("reversed", Boolean, nullable=False),
    Column("reversed_at", DateTime(timezone=True), nullable=True),
    Column("reversed_by", String(150), nullable=True),  # the username
    Column("created", DateTime(timezone=True), nullable=False),
    Index("consumptions_created", "created", "item_id"),
    Index("consumptions_customer_period", "customer_uuid", "period"),
    Index("consumptions_project_period", "project_uuid", "period"),
    Index("consumptions_credit_period", "customer_credit_uuid", "period"),
)

credit_months = Table(
    "credit_months", metadata,
    Uuid("credit_uuid", primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("drawn", Money, nullable=False),  # drawn by consumption, net of reversals
)

project_months = Table(
    "project_months", metadata,
    Uuid("project_uuid", primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("offering_uuid", String(32), primary_key=True),  # "" for no offering
    Column("cost", Money, nullable=False),  # posted cost, net of reversals
)

customer_months = Table(
    "customer_months", metadata,
    Uuid("customer_uuid", primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("item_count", Integer, nullable=False),  # live items: upstream's "invoice exists"
)

counters = Table(
    "counters", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

billing_periods = Table(
    "billing_periods", metadata,
    Column("period", String(7), primary_key=True),
    Column("closed", Boolean, nullable=False),
    Column("modified", DateTime(timezone=True), nullable=False),
)

credit_transactions = Table(
    "credit_transactions", metadata,
    Uuid("uuid", primary_key=True),
    Column("position", BigInteger, nullable=False, index=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("amount", Money, nullable=False),
    Column("transaction_type", String(30), nullable=False),
    Column("comment", Text, nullable=False),
    Uuid("credit_uuid", nullable=True, index=True),
    Uuid("project_credit_uuid", nullable=True, index=True),
    Uuid("customer_uuid", nullable=True, index=True),
    Column("customer_name", String(500), nullable=True),
    Uuid("project_uuid", nullable=True),
    Column("project_name", String(500), nullable=True),
    Column("billing_period", Date, nullable=True, index=True),
    Column("item_id", String(255), nullable=True),  # the consumption item of a draw
    Column("balance_after", Money, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Index("credit_transactions_created", "created", "position"),
    Index("credit_transactions_org_at", "credit_uuid", "created"),
    Index("credit_transactions_project_at", "project_credit_uuid", "created"),
)

credit_allocations = Table(
    "credit_allocations", metadata,
    # The organisation credit's allocation mirror (CustomerCredit.allocations) as the
    # aggregate keeps it, so each version's allocated_to_projects is the aggregate's.
    Uuid("credit_uuid", primary_key=True),
    Uuid("project_credit_uuid", primary_key=True),
    Column("value", Money, nullable=False),
)

credit_versions = Table(
    "credit_versions", metadata,
    # One row per event of a credit's stream, holding the credit's state after it: what
    # `?as_of=` and the month-end balances read (the latest version at or before a moment).
    Uuid("uuid", primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("created", DateTime(timezone=True), nullable=False),  # the event's timestamp
    Column("is_org", Boolean, nullable=False),
    Uuid("customer_uuid", nullable=False),
    Uuid("project_uuid", nullable=True),
    Column("credit_created", DateTime(timezone=True), nullable=False),
    Column("value", Money, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("expected_consumption", Money, nullable=False),
    Column("minimal_consumption_logic", String(10), nullable=False),
    Column("grace_coefficient", Integer, nullable=False),
    Column("apply_as_minimal_consumption", Boolean, nullable=False),
    Column("low_balance_thresholds", Text, nullable=False),
    Column("mark_unused_credit_as_spent_on_project_termination", Boolean, nullable=True),
    Column("allocated_to_projects", Money, nullable=True),  # organisation credits only
    Column("offerings", Text, nullable=True),  # organisation credits only, as on the row
    Column("withdrawable_balance", Money, nullable=True),  # organisation credits only
    Column("protect_allocations", Boolean, nullable=True),  # organisation credits only
    Index("credit_versions_at", "uuid", "created"),
    Index("credit_versions_by_customer", "is_org", "customer_uuid", "created"),
    Index("credit_versions_created", "created"),
)

READ_MODEL_TABLES = [t for t in metadata.sorted_tables if t is not tracking]
