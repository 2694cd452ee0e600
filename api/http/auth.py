"""Token authentication: `Authorization: Token <key>` resolves to a Principal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import falcon
from sqlalchemy import Engine, bindparam, select

from api.http.errors import ApiError, not_authenticated
from api.http.freshness import Unconfirmed, check_now
from ledger.access import Principal
from ledger.users import hash_token
from projections.log_end_cache import LogEndCache
from projections.tables import user_roles, users

# served to anyone, without catching the read models up (/metrics decides for itself: a
# staff token, its own bearer token, or anyone on loopback; api/server/metrics.py)
PUBLIC_PATHS = ("/health", "/api/schema/", "/api/docs/", "/console/")
CACHE_SIZE = 10000
READS = ("GET", "HEAD")


@dataclass
class AuthMiddleware:
    """Puts the caller's Principal (or None) on req.context.principal.

    A caller with a token first has the read models caught up with the log (`catch_up`),
    so a user or role just made elsewhere is seen. A read does not wait for a catch-up
    another connection is running (`catch_up(wait=False)`): that one is applying what is
    pending, and a writer's own answer came only after its events were applied. Users and
    roles change only through events, so a principal loaded when the log ended at
    notification N stays true while it still ends there: `log_end` (what this thread's
    catch-up just saw) lets a known token cost no query. Requests without credentials,
    and public paths, touch no database.

    While the log is quiet (`log_quiet`: this thread's last look found it where the look
    before had left it), a read by a known token is let through *unconfirmed*, not even
    asking the log's end, if its resource reads the log's end in its own statement
    (api/http/freshness.py); any other resource has it checked in `process_resource`,
    before it reads. With writers moving the log, such a read would be checked and read
    again: one round trip more than checking first.
    """

    engine: Engine
    catch_up: Callable[..., int] = field(default=lambda wait=True: 0)
    log_end: Callable[[], int] = field(default=lambda: -1)
    log_quiet: Callable[[], bool] = field(default=lambda: False)
    public_paths: tuple[str, ...] = field(default=PUBLIC_PATHS)
    cache: LogEndCache[str, Principal | None] = field(
        default_factory=lambda: LogEndCache(CACHE_SIZE))

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = None
        header = req.get_header("Authorization")
        if not header or req.path.startswith(self.public_paths):
            return
        token_hash = self.token_hash(header)
        if token_hash is None:
            return
        log_end = self.log_end()
        known = (self.cache.peek(token_hash, log_end)
                 if req.method in READS and self.log_quiet() else None)
        if known is None:
            self.authenticate(req, token_hash)
            return
        req.context.principal = known
        req.context.unconfirmed = Unconfirmed(log_end, partial(self.authenticate, req,
                                                               token_hash))

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        confirms = getattr(resource, "reads_log_end_itself", None)
        if confirms is None or not confirms(req):
            check_now(req.context)

    def authenticate(self, req: falcon.Request, token_hash: str) -> None:
        """Catch the read models up, then find the token's principal as of the log's end."""
        self.catch_up(wait=req.method not in READS)
        principal = self.principal_of(token_hash)
        if principal is None:
            raise ApiError(401, {"detail": "Invalid token."}, {"WWW-Authenticate": "Token"})
        req.context.principal = principal

    @staticmethod
    def token_hash(header: str) -> str | None:
        """The digest of a `Token <key>` header; None for another scheme."""
        keyword, _, token = header.partition(" ")
        if keyword.lower() != "token":
            return None
        if not token.strip() or " " in token.strip():
            raise ApiError(401, {"detail": "Invalid token header. No credentials provided."},
                           {"WWW-Authenticate": "Token"})
        return hash_token(token.strip())

    def principal_of(self, token_hash: str) -> Principal | None:
        return self.cache.get(token_hash, self.log_end(),
                              lambda: load_principal(self.engine, token_hash))


# One round trip: the user with each of its roles (none: one row of NULL roles). A
# principal is loaded afresh after every write, since the log has moved (issue 18).
ACTIVE_USER_ROLES = (
    select(users.c.uuid, users.c.username, users.c.is_staff, users.c.is_support,
           user_roles.c.scope, user_roles.c.scope_uuid, user_roles.c.role)
    .outerjoin(user_roles, user_roles.c.user_uuid == users.c.uuid)
    .where(users.c.token_hash == bindparam("token_hash"), users.c.is_active))


def load_principal(engine: Engine, token_hash: str) -> Principal | None:
    with engine.connect() as conn:
        rows = conn.execute(ACTIVE_USER_ROLES, {"token_hash": token_hash}).all()
    if not rows:
        return None
    user = rows[0]
    principal = Principal(user.uuid, user.username, user.is_staff, user.is_support)
    for role in rows:
        if role.scope is not None:
            principal.add_role(role.scope, role.scope_uuid, role.role)
    return principal


def require_principal(req: falcon.Request) -> Principal:
    principal: Principal | None = req.context.principal
    if principal is None:
        raise not_authenticated()
    return principal
