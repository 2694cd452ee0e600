"""GET /api/audit/head/ (staff, support): the live head of the audit hash chain.

An auditor pins `{count, hash}` and later checks that an export (`credit-ledger export
audit`) extends it: its record `count` has that hash.
"""

from __future__ import annotations

import falcon

from api.common import Resource
from api.wiring import Services
from ledger.audit import AuditHead


class AuditHeadResource(Resource):
    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.head = AuditHead(services.ledger)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auditor(req)
        resp.media = self.head.current()
