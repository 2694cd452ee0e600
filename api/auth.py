"""Token authentication: `Authorization: Token <key>` resolves to a Principal."""

from __future__ import annotations

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
    """Puts the caller's Principal (or None) on req.context.principal."""

    engine: Engine
    public_paths: tuple[str, ...] = field(default=PUBLIC_PATHS)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = None
        if req.path in self.public_paths:
            return
        header = req.get_header("Authorization")
        if header:
            req.context.principal = self.authenticate(header)

    def authenticate(self, header: str) -> Principal | None:
        keyword, _, token = header.partition(" ")
        if keyword.lower() != "token":
            return None
        if not token.strip() or " " in token.strip():
            raise ApiError(401, {"detail": "Invalid token header. No credentials provided."},
                           {"WWW-Authenticate": "Token"})
        principal = load_principal(self.engine, hash_token(token.strip()))
        if principal is None:
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
