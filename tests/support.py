"""Test helpers: a settable clock and a directory builder that talks to the real API."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import falcon.testing
import time_machine
from sqlalchemy import event

from api.server.wiring import Services

BASE = "http://falconframework.org"

# Ours after upstream's (issue 19): the thresholds the notifier watches, and the runway.
ALERTING_FIELDS = ["low_balance_thresholds", "runway_months"]
# upstream's ProjectCreditSerializer Meta.fields, in emitted order (reference §2.2)
PROJECT_CREDIT_FIELDS = [
    "uuid", "url", "value", "project", "project_name", "project_uuid", "project_slug",
    "customer_name", "customer_slug", "customer_uuid", "customer_credit",
    "allocated_customer_credit", "consumption_last_month", "creditable_cost_this_month",
    "spendable_value", "is_limited_by_organization_credit", "offerings", "end_date",
    "expected_consumption", "minimal_consumption", "minimal_consumption_logic",
    "grace_coefficient", "apply_as_minimal_consumption",
    "mark_unused_credit_as_spent_on_project_termination",
    *ALERTING_FIELDS,
]
ORGANIZATION_SCOPED_FIELDS = ("customer_credit", "allocated_customer_credit", "offerings")
CUSTOMER_CREDIT_FIELDS = [
    "uuid", "url", "value", "customer", "customer_name", "customer_uuid", "customer_slug",
    "offerings", "end_date", "expected_consumption", "minimal_consumption",
    "minimal_consumption_logic", "grace_coefficient", "apply_as_minimal_consumption",
    "allocated_to_projects", "consumption_last_month", "withdrawable_balance",
    "protect_allocations",
    *ALERTING_FIELDS,
]


@dataclass
class Clock:
    """Stands in for today's date so month-relative fields are testable.

    With ``travel`` set (the ``clock`` fixture), setting ``today`` also moves the process's
    wall clock there (time-machine), so events are recorded on that day too.
    """

    today: date
    travel: Callable[[date], None] | None = None

    def __call__(self) -> date:
        return self.today

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "today" and getattr(self, "travel", None) is not None:
            assert self.travel is not None
            self.travel(value)


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@contextmanager
def travelling_clock(start: date) -> Iterator[Clock]:
    """A Clock on `start` whose days are also the process's wall clock (noon UTC)."""
    with time_machine.travel(noon(start), tick=True) as traveller:
        yield Clock(start, travel=lambda day: traveller.move_to(noon(day)))


@dataclass
class Directory:
    """Creates users, organisations, projects and offerings through the public API."""

    services: Services
    client: falcon.testing.TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def user(self, name: str, staff: bool = False, support: bool = False) -> dict[str, str]:
        token = secrets.token_hex(20)
        self.services.ledger.create_user(name, token, staff, support, "test")
        self.services.projector.catch_up()
        self.tokens[name] = token
        return auth(token)

    def grant(self, name: str, scope: str, uuid: str, role: str) -> None:
        from uuid import UUID

        self.services.ledger.grant_role(name, scope, UUID(uuid), role, "test")
        self.services.projector.catch_up()

    @property
    def staff(self) -> dict[str, str]:
        if "staff" not in self.tokens:
            return self.user("staff", staff=True)
        return auth(self.tokens["staff"])

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        result = self.client.simulate_post(path, json=body, headers=headers or self.staff)
        assert result.status_code in (200, 201), (path, result.status_code, result.text)
        return result.json

    def customer(self, name: str = "Org") -> dict[str, Any]:
        return self.post("/api/customers/", {"name": name})  # type: ignore[no-any-return]

    def project(self, customer: dict[str, Any], name: str = "Project") -> dict[str, Any]:
        return self.post(  # type: ignore[no-any-return]
            "/api/projects/", {"name": name, "customer": customer["url"]})

    def offering(self, name: str = "VM", type: str = "OpenStack.Instance") -> dict[str, Any]:
        return self.post(  # type: ignore[no-any-return]
            "/api/marketplace-public-offerings/", {"name": name, "type": type})

    def customer_credit(self, customer: dict[str, Any], value: str, **terms: Any) -> Any:
        return self.post("/api/customer-credits/",
                         {"customer": customer["url"], "value": value, **terms})

    def project_credit(self, project: dict[str, Any], value: str, **terms: Any) -> Any:
        return self.post("/api/project-credits/",
                         {"project": project["url"], "value": value, **terms})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def messages(body: Any) -> Iterator[str]:
    """Every message of a DRF-shaped error body (a list, or lists under field names)."""
    if isinstance(body, str):
        yield body
    elif isinstance(body, dict):
        for value in body.values():
            yield from messages(value)
    elif isinstance(body, list):
        for value in body:
            yield from messages(value)


def csv_rows(result: Any) -> list[dict[str, str]]:
    """A CSV answer's rows as a spreadsheet reads them: the `csv` module, keyed by the
    header, the byte-order mark dropped."""
    return list(csv.DictReader(io.StringIO(result.content.decode("utf-8-sig"))))


def read_model_rows(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row, in a stable order, for comparing two states."""
    from sqlalchemy import select

    from projections.tables import READ_MODEL_TABLES

    with engine.connect() as conn:
        return {table.name: sorted(tuple(row) for row in conn.execute(select(table)))
                for table in READ_MODEL_TABLES}


@contextmanager
def capture_statements(engine: Any, into: list[str]) -> Iterator[None]:
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        into.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", record)


def count_log_end_queries(services: Services, monkeypatch: Any) -> list[int]:
    """A list that grows by one each time the projector asks the log's end."""
    asked: list[int] = []
    ask = services.projector.newest_notification_id

    def counted() -> int:
        asked.append(1)
        return ask()

    monkeypatch.setattr(services.projector, "newest_notification_id", counted)
    return asked
