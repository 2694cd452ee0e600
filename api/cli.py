"""The `credit-ledger` command: serve, project, rebuild, close-period, export, verify,
users, roles."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from uuid import UUID

from api.wiring import Services, build_services, create_tables
from ledger.errors import LedgerError
from ledger.periods import Period

CLI_ACTOR = "cli"


def progress(label: str) -> Callable[[int], None]:
    """Long work reports how far it got, on stderr, so stdout stays clean."""

    def report(done: int) -> None:
        print(f"{label}: {done}", file=sys.stderr, flush=True)

    return report


def cmd_serve(args: argparse.Namespace) -> int:
    from api.server import serve

    serve(args.host, args.port, args.workers)
    return 0


def cmd_project(services: Services, args: argparse.Namespace) -> int:
    """A standalone projector for deployments with several API hosts (SQLite is polled)."""
    while True:
        applied = services.projector.catch_up(progress("projected events"))
        if args.once:
            print(f"Projected {applied} events; position {services.projector.position()}.")
            return 0
        time.sleep(args.interval)


def cmd_rebuild(services: Services, args: argparse.Namespace) -> int:
    total = services.projector.rebuild(progress("replayed events"))
    print(f"Rebuilt every read model from {total} events.")
    return 0


def cmd_close_period(services: Services, args: argparse.Namespace) -> int:
    period = Period.parse(args.period)
    services.projector.catch_up()
    credit_ids = _customer_credit_ids(services)
    result = services.ledger.close_period(period, CLI_ACTOR, credit_ids,
                                          progress(f"settled customers of {len(credit_ids)}"))
    services.projector.catch_up()
    if result.already_closed:
        print(f"Billing period {period} was already closed; nothing changed.")
    else:
        print(f"Closed billing period {period}: settled {result.customers_settled} customers.")
    return 0


def cmd_reopen_period(services: Services, args: argparse.Namespace) -> int:
    period = Period.parse(args.period)
    services.projector.catch_up()
    reopened = services.ledger.reopen_period(period, CLI_ACTOR, _customer_credit_ids(services))
    services.projector.catch_up()
    print(f"Re-opened billing period {period}: reversed the settlement of {reopened} customers.")
    return 0


def cmd_export_reconciliation(services: Services, args: argparse.Namespace) -> int:
    """Write the month's report; non-zero when a row does not tie out or closing drifts."""
    from api.reconciliation import render_csv
    from projections.reconciliation import reconcile

    period = Period.parse(args.period)
    services.projector.catch_up()
    report = reconcile(services.ledger, services.engine, period, progress("scanned events"))
    kind = args.format or ("json" if args.out.endswith(".json") else "csv")
    text = json.dumps(report.as_dict(), indent=2) if kind == "json" else render_csv(report)
    with open(args.out, "w", encoding="utf-8", newline="") as out:
        out.write(text)
    summary = report.summary()
    print(f"Wrote {summary['rows']} rows for {period} to {args.out} ({kind}); "
          f"every row ties out: {summary['all_rows_tie_out']}; closing balances match the "
          f"{summary['closing_compared_with'].replace('_', ' ')}: {summary['closing_matches']}.")
    return 0 if summary["all_rows_tie_out"] and summary["closing_matches"] else 1


def cmd_verify(services: Services, args: argparse.Namespace) -> int:
    """Replay everything into fresh read models; print each difference; non-zero on drift."""
    from projections.verify import verify

    result = verify(services.ledger, services.engine, progress("replayed events"))
    for difference in result.differences:
        print(difference)
    if result.differences:
        print(f"Drift: {len(result.differences)} differences between the read models and a "
              f"replay of {result.position} events.")
        return 1
    print(f"Read models match a replay of {result.position} events "
          f"({result.rows_compared} rows compared).")
    return 0


def _customer_credit_ids(services: Services) -> list[UUID]:
    from sqlalchemy import false, select

    from projections.tables import customer_credits

    with services.engine.connect() as conn:
        rows = conn.execute(select(customer_credits.c.uuid)
                            .where(customer_credits.c.deleted == false())
                            .order_by(customer_credits.c.created))
        return [UUID(row[0]) for row in rows]


def cmd_users_create(services: Services, args: argparse.Namespace) -> int:
    token = secrets.token_hex(20)
    user_id = services.ledger.create_user(args.name, token, args.staff, args.support, CLI_ACTOR)
    services.projector.catch_up()
    kind = "staff" if args.staff else "support" if args.support else "user"
    print(f"Created {kind} {args.name} ({user_id.hex}). API token:")
    print(token)
    return 0


def cmd_roles(services: Services, args: argparse.Namespace) -> int:
    scope, scope_id = ("customer", args.customer) if args.customer else ("project", args.project)
    change = services.ledger.grant_role if args.action == "grant" else services.ledger.revoke_role
    change(args.name, scope, UUID(scope_id), args.role, CLI_ACTOR)
    services.projector.catch_up()
    print(f"{args.action.capitalize()}ed {scope} role {args.role} of {scope_id} "
          f"{'to' if args.action == 'grant' else 'from'} {args.name}.")
    return 0


def cmd_import_waldur(services: Services, args: argparse.Namespace) -> int:
    from api import importer

    return importer.run(services, args.url, args.token)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="credit-ledger", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API under gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    serve.set_defaults(handler=cmd_serve, needs_services=False)
    project = sub.add_parser("project", help="run the projector (catch up read models)")
    project.add_argument("--once", action="store_true")
    project.add_argument("--interval", type=float, default=0.5)
    project.set_defaults(handler=cmd_project)
    sub.add_parser("rebuild", help="drop and replay every read model").set_defaults(
        handler=cmd_rebuild)
    for name, handler in (("close-period", cmd_close_period),
                          ("reopen-period", cmd_reopen_period)):
        command = sub.add_parser(name, help=f"{name.split('-')[0]} a billing period (YYYY-MM)")
        command.add_argument("period")
        command.set_defaults(handler=handler)
    export = sub.add_parser("export", help="finance exports").add_subparsers(
        dest="report", required=True)
    reconciliation = export.add_parser(
        "reconciliation", help="a month's reconciliation (exit 1 if it does not tie out)")
    reconciliation.add_argument("--period", required=True, help="YYYY-MM")
    reconciliation.add_argument("--out", required=True, help="file to write")
    reconciliation.add_argument("--format", choices=("csv", "json"),
                                help="default: json for *.json, else csv")
    reconciliation.set_defaults(handler=cmd_export_reconciliation)
    sub.add_parser("verify", help="replay every event and compare with the read models"
                   ).set_defaults(handler=cmd_verify)
    waldur = sub.add_parser("import", help="import from another service").add_subparsers(
        dest="source", required=True).add_parser(
        "waldur", help="customers, projects, offerings and credits of a Waldur API")
    waldur.add_argument("--url", required=True)
    waldur.add_argument("--token", required=True)
    waldur.set_defaults(handler=cmd_import_waldur)
    users = sub.add_parser("users", help="manage API users").add_subparsers(
        dest="action", required=True)
    create = users.add_parser("create", help="create a user and print its token")
    create.add_argument("name")
    flags = create.add_mutually_exclusive_group()
    flags.add_argument("--staff", action="store_true")
    flags.add_argument("--support", action="store_true")
    create.set_defaults(handler=cmd_users_create)
    roles = sub.add_parser("roles", help="grant or revoke roles").add_subparsers(
        dest="action", required=True)
    for action in ("grant", "revoke"):
        command = roles.add_parser(action)
        command.add_argument("name")
        command.add_argument("role")
        scope = command.add_mutually_exclusive_group(required=True)
        scope.add_argument("--customer")
        scope.add_argument("--project")
        command.set_defaults(handler=cmd_roles)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not getattr(args, "needs_services", True):
        return int(args.handler(args))
    create_tables()
    services = build_services()
    try:
        return int(args.handler(services, args))
    except (LedgerError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        services.close()


if __name__ == "__main__":
    sys.exit(main())
