"""Browsable API documentation at /api/docs/: Swagger UI reading /api/schema/.

The Swagger UI assets come from the `swagger-ui-bundle` package and are served by this
service (no CDN): deployments are often air-gapped. Relative URLs keep the page working
behind a reverse proxy that mounts the service under a prefix.
"""

from __future__ import annotations

import re
from typing import Any

import falcon
from swagger_ui_bundle import swagger_ui_path

from api.http.routes import Route
from api.http.schema import operation, text_response

DOCS_PATH = "/api/docs/"
DRF_DOCS_PATH = "/api/schema/swagger-ui/"  # where drf-spectacular users look
ASSETS_PATH = DOCS_PATH + "static"
# Where people look for the docs without finding a route: redirected (relative Locations,
# so a reverse proxy's prefix is kept).
REDIRECTS = {"/": "api/docs/", "/api": "api/docs/", "/api/": "docs/", "/api/docs": "docs/"}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>credit-ledger API</title>
  <link rel="stylesheet" href="static/swagger-ui.css">
  <link rel="icon" type="image/png" href="static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "../schema/",
      dom_id: "#swagger-ui",
      deepLinking: true,
      docExpansion: "list",
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      validatorUrl: null
    });
  </script>
</body>
</html>
"""


def page(assets: str, schema: str) -> str:
    """The page with its relative links made to work from where it is served."""
    return PAGE.replace('"static/', f'"{assets}').replace('"../schema/"', f'"{schema}"')


class ApiDocs:
    """GET /api/docs/: the Swagger UI page; anonymous callers allowed, like the schema.

    The same page is also served where drf-spectacular puts it (/api/schema/swagger-ui/)."""

    html = text_response("text/html", "An HTML page")
    routes = [
        Route(DOCS_PATH, {"get": operation("docs", "service", "This document in Swagger UI",
                                           {"200": html}, public=True)}),
        Route(DRF_DOCS_PATH, {"get": operation(
            "schema_swagger_ui", "service", "The same page where drf-spectacular serves it",
            {"200": html}, public=True)}, suffix="drf"),
    ]
    schemas: dict[str, object] = {}

    def __init__(self) -> None:
        self.page = page("static/", "../schema/")
        self.drf_page = page("../../docs/static/", "../")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self.page

    def on_get_drf(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self.drf_page

def to_docs(req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
    """A sink for REDIRECTS (no route of the API: not in its document)."""
    if req.method not in ("GET", "HEAD"):
        raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
    raise falcon.HTTPFound(REDIRECTS[req.path])


def route_label(path: str) -> str | None:
    """A metrics label for paths outside the router: the docs' assets and redirects."""
    if path.startswith(ASSETS_PATH + "/"):
        return ASSETS_PATH + "/{file}"
    return path if path in REDIRECTS else None


def add_assets(app: falcon.App) -> None:
    """Swagger UI's own files, from the installed package, and the redirects to the docs."""
    app.add_static_route(ASSETS_PATH, swagger_ui_path)
    app.add_sink(to_docs, "^(?:" + "|".join(map(re.escape, REDIRECTS)) + ")$")
