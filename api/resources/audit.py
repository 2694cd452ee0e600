"""GET /api/audit/head/ (staff, support): the live head of the audit hash chain.

An auditor pins `{count, hash}` and later checks that an export (`credit-ledger export
audit`) extends it: its record `count` has that hash.
"""

from __future__ import annotations

import falcon

from api.http.common import Resource
from api.http.routes import Route
from api.http.schema import INTEGER, STRING, errors, json_response, obj, operation, ref
from api.server.wiring import Services
from ledger.audit import AuditHead


class AuditHeadResource(Resource):
    routes = [Route("/api/audit/head/", {"get": operation(
        "audit_head_retrieve", "reconciliation",
        "The live head of the audit hash chain, to pin (staff, support)", {
            "200": json_response(ref("AuditHead")), **errors(403)})})]
    schemas = {"AuditHead": obj({
        "count": {**INTEGER, "description": "Records in the chain."},
        "hash": {**STRING, "pattern": "^[0-9a-f]{64}$",
                 "description": "SHA-256 of the last record."}}, ["count", "hash"])}

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.head = AuditHead(services.ledger)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auditor(req)
        resp.media = self.head.current()
