"""A credit's history and its state as of a moment, read from the event store.

History lists a credit's events, read from the event store, in order with the balance
after each. `?as_of=` reads the credit-versions read model (the state after each event,
projections/as_of.py: the last version whose event timestamp is <= as_of, what a replay
of the stream to that moment gives) and renders it with the live representation
functions; `verify` proves those versions equal a replay.

Visibility: whoever may see the credit now may see its history and past states; staff
and support may also see deleted credits (their history outlives them).

As-of cut: each stream is cut at the moment by its own event timestamps. One command's
events carry timestamps microseconds apart, so a moment that falls inside a command's
run can show part of it (e.g. the project credit drawn, the organisation not yet).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, TypeVar
from uuid import UUID

import falcon
from sqlalchemy import Connection, Select, select

from api.http.common import Resource, base_url, parse_uuid
from api.http.errors import not_found, validation_error
from api.http.listing import _links, _page_number, _page_size, last_param, parse_moment
from api.http.routes import Route
from api.http.schema import (
    DATETIME,
    HEX_UUID,
    INTEGER,
    MONEY,
    STRING,
    array,
    errors,
    json_response,
    nullable,
    obj,
    operation,
    param_ref,
    ref,
)
from api.resources.representations import customer_credit, project_credit
from ledger.access import Principal
from ledger.application import Ledger
from ledger.audit import plain
from ledger.credits import Credit, CustomerCredit, ProjectCredit
from ledger.money import ZERO, format_money
from ledger.settlement import minimal_consumption
from ledger.terms import Terms
from projections.as_of import organisations_at, states_at
from projections.queries import (
    customer_credit_select,
    offerings_from_json,
    project_credit_select,
)
from projections.tables import credit_versions, customer_credits, project_credits
from projections.transactions import comment_of, transaction_type, transaction_uuid

T = TypeVar("T")
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

def amount_of(event: Any) -> Decimal | None:
    """How an event moved the balance: the initial value on creation, else its amount."""
    created: Any = event
    if isinstance(event, CustomerCredit.Created | ProjectCredit.Created):
        return Decimal(created.value)
    if isinstance(event, Credit.BalanceChanged):
        return Decimal(event.amount)
    return None


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


def history_route(collection: str) -> Route:
    return Route(f"/api/{collection}/{{uuid}}/history/", {
        "parameters": [param_ref("Uuid")],
        "get": operation(f"{collection.replace('-', '_')}_history", collection,
                         "Every event of the credit, in order, with actor, time and balance "
                         "after", {"200": json_response(array(ref("CreditHistoryEntry"))),
                                   **errors(404)}),
    })


class CreditHistory(Resource):
    """GET …/{uuid}/history/ for project credits or customer credits."""

    project = True

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


class ProjectCreditHistory(CreditHistory):
    routes = [history_route("project-credits")]
    schemas = {"CreditHistoryEntry": obj({
        "version": {**INTEGER, "description": "The credit's version after this event."},
        "type": {**STRING, "description": "The event's name."},
        "timestamp": DATETIME,
        "actor": nullable(STRING),
        "changes": {"type": "object", "additionalProperties": True,
                    "description": "The event's own attributes."},
        "amount": nullable(MONEY),
        "balance_after": MONEY,
        "transaction_type": nullable(ref("CreditTransactionTypeEnum")),
        "transaction_uuid": nullable(HEX_UUID),
        "comment": {**STRING, "description": "As on the event's transaction; empty if none."},
    }, ["version", "type", "timestamp", "actor", "changes", "amount", "balance_after",
        "transaction_type", "transaction_uuid", "comment"])}


class CustomerCreditHistory(CreditHistory):
    project = False
    routes = [history_route("customer-credits")]
    schemas: dict[str, Any] = {}


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


def _terms(row: Any) -> Terms:
    return Terms(row.end_date, row.expected_consumption, row.minimal_consumption_logic,
                 Decimal(row.grace_coefficient), row.apply_as_minimal_consumption)


def _row(state: Any) -> SimpleNamespace:
    """The version's columns under the live row's names (created: the credit's creation)."""
    return SimpleNamespace(**state._mapping)


def project_credit_view(state: Any, org: Any, day: date) -> dict[str, Any]:
    """The view dict of projections.queries.project_credit_views, from versions.

    Month-derived fields (consumption_last_month, creditable_cost_this_month) are null:
    they come from consumption items and "today", not from the credit's stream.
    minimal_consumption is computed for the as-of date.
    """
    spendable = min(state.value, org.value)
    return {
        "row": _row(state),
        "customer_credit": org.value,
        "allocated_customer_credit": org.allocated_to_projects,
        "consumption_last_month": None,
        "creditable_cost_this_month": None,
        "spendable_value": spendable,
        "is_limited_by_organization_credit": spendable < state.value,
        "offerings": offerings_from_json(org.offerings),
        "minimal_consumption": minimal_consumption(_terms(state), day),
        "runway_months": None,  # a pace of consumption is not part of a version
    }


def customer_credit_view(state: Any, day: date) -> dict[str, Any]:
    """The view dict of projections.queries.customer_credit_views, from versions.

    consumption_last_month is null (see project_credit_view).
    """
    return {
        "row": _row(state),
        "allocated_to_projects": state.allocated_to_projects,
        "consumption_last_month": None,
        "offerings": offerings_from_json(state.offerings),
        "minimal_consumption": minimal_consumption(_terms(state), day),
        "runway_months": None,  # a pace of consumption is not part of a version
    }


def project_states_at(conn: Connection, moment: datetime,
                      query: Select[Any]) -> list[tuple[Any, Any]]:
    """(state, organisation state) of the credits `query` selects, as they were; those
    absent or deleted then are dropped, and so are those whose organisation had no live
    credit (upstream hides orphans)."""
    candidates = query.order_by(None)
    states = states_at(conn, moment, credit_versions.c.uuid.in_(
        candidates.with_only_columns(project_credits.c.uuid)))
    orgs = organisations_at(conn, moment,
                            candidates.with_only_columns(project_credits.c.customer_uuid))
    return [(state, org) for state in states
            if not state.deleted and (org := orgs.get(state.customer_uuid)) is not None]


def customer_states_at(conn: Connection, moment: datetime, query: Select[Any]) -> list[Any]:
    states = states_at(conn, moment, credit_versions.c.uuid.in_(
        query.order_by(None).with_only_columns(customer_credits.c.uuid)))
    return [state for state in states if not state.deleted]


def project_credit_as_of(services: Any, req: falcon.Request, principal: Principal,
                         credit_uuid: str, moment: datetime | None = None) -> dict[str, Any]:
    """Retrieve: 404 when the credit did not exist (or was deleted) at the moment (the
    request's `as_of` unless given)."""
    moment = moment or as_of_param(req)
    query = project_credit_candidates(principal).where(project_credits.c.uuid == credit_uuid)
    with services.reads.connect() as conn:
        found = project_states_at(conn, moment, query)
    if not found:
        raise not_found(PROJECT_NOT_FOUND)
    view = project_credit_view(*found[0], moment.date())
    return project_credit(base_url(req), view,
                          principal.sees_organisation_fields(view["row"].customer_uuid))


def customer_credit_as_of(services: Any, req: falcon.Request, principal: Principal,
                          credit_uuid: str, moment: datetime | None = None,
                          nested: bool = True) -> dict[str, Any]:
    moment = moment or as_of_param(req)
    query = customer_credit_candidates(principal).where(customer_credits.c.uuid == credit_uuid)
    with services.reads.connect() as conn:
        found = customer_states_at(conn, moment, query)
    if not found:
        raise not_found(CUSTOMER_NOT_FOUND)
    return customer_credit(base_url(req), customer_credit_view(found[0], moment.date()),
                           nested_offerings=nested)


def project_credits_as_of(services: Any, req: falcon.Request, resp: falcon.Response,
                          principal: Principal, query: Select[Any]) -> list[dict[str, Any]]:
    """List: the filtered candidates as they were, those absent then dropped, re-ordered;
    only the page is rendered."""
    moment = as_of_param(req)
    with services.reads.connect() as conn:
        found = project_states_at(conn, moment, query)
    page = paginate_states(req, resp, found, lambda pair: pair[0])
    views = [project_credit_view(state, org, moment.date()) for state, org in page]
    return [project_credit(base_url(req), view,
                           principal.sees_organisation_fields(view["row"].customer_uuid))
            for view in views]


def customer_credits_as_of(services: Any, req: falcon.Request, resp: falcon.Response,
                           query: Select[Any]) -> list[dict[str, Any]]:
    moment = as_of_param(req)
    with services.reads.connect() as conn:
        found = customer_states_at(conn, moment, query)
    return [customer_credit(base_url(req), customer_credit_view(state, moment.date()),
                            nested_offerings=True)
            for state in paginate_states(req, resp, found, lambda state: state)]


def paginate_states(req: falcon.Request, resp: falcon.Response, items: list[T],
                    row_of: Callable[[T], Any]) -> list[T]:
    """Order by the as-of values (`o` was validated by the SQL ordering), then one page."""
    items.sort(key=lambda item: (row_of(item).created, row_of(item).uuid))
    keys = [key.strip() for key in (last_param(req, "o") or "").split(",") if key.strip()]
    for key in reversed(keys):
        name = key.removeprefix("-")
        items.sort(key=lambda item: _nulls_last(getattr(row_of(item), name)),
                   reverse=key.startswith("-"))
    size = _page_size(req)
    pages = max(1, -(-len(items) // size))
    page = _page_number(req, pages)
    resp.set_header("X-Result-Count", str(len(items)))
    resp.set_header("Link", _links(req, page, pages))
    return items[(page - 1) * size:page * size]


def _nulls_last(value: Any) -> tuple[int, Any]:
    """PostgreSQL's order: NULLs after every value ascending, before them descending."""
    return (1, 0) if value is None else (0, value)
