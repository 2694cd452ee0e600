"""Read model of customers, projects, offerings, users and roles."""

from __future__ import annotations

from typing import Any

from ledger.directory import Customer, Offering, Project
from ledger.users import User
from projections.changes import Changes
from projections.dispatch import Dispatch
from projections.tables import customers, offerings, projects, user_roles, users

project = Dispatch()


@project.on(Customer.Registered)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.insert(customers, dict(
        uuid=event.originator_id.hex, name=event.name, slug=event.slug, created=event.timestamp))


@project.on(Project.Registered)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.insert(projects, dict(
        uuid=event.originator_id.hex, name=event.name, slug=event.slug,
        customer_uuid=event.customer_id.hex, terminated=False, created=event.timestamp))


@project.on(Project.Terminated)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.update(projects, (event.originator_id.hex,), terminated=True)


@project.on(Offering.Registered)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.insert(offerings, dict(
        uuid=event.originator_id.hex, name=event.name, type=event.type, created=event.timestamp))


@project.on(User.Created)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.insert(users, dict(
        uuid=event.originator_id.hex, username=event.username, token_hash=event.token_hash,
        is_staff=event.is_staff, is_support=event.is_support, is_active=True))


@project.on(User.TokenRotated)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.update(users, (event.originator_id.hex,), token_hash=event.token_hash)


@project.on(User.Deactivated)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.update(users, (event.originator_id.hex,), is_active=False)


@project.on(User.RoleGranted)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.insert(user_roles, dict(
        user_uuid=event.originator_id.hex, scope=event.scope, scope_uuid=event.scope_id.hex,
        role=event.role))


@project.on(User.RoleRevoked)
def _(event: Any, changes: Changes, position: int) -> None:
    changes.delete(user_roles, event.originator_id.hex, event.scope, event.scope_id.hex,
                   event.role)
