"""Small helpers every resource uses."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import falcon
from sqlalchemy import Select

from api.http.auth import require_principal
from api.http.errors import ApiError, not_found, permission_denied, validation_error
from api.http.fields import FieldError, uuid_filter
from api.http.listing import last_param
from api.server.wiring import Services
from ledger.access import Principal


def parse_uuid(text: str, message: str = "Not found.") -> UUID:
    """Hex with or without hyphens, like Waldur's StringUUID; anything else is a 404."""
    try:
        return UUID(text)
    except ValueError:
        raise not_found(message) from None


def request_body(req: falcon.Request) -> Any:
    """The parsed JSON body; no body reads as an empty object, as in DRF."""
    return req.get_media(default_when_empty={})


def base_url(req: falcon.Request) -> str:
    return req.prefix


class Resource:
    """Holds the services; every write catches the read models up before answering."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def principal(self, req: falcon.Request) -> Principal:
        return require_principal(req)

    def staff(self, req: falcon.Request) -> Principal:
        """The caller, who must be staff (403 otherwise)."""
        principal = self.principal(req)
        if not principal.is_staff:
            raise permission_denied()
        return principal

    def auditor(self, req: falcon.Request) -> Principal:
        """The caller, who must be staff or support (403 otherwise): the finance reports."""
        principal = self.principal(req)
        if not principal.sees_everything:
            raise permission_denied()
        return principal

    def settle_reads(self) -> None:
        """Read-your-writes: wait until what this request saved is projected (by anyone)."""
        self.services.projector.catch_up_to(self.services.ledger.last_saved_position())


def apply_uuid_filter(query: Select[Any], req: falcon.Request, name: str,
                      column: Any) -> Select[Any]:
    found = uuid_param(req, name)
    return query if found is None else query.where(column == found)


def uuid_param(req: falcon.Request, name: str) -> str | None:
    """A uuid query parameter as hex; None when absent, 400 naming it when malformed."""
    raw = last_param(req, name)
    if raw is None:
        return None
    try:
        return uuid_filter(raw).hex
    except FieldError as error:
        raise validation_error({name: error.messages}) from None


def apply_exact_filter(query: Select[Any], req: falcon.Request, name: str,
                       column: Any) -> Select[Any]:
    raw = last_param(req, name)
    return query if raw is None else query.where(column == raw)


def if_match(req: falcon.Request) -> int | None:
    """The aggregate version a conditional write expects (`If-Match: "7"`); None if absent."""
    header = req.get_header("If-Match")
    if header is None or header.strip() == "*":
        return None
    # "7", W/"7" or a bare 7, in ASCII digits (str.isdigit() also takes "²", which int() refuses)
    tag = re.fullmatch(r'(?:W/)?"([0-9]{1,18})"|([0-9]{1,18})', header.strip())
    if tag is None:
        raise ApiError(412, {"detail": "If-Match must be an ETag this API gave out."})
    return int(tag.group(1) or tag.group(2))


def set_etag(resp: falcon.Response, version: int) -> None:
    """A credit's ETag is its aggregate version: send it back in If-Match to write safely."""
    resp.set_header("ETag", f'"{version}"')
