"""A credit's history and its state as of a moment, read from the event store.

The read models only know "now"; the event store knows every moment. History lists a
credit's events in order with the balance after each. `?as_of=` replays a credit's
stream up to the moment (`repository.get(id, version=v)`, v = the last version whose
event timestamp is <= as_of) and renders it with the live representation functions.

Visibility: whoever may see the credit now may see its history and past states; staff
and support may also see deleted credits (their history outlives them).

As-of cut: each stream is cut at the moment by its own event timestamps. One command's
events carry timestamps microseconds apart, so a moment that falls inside a command's
run can show part of it (e.g. the project credit drawn, the organisation not yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Connection, Select, select

from api.common import Resource, base_url, parse_uuid
from api.errors import not_found, validation_error
from api.listing import _links, _page_number, _page_size, last_param, parse_moment
from api.representations import customer_credit, project_credit
from ledger.access import Principal
from ledger.application import Ledger
from ledger.credits import Credit, CustomerCredit
from ledger.money import ZERO, format_money
from ledger.settlement import minimal_consumption
from ledger.terms import Terms
from projections.queries import (
    Offering,
    customer_credit_select,
    project_credit_select,
)
from projections.reconciliation import amount_of
from projections.tables import customer_credits, customers, offerings, project_credits, projects
from projections.transactions import comment_of, transaction_type, transaction_uuid

PROJECT_NOT_FOUND = "No ProjectCredit matches the given query."
CUSTOMER_NOT_FOUND = "No CustomerCredit matches the given query."
AS_OF_FORMAT = ("Datetime has wrong format. Use one of these formats instead: "
                "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
HIDDEN_ATTRIBUTES = {"originator_id", "originator_version", "timestamp", "originator_topic",
                     "actor"}


# --- which credits a principal may look up (including deleted ones for staff) -------------

def project_credit_candidates(principal: Principal) -> Select[Any]:
    """Staff and support: every project credit ever created; others: the live visible ones."""
    if not principal.sees_everything:
        return project_credit_select(principal)
    return select(project_credits)


def customer_credit_candidates(principal: Principal) -> Select[Any]:
    if not principal.sees_everything:
        return customer_credit_select(principal)
    return select(customer_credits)


# --- history ----------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """JSON-ready: decimals as strings, uuids as hex, dates as ISO."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def kind_of(event: Any, amount: Decimal | None) -> str | None:
    """The credit-transactions type of a balance change (creation is a staff grant)."""
    if not amount:
        return None
    return transaction_type(event) if isinstance(event, Credit.BalanceChanged) else "staff_grant"


def history_entry(event: Any, amount: Decimal | None, balance: Decimal) -> dict[str, Any]:
    """One event; an ItemsDrawn lists its item lines, each with its own transaction row."""
    kind = kind_of(event, amount)
    lines = event.lines if isinstance(event, Credit.LinesChanged) else None
    hidden = HIDDEN_ATTRIBUTES | ({"lines"} if lines is not None else set())
    entry = {
        "version": event.originator_version,
        "type": type(event).__name__,
        "timestamp": event.timestamp.isoformat(),
        "actor": getattr(event, "actor", None),
        "changes": {k: plain(v) for k, v in vars(event).items() if k not in hidden},
        "amount": None if amount is None else format_money(amount),
        "balance_after": format_money(balance),
        "transaction_type": kind,
        "transaction_uuid": transaction_uuid(event) if kind and lines is None else None,
        "comment": comment_of(event),
    }
    if lines is not None:
        entry["lines"] = history_lines(event, balance - (amount or ZERO))
    return entry


def history_lines(event: Any, balance: Decimal) -> list[dict[str, Any]]:
    """The item lines of a draw event with the balance after each (as its transaction rows)."""
    found = []
    for line in event.lines:
        balance += line["amount"]
        found.append({**{k: plain(v) for k, v in line.items()},
                      "amount": format_money(line["amount"]),
                      "balance_after": format_money(balance),
                      "transaction_uuid": transaction_uuid(event, line["item_id"])})
    return found


def credit_history(ledger: Ledger, credit_id: UUID) -> list[dict[str, Any]]:
    """Every event of the credit's stream, in order, with the balance folded so far."""
    balance = ZERO
    entries = []
    for event in ledger.events.get(credit_id):
        amount = amount_of(event)
        balance += amount or ZERO
        entries.append(history_entry(event, amount, balance))
    return entries


class CreditHistory(Resource):
    """GET …/{uuid}/history/ for project credits (kind "project") or customer credits."""

    def __init__(self, services: Any, kind: str) -> None:
        super().__init__(services)
        self.project = kind == "project"

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        principal = self.principal(req)
        message = PROJECT_NOT_FOUND if self.project else CUSTOMER_NOT_FOUND
        credit_uuid = parse_uuid(uuid, message).hex
        if self.project:
            query = project_credit_candidates(principal).where(
                project_credits.c.uuid == credit_uuid)
        else:
            query = customer_credit_candidates(principal).where(
                customer_credits.c.uuid == credit_uuid)
        with self.services.reads.connect() as conn:
            if conn.execute(query).first() is None:
                raise not_found(message)
        resp.media = credit_history(self.services.ledger, UUID(credit_uuid))


# --- as of ------------------------------------------------------------------------------

def wants_as_of(req: falcon.Request) -> bool:
    return last_param(req, "as_of") is not None


def as_of_param(req: falcon.Request) -> datetime:
    """ISO 8601, returned in UTC; naive means UTC; an unencoded '+' (read as a space) is
    forgiven."""
    try:
        return parse_moment(last_param(req, "as_of") or "")
    except ValueError:
        raise validation_error({"as_of": [AS_OF_FORMAT]}) from None


@dataclass
class Replay:
    """Aggregates as they were at one moment, each loaded once per request."""

    ledger: Ledger
    moment: datetime
    cache: dict[UUID, Any] = field(default_factory=dict)

    def state(self, aggregate_id: UUID | None) -> Any | None:
        if aggregate_id is None:
            return None
        if aggregate_id not in self.cache:
            version = self.version(aggregate_id)
            self.cache[aggregate_id] = None if version is None else (
                self.ledger.repository.get(aggregate_id, version=version))
        return self.cache[aggregate_id]

    def version(self, aggregate_id: UUID) -> int | None:
        """The last version whose event happened at or before the moment."""
        version = None
        event: Any
        for event in self.ledger.events.get(aggregate_id):
            if event.timestamp > self.moment:
                break
            version = event.originator_version
        return version

    @property
    def day(self) -> date:
        return self.moment.date()

    def live_credit(self, credit_id: UUID) -> Any | None:
        credit = self.state(credit_id)
        return None if credit is None or credit.deleted else credit

    def organisation_credit(self, customer_id: UUID) -> CustomerCredit | None:
        customer = self.state(customer_id)
        return self.live_credit(customer.credit_id) if customer is not None else None


def _terms(terms: Terms) -> dict[str, Any]:
    return {**terms.as_kwargs(), "grace_coefficient": int(terms.grace_coefficient)}


def _offerings(conn: Connection, offering_ids: list[UUID]) -> list[Offering]:
    rows = {row.uuid: row for row in conn.execute(
        select(offerings).where(offerings.c.uuid.in_([o.hex for o in offering_ids])))}
    return [Offering(o.hex, rows[o.hex].name, rows[o.hex].type)
            for o in offering_ids if o.hex in rows]


def _names(conn: Connection, table: Any, uuid: str) -> Any:
    return conn.execute(select(table.c.name, table.c.slug).where(table.c.uuid == uuid)).one()


def project_credit_view(conn: Connection, replay: Replay, credit_uuid: str) -> Any | None:
    """The view dict of projections.queries.project_credit_views, from replayed aggregates.

    Month-derived fields (consumption_last_month, creditable_cost_this_month) are null:
    they come from consumption items and "today", not from the credit's stream.
    minimal_consumption is computed for the as-of date. A project credit whose
    organisation had no live credit at the moment is hidden, as upstream hides orphans.
    """
    credit = replay.live_credit(UUID(credit_uuid))
    org = replay.organisation_credit(credit.customer_id) if credit is not None else None
    if credit is None or org is None:
        return None
    project = _names(conn, projects, credit.project_id.hex)
    customer = _names(conn, customers, credit.customer_id.hex)
    row = SimpleNamespace(
        uuid=credit_uuid, value=credit.value, created=credit.created_on,
        project_uuid=credit.project_id.hex, project_name=project.name,
        project_slug=project.slug, customer_uuid=credit.customer_id.hex,
        customer_name=customer.name, customer_slug=customer.slug,
        mark_unused_credit_as_spent_on_project_termination=credit.mark_unused,
        **_terms(credit.terms))
    spendable = min(credit.value, org.value)
    return {
        "row": row,
        "customer_credit": org.value,
        "allocated_customer_credit": org.allocated,
        "consumption_last_month": None,
        "creditable_cost_this_month": None,
        "spendable_value": spendable,
        "is_limited_by_organization_credit": spendable < credit.value,
        "offerings": _offerings(conn, org.offering_ids),
        "minimal_consumption": minimal_consumption(credit.terms, replay.day),
    }


def customer_credit_view(conn: Connection, replay: Replay, credit_uuid: str) -> Any | None:
    """The view dict of projections.queries.customer_credit_views, from a replayed credit.

    consumption_last_month is null (see project_credit_view).
    """
    credit = replay.live_credit(UUID(credit_uuid))
    if credit is None:
        return None
    customer = _names(conn, customers, credit.customer_id.hex)
    row = SimpleNamespace(
        uuid=credit_uuid, value=credit.value, created=credit.created_on,
        customer_uuid=credit.customer_id.hex, customer_name=customer.name,
        customer_slug=customer.slug, withdrawable_balance=credit.withdrawable,
        protect_allocations=credit.protect_allocations, **_terms(credit.terms))
    return {
        "row": row,
        "allocated_to_projects": credit.allocated,
        "consumption_last_month": None,
        "offerings": _offerings(conn, credit.offering_ids),
        "minimal_consumption": minimal_consumption(credit.terms, replay.day),
    }


def project_credit_as_of(services: Any, req: falcon.Request, principal: Principal,
                         credit_uuid: str) -> dict[str, Any]:
    """Retrieve: 404 when the credit did not exist (or was deleted) at the moment."""
    replay = Replay(services.ledger, as_of_param(req))
    query = project_credit_candidates(principal).where(project_credits.c.uuid == credit_uuid)
    with services.reads.connect() as conn:
        view = project_credit_view(conn, replay, credit_uuid) if conn.execute(
            query).first() else None
    if view is None:
        raise not_found(PROJECT_NOT_FOUND)
    return project_credit(base_url(req), view,
                          principal.sees_organisation_fields(view["row"].customer_uuid))


def customer_credit_as_of(services: Any, req: falcon.Request, principal: Principal,
                          credit_uuid: str) -> dict[str, Any]:
    replay = Replay(services.ledger, as_of_param(req))
    query = customer_credit_candidates(principal).where(customer_credits.c.uuid == credit_uuid)
    with services.reads.connect() as conn:
        view = customer_credit_view(conn, replay, credit_uuid) if conn.execute(
            query).first() else None
    if view is None:
        raise not_found(CUSTOMER_NOT_FOUND)
    return customer_credit(base_url(req), view, nested_offerings=True)


def project_credits_as_of(services: Any, req: falcon.Request, resp: falcon.Response,
                          principal: Principal, query: Select[Any]) -> list[dict[str, Any]]:
    """List: the filtered candidates as they were, those absent then dropped, re-ordered."""
    replay = Replay(services.ledger, as_of_param(req))
    with services.reads.connect() as conn:
        views = [view for row in conn.execute(query)
                 if (view := project_credit_view(conn, replay, row.uuid)) is not None]
    return [project_credit(base_url(req), view,
                           principal.sees_organisation_fields(view["row"].customer_uuid))
            for view in paginate_views(req, resp, views)]


def customer_credits_as_of(services: Any, req: falcon.Request, resp: falcon.Response,
                           query: Select[Any]) -> list[dict[str, Any]]:
    replay = Replay(services.ledger, as_of_param(req))
    with services.reads.connect() as conn:
        views = [view for row in conn.execute(query)
                 if (view := customer_credit_view(conn, replay, row.uuid)) is not None]
    return [customer_credit(base_url(req), view, nested_offerings=True)
            for view in paginate_views(req, resp, views)]


def paginate_views(req: falcon.Request, resp: falcon.Response,
                   views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order by the as-of values (`o` was validated by the SQL ordering), then one page."""
    views.sort(key=lambda view: (view["row"].created, view["row"].uuid))
    keys = [key.strip() for key in (last_param(req, "o") or "").split(",") if key.strip()]
    for key in reversed(keys):
        name = key.removeprefix("-")
        views.sort(key=lambda view: _nulls_last(getattr(view["row"], name)),
                   reverse=key.startswith("-"))
    size = _page_size(req)
    pages = max(1, -(-len(views) // size))
    page = _page_number(req, pages)
    resp.set_header("X-Result-Count", str(len(views)))
    resp.set_header("Link", _links(req, page, pages))
    return views[(page - 1) * size:page * size]


def _nulls_last(value: Any) -> tuple[int, Any]:
    """PostgreSQL's order: NULLs after every value ascending, before them descending."""
    return (1, 0) if value is None else (0, value)
