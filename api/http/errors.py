"""DRF-shaped error responses, and the mapping of domain errors to HTTP at the edge."""

from __future__ import annotations

import logging
from typing import Any

import falcon

from ledger import errors as domain

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error whose body is already in DRF's shape."""

    def __init__(self, status: str | int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(str(body))
        self.status = falcon.code_to_http_status(status)
        self.body = body
        self.headers = headers or {}


def detail(status: int, message: str) -> ApiError:
    return ApiError(status, {"detail": message})


def not_found(message: str = "Not found.") -> ApiError:
    return detail(404, message)


def permission_denied() -> ApiError:
    return detail(403, "You do not have permission to perform this action.")


def not_authenticated() -> ApiError:
    return ApiError(401, {"detail": "Authentication credentials were not provided."},
                    {"WWW-Authenticate": "Token"})


def validation_error(body: Any) -> ApiError:
    return ApiError(400, body)


def _domain_body(error: domain.LedgerError) -> Any:
    if isinstance(error, domain.Conflict | domain.KeyReused):
        return {"detail": error.message}
    if isinstance(error, domain.InvalidTerms):
        return {error.field: error.message}  # upstream raises these from model save()
    if error.field:
        return {error.field: [error.message]}
    return [error.message]


_STATUS: list[tuple[type[domain.LedgerError], int]] = [
    (domain.NotFound, 404),
    (domain.PreconditionFailed, 412),
    (domain.KeyReused, 422),
    (domain.Conflict, 409),
    (domain.RuleViolation, 400),
]


def _handle_api_error(req: falcon.Request, resp: falcon.Response, error: ApiError,
                      params: dict[str, Any]) -> None:
    resp.status = error.status
    resp.media = error.body
    for name, value in error.headers.items():
        resp.set_header(name, value)


def _handle_domain_error(req: falcon.Request, resp: falcon.Response,
                         error: domain.LedgerError, params: dict[str, Any]) -> None:
    status = next(code for cls, code in _STATUS if isinstance(error, cls))
    body = {"detail": "Not found."} if status == 404 else _domain_body(error)
    _handle_api_error(req, resp, ApiError(status, body), params)


def _handle_http_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError,
                       params: dict[str, Any]) -> None:
    """Falcon's own errors (unknown route, bad JSON, wrong method) in DRF's shape."""
    if isinstance(error, falcon.MediaMalformedError):
        message = f"JSON parse error - {error.description or 'malformed body'}"
        body: dict[str, Any] = {"detail": message}
    elif isinstance(error, falcon.HTTPMethodNotAllowed):
        body = {"detail": f'Method "{req.method}" not allowed.'}
    elif isinstance(error, falcon.HTTPUnsupportedMediaType):
        body = {"detail": f'Unsupported media type "{req.content_type}" in request.'}
    elif error.status_code == 404:
        body = {"detail": "Not found."}
    else:
        body = {"detail": error.description or error.title}
    resp.status = error.status
    resp.media = body
    resp.set_headers(error.headers or {})


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception,
                       params: dict[str, Any]) -> None:
    log.exception("Unhandled error on %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.media = {"detail": "A server error occurred."}


def register_error_handlers(app: falcon.App) -> None:
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(domain.LedgerError, _handle_domain_error)
    app.add_error_handler(ApiError, _handle_api_error)
