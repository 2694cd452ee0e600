"""Who may see and change what (reference §2.7): the rules, apart from HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Principal:
    """An authenticated user with its global flags and scoped roles (uuids as hex)."""

    uuid: str
    username: str
    is_staff: bool = False
    is_support: bool = False
    customer_roles: dict[str, set[str]] = field(default_factory=dict)
    project_roles: dict[str, set[str]] = field(default_factory=dict)

    def add_role(self, scope: str, scope_uuid: str, role: str) -> None:
        roles = self.customer_roles if scope == "customer" else self.project_roles
        roles.setdefault(scope_uuid, set()).add(role)

    @property
    def actor(self) -> str:
        return self.username

    @property
    def sees_everything(self) -> bool:
        return self.is_staff or self.is_support

    def is_owner(self, customer_uuid: str) -> bool:
        return self.is_staff or "owner" in self.customer_roles.get(customer_uuid, set())

    def sees_organisation_fields(self, customer_uuid: str) -> bool:
        """Organisation totals are for staff, support and owners only."""
        return self.sees_everything or self.is_owner(customer_uuid)

    def customer_uuids(self) -> list[str]:
        return sorted(self.customer_roles)

    def project_uuids(self) -> list[str]:
        return sorted(self.project_roles)
