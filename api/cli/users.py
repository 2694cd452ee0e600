"""API users, their tokens and their roles."""

from __future__ import annotations

import secrets
from uuid import UUID

import click

from api.cli.base import CLI_ACTOR, cli, database_option, ledger_services, refuse_stale


@cli.group()
def users() -> None:
    """Manage API users and their tokens."""


@users.command("create")
@click.argument("name")
@click.option("--staff", is_flag=True, help="Staff: may do everything.")
@click.option("--support", is_flag=True, help="Support: may read everything.")
@database_option
def users_create(name: str, staff: bool, support: bool, database_url: str) -> int:
    """Create a user and print its API token (the last line). Creates the database."""
    if staff and support:
        raise click.UsageError("Choose at most one of --staff and --support.")
    token = secrets.token_hex(20)
    with ledger_services(database_url, create=True) as services:
        refuse_stale(services)
        user_id = services.ledger.create_user(name, token, staff, support, CLI_ACTOR)
        services.projector.catch_up()
    kind = "staff" if staff else "support" if support else "user"
    click.echo(f"Created {kind} {name} ({user_id.hex}). API token:")
    click.echo(token)
    return 0


@users.command("list")
@database_option
def users_list(database_url: str) -> int:
    """List users: name, kind, whether active, and their roles."""
    from sqlalchemy import select

    from projections.tables import user_roles
    from projections.tables import users as users_table

    with ledger_services(database_url) as services:
        refuse_stale(services)
        services.projector.catch_up()
        with services.engine.connect() as conn:
            rows = conn.execute(select(users_table).order_by(users_table.c.username)).all()
            roles = conn.execute(select(user_roles)).all()
    click.echo(f"{'NAME':<24} {'KIND':<8} {'ACTIVE':<7} ROLES")
    for row in rows:
        kind = "staff" if row.is_staff else "support" if row.is_support else "user"
        held = [f"{r.scope}:{r.scope_uuid}:{r.role}" for r in roles if r.user_uuid == row.uuid]
        click.echo(f"{row.username:<24} {kind:<8} {'yes' if row.is_active else 'no':<7} "
                   f"{', '.join(held) or '-'}")
    return 0


@users.command("rotate-token")
@click.argument("name")
@database_option
def users_rotate_token(name: str, database_url: str) -> int:
    """Give a user a new API token (the last line); the old one stops working at once."""
    token = secrets.token_hex(20)
    with ledger_services(database_url) as services:
        refuse_stale(services)
        services.ledger.rotate_token(name, token, CLI_ACTOR)
        services.projector.catch_up()
    click.echo(f"Rotated the API token of {name}; the old token no longer works. New token:")
    click.echo(token)
    return 0


@users.command("deactivate")
@click.argument("name")
@database_option
def users_deactivate(name: str, database_url: str) -> int:
    """Deactivate a user: its token stops working for good (the history stays)."""
    with ledger_services(database_url) as services:
        refuse_stale(services)
        changed = services.ledger.deactivate_user(name, CLI_ACTOR)
        services.projector.catch_up()
    click.echo(f"Deactivated {name}." if changed else f"{name} was already deactivated.")
    return 0


@cli.group()
def roles() -> None:
    """Grant or revoke customer and project roles."""


def _role_command(action: str) -> None:
    past = {"grant": "Granted", "revoke": "Revoked"}[action]

    @roles.command(action, help=f"{action.capitalize()} ROLE on a customer or project "
                                f"{'to' if action == 'grant' else 'from'} user NAME. Customer "
                                "roles: owner, support, manager; project roles: admin, "
                                "manager, member.")
    @click.argument("name")
    @click.argument("role")
    @click.option("--customer", metavar="UUID", help="The customer the role is on.")
    @click.option("--project", metavar="UUID", help="The project the role is on.")
    @database_option
    def command(name: str, role: str, customer: str | None, project: str | None,
                database_url: str) -> int:
        if (customer is None) == (project is None):
            raise click.UsageError("Give exactly one of --customer and --project.")
        scope, scope_id = ("customer", customer) if customer else ("project", project)
        assert scope_id is not None
        with ledger_services(database_url) as services:
            refuse_stale(services)
            change = (services.ledger.grant_role if action == "grant"
                      else services.ledger.revoke_role)
            change(name, scope, UUID(scope_id), role, CLI_ACTOR)
            services.projector.catch_up()
        click.echo(f"{past} {scope} role {role} of {scope_id} "
                   f"{'to' if action == 'grant' else 'from'} {name}.")
        return 0


_role_command("grant")
_role_command("revoke")
