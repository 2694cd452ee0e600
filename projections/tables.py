"""The read-model tables. Money is stored as integer units of 10^-5, exact on every database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from ledger.money import money

SCALE = Decimal(100000)


class Money(TypeDecorator[Decimal]):
    """A Decimal with 5 places stored exactly as a BIGINT count of 10^-5 units."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(money(value) * SCALE)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) / SCALE).quantize(Decimal("0.00001"))


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
        Column("version", Integer, nullable=False),
        Column("created", DateTime(timezone=True), nullable=False),
        Column("modified", DateTime(timezone=True), nullable=False),
    ]


customer_credits = Table(
    "customer_credits", metadata,
    Uuid("uuid", primary_key=True),
    Uuid("customer_uuid", nullable=False, index=True),
    *_credit_columns(),
)

customer_credit_offerings = Table(
    "customer_credit_offerings", metadata,
    Uuid("credit_uuid", primary_key=True),
    Uuid("offering_uuid", primary_key=True),
    Column("position", Integer, nullable=False),
)

project_credits = Table(
    "project_credits", metadata,
    Uuid("uuid", primary_key=True),
    Uuid("project_uuid", nullable=False, index=True),
    Uuid("customer_uuid", nullable=False, index=True),
    Column("mark_unused_credit_as_spent_on_project_termination", Boolean, nullable=False),
    *_credit_columns(),
)

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
    Column("created", DateTime(timezone=True), nullable=False),
    Index("consumptions_customer_period", "customer_uuid", "period"),
    Index("consumptions_project_period", "project_uuid", "period"),
    Index("consumptions_credit_period", "customer_credit_uuid", "period"),
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
    Column("created", DateTime(timezone=True), nullable=False, index=True),
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
    Column("balance_after", Money, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
)

READ_MODEL_TABLES = [t for t in metadata.sorted_tables if t is not tracking]
