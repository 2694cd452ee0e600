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
from api.resources.consumptions import BillingPeriods, Consumptions
from api.resources.customer_credits import CustomerCredits
from api.resources.directory import Customers, Offerings, Projects
from api.resources.docs import add_docs_routes, route_label
from api.resources.health import Health
from api.resources.history import CreditHistory
from api.resources.project_credits import ProjectCredits
from api.resources.reconciliation import Reconciliation
from api.resources.statements import CreditStatement
from api.resources.transactions import CreditTransactions
from api.server.metrics import Metrics, StoreMetrics
from api.server.observe import RequestObserver
from api.server.outage import DeferredTablesMiddleware, OutageGate
from api.server.wiring import Services, create_tables


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
        gate,
        DeferredTablesMiddleware(lambda: create_tables(services.url)),
        ReadModelGuard(services),
        AuthMiddleware(services.reads, services.projector.catch_up_patiently,
                       lambda: services.projector.log_end),
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

    app.add_route("/health", Health(services, gate.open))
    _collection(app, "/api/project-credits/", ProjectCredits(services))
    customer_credits = CustomerCredits(services)
    _collection(app, "/api/customer-credits/", customer_credits)
    app.add_route("/api/customer-credits/{uuid}/consumptions/", customer_credits,
                  suffix="consumptions")
    for action in ("adjust_withdrawable", "clear_compensations", "apply_compensations"):
        app.add_route(f"/api/customer-credits/{{uuid}}/{action}/", customer_credits,
                      suffix=action)
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


def _collection(app: falcon.App, path: str, resource: object) -> None:
    app.add_route(path, resource)
    app.add_route(path + "{uuid}/", resource, suffix="item")
