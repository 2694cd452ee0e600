"""What the two credit collections share: lists and counts (live or as of a moment)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import falcon
from sqlalchemy import ColumnElement, Connection, Select, Subquery, Table, UnaryExpression

from api.http.common import Resource, parse_uuid
from api.http.errors import not_found
from api.http.listing import (
    STATEMENTS,
    ListQuery,
    last_param,
    narrowed,
    ordering,
    paginate,
    params_key,
)
from api.resources import history
from ledger.access import Principal
from projections.queries import listed_count


def visibility_key(principal: Principal) -> Hashable:
    """What a principal may see, as far as a statement over the credits depends on it."""
    if principal.sees_everything:
        return "everything"
    return tuple(principal.customer_uuids()), tuple(principal.project_uuids())


class CreditCollection(Resource):
    """GET and HEAD over the filtered credits, and PUT/PATCH routed to one update."""

    table: Table
    not_found_message: str
    orderings: Mapping[str, ColumnElement[Any]]  # the `o` keys
    default_order: list[UnaryExpression[Any]]  # after them, and alone without `o`
    filters: tuple[str, ...]  # query parameters that narrow the list

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if history.wants_as_of(req):
            resp.media = self._as_of(req, resp, principal)
            return
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: self._list_query(req, principal),
                            cache_key=self._statement_key(req, principal))
            resp.media = self._list_page(conn, req, principal, page.rows)

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if history.wants_as_of(req):
            self._as_of(req, resp, principal)
            return
        with self.services.reads.connect() as conn:
            paginate(conn, req, resp, lambda: self._list_query(req, principal), rows=False,
                     cache_key=self._statement_key(req, principal))

    def _list_query(self, req: falcon.Request, principal: Principal) -> ListQuery:
        return ListQuery(self._filtered(req, principal), self._maintained_total(req, principal),
                         self._decorate, self._order(req), narrowed(req))

    def _order(self, req: falcon.Request) -> list[UnaryExpression[Any]]:
        return ordering(req, self.orderings, self.default_order)

    def _statement_key(self, req: falcon.Request, principal: Principal) -> Hashable:
        """Everything a list's statements depend on: the query string, the month, and
        what the caller may see (staff and support alike see everything)."""
        return (type(self).__name__, params_key(req), self.services.today(),
                visibility_key(principal))

    def _maintained_total(self, req: falcon.Request, principal: Principal) -> Select[Any] | None:
        """Everything listed, unfiltered, for staff and support: the maintained count."""
        if not principal.sees_everything or any(last_param(req, name) for name in self.filters):
            return None
        return listed_count(self.table)

    def _decorate(self, rows: Subquery) -> Select[Any]:
        """The rows (a page, or one credit) with what their views need beside the row."""
        raise NotImplementedError

    def on_put_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self._update(req, resp, uuid, partial=False)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self._update(req, resp, uuid, partial=True)

    def _visible_row(self, principal: Principal, uuid: str) -> Any:
        """The live credit if the caller may see it; 404 otherwise (also for bad uuids)."""
        credit_uuid = parse_uuid(uuid, self.not_found_message).hex
        key = (type(self).__name__, "one", credit_uuid, self.services.today(),
               visibility_key(principal))
        statement = STATEMENTS.get(key, lambda: self._decorate(self._select(principal).where(
            self.table.c.uuid == credit_uuid).subquery("one")))
        with self.services.reads.connect() as conn:
            row = conn.execute(statement).first()
        if row is None:
            raise not_found(self.not_found_message)
        return row

    def _select(self, principal: Principal) -> Select[Any]:
        raise NotImplementedError

    def _filtered(self, req: falcon.Request, principal: Principal,
                  base: Select[Any] | None = None) -> Any:
        raise NotImplementedError

    def _as_of(self, req: falcon.Request, resp: falcon.Response,
               principal: Principal) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _list_page(self, conn: Connection, req: falcon.Request, principal: Principal,
                   rows: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _update(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                partial: bool) -> None:
        raise NotImplementedError
