"""The Falcon app factory: routes, media handlers, middleware, error mapping."""

from __future__ import annotations

from functools import partial
from typing import Any

import falcon

from api.http.auth import AuthMiddleware
from api.http.bodies import BodyMiddleware
from api.http.errors import register_error_handlers
from api.http.idempotency import IdempotencyMiddleware
from api.http.jsoncodec import JSON
from api.http.openapi import OpenApiSchema
from api.http.read_model_guard import ReadModelGuard
from api.http.routes import mount
from api.resources.audit import AuditHeadResource
from api.resources.billing_periods import BillingPeriods
from api.resources.console import Console, ConsoleHeaders, add_console_assets
from api.resources.consumptions import Consumptions
from api.resources.credit_months import CustomerCreditMonths
from api.resources.customer_credits import CustomerCredits
from api.resources.directory import Customers, Offerings, Projects
from api.resources.docs import ApiDocs, add_assets, route_label
from api.resources.health import Health
from api.resources.history import CustomerCreditHistory, ProjectCreditHistory
from api.resources.journal import Journal
from api.resources.notifications import Notifications
from api.resources.project_credits import ProjectCredits
from api.resources.reconciliation import Reconciliation
from api.resources.statements import CreditStatement
from api.resources.transactions import CreditTransactions
from api.resources.webhooks import Webhooks
from api.server.metrics import Metrics, StoreMetrics
from api.server.observe import RequestObserver
from api.server.outage import DeferredTablesMiddleware, OutageGate
from api.server.wiring import Services, create_tables

# Every resource the app serves; each declares its routes and schemas (api/http/routes.py),
# from which the router and the OpenAPI document are both built.
RESOURCE_TYPES: list[Any] = [
    Health, ProjectCredits, CustomerCredits, Customers, Projects, Offerings, Consumptions,
    BillingPeriods, CreditTransactions, ProjectCreditHistory, CustomerCreditHistory,
    Reconciliation, CreditStatement, Journal, AuditHeadResource, Webhooks, Notifications,
    OpenApiSchema, Metrics, ApiDocs, CustomerCreditMonths, Console,
]


def create_app(services: Services) -> falcon.App:
    """Middleware order matters: requests are observed first, a database outage answered
    at once, stale read models refused; callers are authenticated (and the read models
    caught up, for callers with credentials only) before a body is read (bounded in size
    and time; an anonymous caller's never) and before anything parses it."""
    services.ledger.observer = StoreMetrics()
    gate = OutageGate(services.url, services.answers, services.drop_dead_connections)
    observer = RequestObserver()
    middleware: list[Any] = [
        observer,
        ConsoleHeaders(),
        gate,
        DeferredTablesMiddleware(lambda: create_tables(services.url)),
        ReadModelGuard(services),
        AuthMiddleware(services.reads, services.projector.catch_up_patiently,
                       lambda: services.projector.log_end,
                       lambda: services.projector.log_quiet),
        BodyMiddleware(),
        IdempotencyMiddleware(services.engine, services.ledger),
    ]
    app = falcon.App(middleware=middleware)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = JSON
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = JSON
    app.resp_options.xml_error_serialization = False
    app.req_options.strip_url_path_trailing_slash = False
    register_error_handlers(app)
    gate.register(app)

    made = {Health: Health(services, gate.open), OpenApiSchema: OpenApiSchema(),
            ApiDocs: ApiDocs(), Console: Console(), Metrics: Metrics(services)}
    for resource_type in RESOURCE_TYPES:
        mount(app, made.get(resource_type) or resource_type(services))
    add_assets(app)
    add_console_assets(app)
    answer_head_like_get(app)
    observer.route = partial(route_template, app)
    return app


def route_template(app: falcon.App, path: str) -> str | None:
    """The route a path belongs to, for requests answered before routing (a 401)."""
    found = app._router.find(path)
    return found[3] if found is not None else route_label(path)


def answer_head_like_get(app: falcon.App) -> None:
    """HEAD wherever GET: routes without their own `on_head` run GET; Falcon drops the body.

    Collections keep their own HEAD (a count without listing the page).
    """
    def visit(nodes: list[Any]) -> None:
        for node in nodes:
            methods = node.method_map or {}
            head, get = methods.get("HEAD"), methods.get("GET")
            if get is not None and _is_resource_responder(get) and not _is_resource_responder(
                    head):
                methods["HEAD"] = get
            visit(node.children)

    visit(app._router._roots)


def _is_resource_responder(responder: Any) -> bool:
    """Falcon fills unimplemented methods with its own functions (405), not bound methods."""
    return getattr(responder, "__self__", None) is not None
