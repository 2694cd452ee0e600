"""The console at /console/: a read-only web page for finance, support and owners.

One HTML shell serves every console address; its script (static/app.js) picks the page
from the path and reads the API with the token the user pasted, so the console sees
exactly what the API lets that user see. Everything is served by this service from the
package (the chart library, uPlot, vendored from npm under static/uplot/): no CDN, no
build step. A strict Content-Security-Policy allows scripts, styles and requests to this
origin only; the page never inserts data as HTML.
"""

from __future__ import annotations

from pathlib import Path

import falcon

from api.http.common import parse_uuid
from api.http.routes import Route
from api.http.schema import Json, errors, operation, param_ref, text_response

CONSOLE_PATH = "/console/"
STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def shell(depth: int) -> str:
    """The page, its links relative to where it is served (`depth` folders below the
    console), so that it works behind a proxy that mounts the service under a prefix."""
    up = "../" * depth
    return (STATIC / "index.html").read_text().replace('"static/', f'"{up}static/')


def page_route(path: str, operation_id: str, summary: str, suffix: str | None) -> Route:
    responses = {"200": text_response("text/html", "The console's page")}
    if "{uuid}" in path:
        responses.update(errors(404))
    item: Json = {"get": operation(operation_id, "console", summary, responses, public=True)}
    if "{uuid}" in path:
        item["parameters"] = [param_ref("Uuid")]
    return Route(path, item, suffix=suffix)


class Console:
    """GET the console's pages: the same shell at each address (anonymous: the page asks
    for a token and sends it to the API itself)."""

    routes = [
        page_route(CONSOLE_PATH, "console", "The console: organisations", None),
        page_route(CONSOLE_PATH + "customers/{uuid}/", "console_customer",
                   "The console: one organisation", "customer"),
        page_route(CONSOLE_PATH + "project-credits/{uuid}/", "console_project_credit",
                   "The console: one project credit", "credit"),
        page_route(CONSOLE_PATH + "periods/", "console_periods",
                   "The console: periods and their exports (staff, support)", "periods"),
    ]
    schemas: dict[str, object] = {}

    def __init__(self) -> None:
        self.pages = {depth: shell(depth) for depth in (0, 1, 2)}

    def send(self, resp: falcon.Response, depth: int) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        resp.text = self.pages[depth]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.send(resp, 0)

    def on_get_customer(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        parse_uuid(uuid)  # an address no page has is a 404
        self.send(resp, 2)

    def on_get_credit(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        parse_uuid(uuid)
        self.send(resp, 2)

    def on_get_periods(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.send(resp, 1)


class ConsoleHeaders:
    """Middleware: every console answer (pages and files) carries the strict policy."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        if req.path.startswith(CONSOLE_PATH):
            resp.set_headers(HEADERS)


def add_console_assets(app: falcon.App) -> None:
    """The console's own files and the vendored chart library, from the package."""
    app.add_static_route(CONSOLE_PATH + "static", STATIC)
