"""Users, their API tokens and their roles. Grants and revocations are audited events."""

from __future__ import annotations

import hashlib
from typing import ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import RuleViolation

CUSTOMER_ROLES = ("owner", "support", "manager")
PROJECT_ROLES = ("admin", "manager", "member")
SCOPES = {"customer": CUSTOMER_ROLES, "project": PROJECT_ROLES}


def hash_token(token: str) -> str:
    """Tokens are stored only as SHA-256 digests."""
    return hashlib.sha256(token.encode()).hexdigest()


class User(Aggregate):
    """An API user; the username is unique because it determines the id."""

    RoleGranted: ClassVar[type[Aggregate.Event]]
    RoleRevoked: ClassVar[type[Aggregate.Event]]
    TokenRotated: ClassVar[type[Aggregate.Event]]
    Deactivated: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(username: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/credit-ledger/users/{username}")

    @event("Created")
    def __init__(
        self, username: str, token_hash: str, is_staff: bool, is_support: bool, actor: str
    ) -> None:
        self.username = username
        self.token_hash = token_hash
        self.is_staff = is_staff
        self.is_support = is_support
        self.roles: list[list[str]] = []  # [scope, scope_id hex, role]
        self.is_active = True

    def grant(self, scope: str, scope_id: UUID, role: str, actor: str) -> None:
        if role not in SCOPES.get(scope, ()):
            raise RuleViolation(f'"{role}" is not a valid {scope} role.', "role")
        if [scope, scope_id.hex, role] not in self.roles:
            self._granted(scope=scope, scope_id=scope_id, role=role, actor=actor)

    @event("RoleGranted")
    def _granted(self, scope: str, scope_id: UUID, role: str, actor: str) -> None:
        self.roles.append([scope, scope_id.hex, role])

    def revoke(self, scope: str, scope_id: UUID, role: str, actor: str) -> None:
        if [scope, scope_id.hex, role] not in self.roles:
            raise RuleViolation(f"{self.username} does not hold the {scope} role {role} of "
                                f"{scope_id}.", "role")
        self._revoked(scope=scope, scope_id=scope_id, role=role, actor=actor)

    @event("RoleRevoked")
    def _revoked(self, scope: str, scope_id: UUID, role: str, actor: str) -> None:
        self.roles.remove([scope, scope_id.hex, role])

    def rotate_token(self, token_hash: str, actor: str) -> None:
        """A new token replaces the old one, which stops working at once."""
        self._check_active()
        self._token_rotated(token_hash=token_hash, actor=actor)

    @event("TokenRotated")
    def _token_rotated(self, token_hash: str, actor: str) -> None:
        self.token_hash = token_hash

    def deactivate(self, actor: str) -> bool:
        """The user's token stops working for good; False when it already had."""
        if not self.is_active:
            return False
        self._deactivated(actor=actor)
        return True

    @event("Deactivated")
    def _deactivated(self, actor: str) -> None:
        self.is_active = False

    def _check_active(self) -> None:
        if not self.is_active:
            raise RuleViolation(f"User {self.username!r} is deactivated.", "username")
