"""The Falcon app factory: routes, media handlers, middleware, error mapping."""

from __future__ import annotations

import functools
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import falcon
import falcon.media

from api.auth import AuthMiddleware
from api.consumptions import BillingPeriods, Consumptions
from api.customer_credits import CustomerCredits
from api.directory import Customers, Offerings, Projects
from api.docs import add_docs_routes
from api.errors import register_error_handlers
from api.history import CreditHistory
from api.idempotency import IdempotencyMiddleware
from api.metrics import Metrics, StoreMetrics
from api.observe import RequestObserver
from api.openapi import OpenApiSchema
from api.project_credits import ProjectCredits
from api.read_model_guard import PATHS_WITHOUT_READ_MODELS, ReadModelGuard
from api.reconciliation import Reconciliation
from api.statements import CreditStatement
from api.transactions import CreditTransactions
from api.wiring import Services


def _default(value: Any) -> Any:
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"Cannot serialise {type(value).__name__}")


JSON = falcon.media.JSONHandler(
    dumps=functools.partial(json.dumps, default=_default, ensure_ascii=False),
    loads=functools.partial(json.loads, parse_float=Decimal),
)


class CatchUpMiddleware:
    """Every request that reads the read models first applies events they have not seen
    yet (not /metrics, whose projector lag would then always read 0)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not req.path.startswith(PATHS_WITHOUT_READ_MODELS):
            self.services.projector.catch_up_patiently()


class Health:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", "position": self.services.projector.position()}


def create_app(services: Services) -> falcon.App:
    services.ledger.observer = StoreMetrics()
    auth = AuthMiddleware(services.reads, lambda: services.projector.log_end)
    middleware: list[Any] = [RequestObserver(), ReadModelGuard(services),
                             CatchUpMiddleware(services), auth,
                             IdempotencyMiddleware(services.engine)]
    app = falcon.App(middleware=middleware)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = JSON
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = JSON
    app.resp_options.xml_error_serialization = False
    app.req_options.strip_url_path_trailing_slash = False
    register_error_handlers(app)

    app.add_route("/health", Health(services))
    _collection(app, "/api/project-credits/", ProjectCredits(services))
    customer_credits = CustomerCredits(services)
    _collection(app, "/api/customer-credits/", customer_credits)
    app.add_route("/api/customer-credits/{uuid}/consumptions/", customer_credits,
                  suffix="consumptions")
    _collection(app, "/api/customers/", Customers(services))
    _collection(app, "/api/projects/", Projects(services))
    offerings = Offerings(services)
    _collection(app, "/api/marketplace-public-offerings/", offerings)
    _collection(app, "/api/marketplace-provider-offerings/", offerings)
    consumptions = Consumptions(services)
    app.add_route("/api/consumptions/", consumptions)
    app.add_route("/api/consumptions/{item_id}/", consumptions, suffix="item")
    periods = BillingPeriods(services)
    app.add_route("/api/billing-periods/", periods)
    app.add_route("/api/billing-periods/{period}/close/", periods, suffix="close")
    app.add_route("/api/billing-periods/{period}/reopen/", periods, suffix="reopen")
    _collection(app, "/api/credit-transactions/", CreditTransactions(services))
    app.add_route("/api/project-credits/{uuid}/history/", CreditHistory(services, "project"))
    app.add_route("/api/customer-credits/{uuid}/history/", CreditHistory(services, "customer"))
    reconciliation = Reconciliation(services)
    app.add_route("/api/reconciliation/", reconciliation)
    app.add_route("/api/reconciliation/csv/", reconciliation, suffix="csv")
    app.add_route("/api/reconciliation/usage/", reconciliation, suffix="usage")
    app.add_route("/api/customer-credits/{uuid}/statement/", CreditStatement(services))
    app.add_route("/api/schema/", OpenApiSchema())
    app.add_route("/metrics", Metrics(services))
    add_docs_routes(app)
    return app


def _collection(app: falcon.App, path: str, resource: object) -> None:
    app.add_route(path, resource)
    app.add_route(path + "{uuid}/", resource, suffix="item")
