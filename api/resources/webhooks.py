"""/api/webhooks/: subscriptions to notifications, signed per Standard Webhooks.

Staff manage site-wide subscriptions (no `customer`) and any organisation's; an
organisation's owners manage its subscriptions, staff-made ones included. The signing
`secret` is in the answer to create only. Deliveries are listed per subscription with
every attempt, and a delivery can be sent again (`redeliver`).
"""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Select, false, select

from api.http import fields
from api.http.common import Resource, base_url, parse_uuid, request_body
from api.http.errors import not_found, permission_denied
from api.http.forms import Field, object_schema, validate, with_checks
from api.http.listing import ListQuery, paginate
from api.http.routes import Route
from api.http.schema import (
    BOOLEAN,
    DATETIME,
    HEX_UUID,
    INTEGER,
    LIST_HEADERS,
    PAGINATION,
    STRING,
    URI,
    UUID_FILTER,
    Json,
    array,
    errors,
    json_body,
    json_response,
    nullable,
    obj,
    operation,
    param_ref,
    path,
    read_only,
    ref,
)
from api.resources.notifications import owned
from api.resources.representations import link
from ledger.access import Principal
from notifications import subscriptions
from notifications.derive import TYPES
from notifications.payloads import iso
from notifications.tables import webhooks
from notifications.targets import TargetRefused, check_url
from projections.tables import customers

NOT_FOUND = "No Webhook matches the given query."
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL_PATTERN = rf"^https?://[A-Za-z0-9.-]+(:{PORT})?(/[!-~]*)?$"
_URL = re.compile(URL_PATTERN)


def _url(raw: Any) -> str:
    if not isinstance(raw, str) or not _URL.match(raw) or len(raw) > 2000:
        raise fields.FieldError("Enter a valid http:// or https:// URL.")
    try:
        check_url(raw)
    except TargetRefused as refused:
        raise fields.FieldError(str(refused)) from None
    return raw


def _event_types(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise fields.FieldError("Choose at least one event type.")
    unknown = [item for item in raw if item not in TYPES]
    if unknown:
        raise fields.FieldError(f'"{unknown[0]}" is not a valid choice.')
    return [kind for kind in TYPES if kind in raw]


FIELDS = [
    Field("url", fields.Typed(_url, {"type": "string", "maxLength": 2000,
                                     "pattern": URL_PATTERN}), required=True,
          description="Where deliveries are POSTed (loopback and private addresses are "
                      "refused unless LEDGER_WEBHOOK_ALLOW_PRIVATE_TARGETS=1)."),
    Field("event_types", fields.Typed(_event_types, {
        "type": "array", "minItems": 1, "items": {"type": "string", "enum": list(TYPES)}}),
        required=True),
    Field("customer", fields.hyperlink("/api/customers/"), allow_null=True,
          description="The organisation whose notifications are sent; none: site-wide "
                      "(staff only)."),
]
SERVED: Json = {
    "uuid": read_only(HEX_UUID), "url": URI, "event_types": array(STRING),
    "customer": nullable(URI), "customer_uuid": read_only(nullable(HEX_UUID)),
    "healthy": read_only({**BOOLEAN, "description": "False once a delivery failed every "
                          "attempt; true again after a delivery succeeds."}),
    "created": read_only(DATETIME), "modified": read_only(DATETIME),
}
ATTEMPT = obj({"time": DATETIME, "status_code": nullable(INTEGER), "latency_ms": INTEGER,
               "error": nullable(STRING)}, ["time", "status_code", "latency_ms", "error"])
DELIVERY = obj({
    "uuid": read_only(HEX_UUID), "notification_id": read_only(STRING),
    "type": read_only(STRING),
    "state": read_only({"type": "string", "enum": ["pending", "delivered", "failed"]}),
    "attempts": read_only(array(ATTEMPT)), "created": read_only(DATETIME),
    "next_attempt_at": read_only(nullable(DATETIME)),
}, ["uuid", "notification_id", "type", "state", "attempts", "created", "next_attempt_at"])
TAG = "webhooks"
UUID_PARAMS = [param_ref("Uuid")]
DELIVERY_PARAMS = [*UUID_PARAMS, path("delivery_uuid", UUID_FILTER)]


def webhook(row: Any, base: str) -> dict[str, Any]:
    return {"uuid": row.uuid, "url": row.url, "event_types": json.loads(row.event_types),
            "customer": link(base, "customers", row.customer_uuid) if row.customer_uuid
            else None, "customer_uuid": row.customer_uuid, "healthy": row.healthy,
            "created": iso(row.created), "modified": iso(row.modified)}


def visible(principal: Principal) -> Select[Any]:
    found = select(webhooks)
    if principal.is_staff:
        return found
    mine = owned(principal)
    return found.where(webhooks.c.customer_uuid.in_(mine) if mine else false())


def _routes() -> list[Route]:
    one = json_response(ref("Webhook"))
    return [
        Route("/api/webhooks/", {
            "get": operation("webhooks_list", TAG, "Subscriptions the caller manages", {
                "200": json_response(array(ref("Webhook")), headers=LIST_HEADERS),
                **errors(400, 404)}, parameters=PAGINATION),
            "post": operation("webhooks_create", TAG, "Subscribe (staff; owners for their "
                              "organisation); the answer holds the secret, shown only now", {
                                  "201": json_response(ref("CreatedWebhook"), "Created"),
                                  **errors(403)}, body=json_body(ref("WebhookRequest"))),
        }),
        Route("/api/webhooks/{uuid}/", {
            "parameters": UUID_PARAMS,
            "get": operation("webhooks_retrieve", TAG, "Retrieve", {"200": one, **errors(404)}),
            "put": operation("webhooks_update", TAG, "Update", {"200": one, **errors(403, 404)},
                             body=json_body(ref("WebhookRequest"))),
            "patch": operation("webhooks_partial_update", TAG, "Partial update", {
                "200": one, **errors(403, 404)},
                body=json_body(ref("PatchedWebhookRequest"), required=False)),
            "delete": operation("webhooks_destroy", TAG, "Unsubscribe", {
                "204": {"description": "No response body"}, **errors(404)}),
        }, suffix="item"),
        Route("/api/webhooks/{uuid}/test/", {"parameters": UUID_PARAMS, "post": operation(
            "webhooks_test", TAG, "Send a signed `webhook.test` delivery", {
                "202": json_response(obj({"notification_id": STRING}, ["notification_id"])),
                **errors(404)})}, suffix="test"),
        Route("/api/webhooks/{uuid}/deliveries/", {"parameters": UUID_PARAMS, "get": operation(
            "webhooks_deliveries_list", TAG, "Deliveries, newest first, with every attempt", {
                "200": json_response(array(ref("WebhookDelivery")), headers=LIST_HEADERS),
                **errors(400, 404)}, parameters=PAGINATION)}, suffix="deliveries"),
        Route("/api/webhooks/{uuid}/deliveries/{delivery_uuid}/redeliver/", {
            "parameters": DELIVERY_PARAMS, "post": operation(
                "webhooks_deliveries_redeliver", TAG, "Send the delivery again", {
                    "202": json_response(ref("WebhookDelivery")), **errors(404)})},
            suffix="redeliver"),
    ]


class Webhooks(Resource):
    routes = _routes()
    schemas = {
        "Webhook": obj(SERVED, list(SERVED)),
        "CreatedWebhook": obj({**SERVED, "secret": read_only(
            {**STRING, "description": "whsec_…: verifies signatures; shown only here."})},
            [*SERVED, "secret"]),
        "WebhookRequest": object_schema(FIELDS),
        "PatchedWebhookRequest": object_schema(FIELDS, partial=True),
        "WebhookDelivery": DELIVERY,
    }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: ListQuery(
                visible(principal).order_by(webhooks.c.created, webhooks.c.uuid)))
        resp.media = [webhook(row, base_url(req)) for row in page.rows]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        values = validate(request_body(req), self._fields())
        customer_uuid = self._scope(principal, values.get("customer"))
        uuid, secret = subscriptions.create(self.services.engine, values["url"],
                                            values["event_types"], customer_uuid,
                                            principal.actor)
        resp.status = falcon.HTTP_201
        resp.media = {**webhook(self._row(principal, uuid), base_url(req)), "secret": secret}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        resp.media = webhook(self._row(self.principal(req), uuid), base_url(req))

    def on_put_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self._update(req, resp, uuid, partial=False)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        self._update(req, resp, uuid, partial=True)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        row = self._row(self.principal(req), uuid)
        subscriptions.remove(self.services.engine, row.uuid)
        resp.status = falcon.HTTP_204

    def on_post_test(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        row = self._row(self.principal(req), uuid)
        resp.status = falcon.HTTP_202
        resp.media = {"notification_id": subscriptions.send_test(self.services.engine, row)}

    def on_get_deliveries(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        row = self._row(self.principal(req), uuid)
        with self.services.reads.connect() as conn:
            page = paginate(conn, req, resp, lambda: ListQuery(
                subscriptions.listed_deliveries(conn, row.uuid)))
        resp.media = [subscriptions.delivery(found) for found in page.rows]

    def on_post_redeliver(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                          delivery_uuid: str) -> None:
        row = self._row(self.principal(req), uuid)
        wanted = parse_uuid(delivery_uuid, "No delivery matches the given query.").hex
        if not subscriptions.redeliver(self.services.engine, row.uuid, wanted):
            raise not_found("No delivery matches the given query.")
        with self.services.reads.connect() as conn:
            found = conn.execute(subscriptions.listed_deliveries(conn, row.uuid)).all()
        resp.status = falcon.HTTP_202
        resp.media = next(subscriptions.delivery(item) for item in found if item.uuid == wanted)

    # --- helpers -------------------------------------------------------------------------

    def _update(self, req: falcon.Request, resp: falcon.Response, uuid: str,
                partial: bool) -> None:
        principal = self.principal(req)
        row = self._row(principal, uuid)
        values = validate(request_body(req), self._fields(), partial)
        if "customer" in values:
            values["customer_uuid"] = self._scope(principal, values.pop("customer"))
        subscriptions.change(self.services.engine, row.uuid, values)
        resp.media = webhook(self._row(principal, row.uuid), base_url(req))

    def _scope(self, principal: Principal, customer: UUID | None) -> str | None:
        """Site-wide for staff only; an organisation for its owners (and staff)."""
        if customer is None:
            if not principal.is_staff:
                raise permission_denied()
            return None
        if not principal.is_owner(customer.hex):
            raise permission_denied()
        return customer.hex

    def _row(self, principal: Principal, uuid: str) -> Any:
        wanted = parse_uuid(uuid, NOT_FOUND).hex
        with self.services.reads.connect() as conn:
            row = conn.execute(visible(principal).where(webhooks.c.uuid == wanted)).first()
        if row is None:
            raise not_found(NOT_FOUND)
        return row

    def _fields(self) -> list[Field]:
        def check_customer(customer_id: UUID) -> None:
            with self.services.reads.connect() as conn:
                found = conn.execute(select(customers.c.uuid).where(
                    customers.c.uuid == customer_id.hex)).first()
            if found is None:
                raise fields.FieldError("Invalid hyperlink - Object does not exist.")

        return with_checks(FIELDS, customer=check_customer)
