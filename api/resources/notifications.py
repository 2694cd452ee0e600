"""/api/notifications/: the notifications webhooks carry, for callers who poll.

Staff see every notification; an organisation's owners see its credits' notifications
(`period.*` ones are site-wide, so staff only). Test sends (`webhook.test`) are not listed.
"""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import Select, false, select

from api.http.common import Resource, apply_uuid_filter, base_url
from api.http.listing import ListQuery, last_param, narrowed, paginate
from api.http.routes import Route
from api.http.schema import (
    DATETIME,
    HEX_UUID,
    LIST_HEADERS,
    PAGINATION,
    STRING,
    UUID_FILTER,
    Json,
    array,
    errors,
    json_response,
    nullable,
    obj,
    operation,
    query,
    read_only,
    ref,
)
from api.resources.transactions import moment_filter
from ledger.access import Principal
from notifications.derive import TEST, TYPES
from notifications.payloads import iso, payload
from notifications.tables import notifications

TAG = "notifications"
FILTERS = [
    query("customer_uuid", UUID_FILTER),
    query("type", STRING, "One of: " + ", ".join(TYPES)),
    query("since", DATETIME, "Created after this moment (exclusive; ISO 8601, UTC if no "
                             "zone)"),
    *PAGINATION,
]


def owned(principal: Principal) -> list[str]:
    return [uuid for uuid in principal.customer_uuids() if principal.is_owner(uuid)]


def visible(principal: Principal) -> Select[Any]:
    listed = select(notifications).where(notifications.c.type != TEST)
    if principal.is_staff:
        return listed
    mine = owned(principal)
    return listed.where(notifications.c.customer_uuid.in_(mine) if mine else false())


def filtered(req: falcon.Request, principal: Principal) -> Select[Any]:
    found = apply_uuid_filter(visible(principal), req, "customer_uuid",
                              notifications.c.customer_uuid)
    if (kind := last_param(req, "type")) is not None:
        found = found.where(notifications.c.type == kind)
    if (moment := moment_filter(req, "since")) is not None:
        found = found.where(notifications.c.created > moment)
    return found.order_by(notifications.c.created.desc(), notifications.c.seq.desc())


def notification(row: Any, base: str) -> dict[str, Any]:
    return {"id": row.id, "created": iso(row.created), "customer_uuid": row.customer_uuid,
            **payload(row, base)}


NOTIFICATION: Json = obj({
    "id": read_only({**STRING, "description": "Stable; the webhook-id of its deliveries."}),
    "created": read_only(DATETIME), "customer_uuid": read_only(nullable(HEX_UUID)),
    "type": read_only({"type": "string", "enum": [*TYPES, TEST]}),
    "timestamp": read_only(DATETIME),
    "data": read_only({"type": "object", "description": "The credit (or period), links, "
                       "and for thresholds `threshold` as set and `balance` after the event "
                       "that crossed it."}),
}, ["id", "created", "customer_uuid", "type", "timestamp", "data"])


class Notifications(Resource):
    routes = [Route("/api/notifications/", {
        "get": operation("notifications_list", TAG, "Notifications about visible credits, "
                         "newest first", {"200": json_response(array(ref("Notification")),
                                                               headers=LIST_HEADERS),
                                          **errors(400, 404)}, parameters=FILTERS),
    })]
    schemas = {"Notification": NOTIFICATION}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: ListQuery(filtered(req, principal),
                                                               narrow=narrowed(req)))
        resp.media = [notification(row, base_url(req)) for row in page.rows]
