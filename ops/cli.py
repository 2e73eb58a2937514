"""``bookstore``: the operator's command line (migrate, seed, create-admin, run)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from common.notices import silence_import_notices

silence_import_notices()

from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from common.config import SERVICE_PACKAGES, database_url  # noqa: E402


def _session(service: str) -> Session:
    return Session(create_engine(database_url(service)))


def migrate(args: argparse.Namespace) -> int:
    from ops import databases

    unknown = set(args.services) - set(SERVICE_PACKAGES)
    if unknown:
        print(f"error: unknown service(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for service in args.services or list(SERVICE_PACKAGES):
        databases.prepare(service)
        print(f"{service}: database ready, migrations applied")
    return 0


def seed(args: argparse.Namespace) -> int:
    from svc_catalog.seed import seed_catalog

    with _session("catalog") as session:
        added = seed_catalog(
            session, books=args.books, seed=args.seed, with_events=not args.skip_events
        )
    print(f"catalog: {added} books added ({args.books} wanted, seed {args.seed})")
    return 0


def create_admin(args: argparse.Namespace) -> int:
    from common.errors import BookstoreError
    from svc_auth.accounts import create_admin as make_admin

    password = os.environ.get(args.password_env) if args.password_env else None
    if password is None:
        password = getpass.getpass(f"Password for {args.email}: ")
    try:
        with _session("auth") as session:
            admin = make_admin(session, args.email, password, args.name)
            session.commit()
    except BookstoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"admin: {admin['email']} (id {admin['id']}, roles {', '.join(admin['roles'])})")
    return 0


def run(args: argparse.Namespace) -> int:
    from ops.run import run_platform

    return run_platform(books=args.books, port=args.port)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bookstore", description=__doc__)
    commands = root.add_subparsers(required=True, metavar="command")

    command = commands.add_parser("migrate", help="create databases and apply migrations")
    command.add_argument(
        "services",
        nargs="*",
        metavar="service",
        help=f"any of {', '.join(SERVICE_PACKAGES)} (default: all)",
    )
    command.set_defaults(handler=migrate)

    command = commands.add_parser("seed", help="load the demo catalog (idempotent)")
    command.add_argument("--books", type=int, default=3000)
    command.add_argument("--seed", type=int, default=42)
    command.add_argument(
        "--skip-events",
        action="store_true",
        help="do not write product.created events (for benchmark-sized loads)",
    )
    command.set_defaults(handler=seed)

    command = commands.add_parser("create-admin", help="create or promote an administrator")
    command.add_argument("--email", required=True)
    command.add_argument("--name")
    command.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password from this environment variable instead of prompting",
    )
    command.set_defaults(handler=create_admin)

    command = commands.add_parser("run", help="run the whole platform until Ctrl-C")
    command.add_argument("--books", type=int, default=3000, help="demo catalog size")
    command.add_argument("--port", type=int, default=8080)
    command.set_defaults(handler=run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
