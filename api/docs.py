"""Browsable API documentation at /api/docs/: Swagger UI reading /api/schema/.

The Swagger UI assets come from the `swagger-ui-bundle` package and are served by this
service (no CDN): deployments are often air-gapped. Relative URLs keep the page working
behind a reverse proxy that mounts the service under a prefix.
"""

from __future__ import annotations

import falcon
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/api/docs/"
ASSETS_PATH = DOCS_PATH + "static"

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
      layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""


class ApiDocs:
    """GET /api/docs/: the Swagger UI page; anonymous callers allowed, like the schema."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = PAGE


class DocsElsewhere:
    """/api/schema/swagger-ui/, where drf-spectacular serves it: the page is at /api/docs/."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently("../../docs/")


def add_docs_routes(app: falcon.App) -> None:
    app.add_route(DOCS_PATH, ApiDocs())
    app.add_route("/api/schema/swagger-ui/", DocsElsewhere())
    app.add_static_route(ASSETS_PATH, swagger_ui_path)
