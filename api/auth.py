"""Token authentication: `Authorization: Token <key>` resolves to a Principal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import falcon
from sqlalchemy import Engine, select

from api.errors import ApiError, not_authenticated
from ledger.access import Principal
from ledger.users import hash_token
from projections.tables import user_roles, users

PUBLIC_PATHS = ("/health", "/api/schema/")


@dataclass
class AuthMiddleware:
    """Puts the caller's Principal (or None) on req.context.principal.

    Then the read models catch up with the log (`catch_up`, returning how many events it
    applied); if that changed anything, the principal is read again (a new role). A token
    not found yet is looked up once more after the catch-up (a user just made by the CLI).
    Reading the principal first makes an unreachable database a fast failure.
    """

    engine: Engine
    catch_up: Callable[[], int] = field(default=lambda: 0)
    public_paths: tuple[str, ...] = field(default=PUBLIC_PATHS)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = None
        header = req.get_header("Authorization")
        if req.path in self.public_paths or not header:
            return
        principal = self.authenticate(header, final=False)
        if self.catch_up() or principal is None:
            principal = self.authenticate(header)
        req.context.principal = principal

    def authenticate(self, header: str, final: bool = True) -> Principal | None:
        keyword, _, token = header.partition(" ")
        if keyword.lower() != "token":
            return None
        if not token.strip() or " " in token.strip():
            raise ApiError(401, {"detail": "Invalid token header. No credentials provided."},
                           {"WWW-Authenticate": "Token"})
        principal = load_principal(self.engine, hash_token(token.strip()))
        if principal is None and final:
            raise ApiError(401, {"detail": "Invalid token."}, {"WWW-Authenticate": "Token"})
        return principal


def load_principal(engine: Engine, token_hash: str) -> Principal | None:
    with engine.connect() as conn:
        user = conn.execute(select(users).where(users.c.token_hash == token_hash)).first()
        if user is None:
            return None
        roles = conn.execute(select(user_roles).where(user_roles.c.user_uuid == user.uuid)).all()
    principal = Principal(user.uuid, user.username, user.is_staff, user.is_support)
    for role in roles:
        principal.add_role(role.scope, role.scope_uuid, role.role)
    return principal


def require_principal(req: falcon.Request) -> Principal:
    principal: Principal | None = req.context.principal
    if principal is None:
        raise not_authenticated()
    return principal
