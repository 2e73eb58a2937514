"""``bookstore run``: databases, demo data, every service and the gateway, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from common.config import REPO_ROOT, SERVICE_PACKAGES, database_url
from ops import databases
from ops.processes import ManagedProcess, gateway_process, service_process, wait_until_ready

LOG_DIR = REPO_ROOT / "var" / "log"
READY_TIMEOUT_SECONDS = 90


def _prepare_data(books: int) -> tuple[str, str]:
    from common.config import service_config
    from common.topology import declare_platform
    from svc_auth.accounts import create_admin
    from svc_catalog.seed import seed_catalog

    for service in SERVICE_PACKAGES:
        databases.prepare(service)
        print(f"  {service}: database migrated")
    # Before the demo catalog's events are written: every consumer's queue holds them
    # until its service has started (docs/decisions/0060).
    config = service_config("catalog")
    declared = declare_platform(config["AMQP_URI"], config)
    print(f"  broker: {declared['queues']} event queues declared")
    with Session(create_engine(database_url("catalog"))) as session:
        added = seed_catalog(session, books=books)
    print(f"  catalog: demo catalog of {books} books ({added} added now)")
    email = os.environ.get("BOOKSTORE_ADMIN_EMAIL", "admin@example.com")
    password = os.environ["BOOKSTORE_ADMIN_PASSWORD"]
    with Session(create_engine(database_url("auth"))) as session:
        create_admin(session, email, password, "Administrator")
        session.commit()
    return email, password


# Secrets with no default anywhere; bin/run generates them into .env.local.
REQUIRED_SECRETS = ("AUTH_KEY_PASSPHRASE", "BOOKSTORE_ADMIN_PASSWORD")


def run_platform(books: int, port: int) -> int:
    missing = [name for name in REQUIRED_SECRETS if not os.environ.get(name)]
    if missing:
        print(
            f"error: set {' and '.join(missing)} (bin/run generates them into .env.local)",
            file=sys.stderr,
        )
        return 2
    print("Preparing databases and demo data...")
    admin_email, admin_password = _prepare_data(books)

    env = {
        "GATEWAY_PORT": str(port),
        # Everything runs on this machine, webhook receivers under development included.
        "NOTIFY_WEBHOOK_ALLOW_PRIVATE": os.environ.get("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true"),
    }
    processes: list[ManagedProcess] = [
        *(service_process(service, LOG_DIR, env) for service in SERVICE_PACKAGES),
        gateway_process(LOG_DIR, env),
    ]
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    base_url = f"http://127.0.0.1:{port}"
    names = ", ".join(managed.name for managed in processes)
    print(f"Starting {names} (logs in {_relative(LOG_DIR)})...")
    for managed in processes:
        managed.start()
    exit_code = 0
    try:
        wait_until_ready(base_url, processes, READY_TIMEOUT_SECONDS)
        print(
            f"\nThe bookstore is running.\n"
            f"  API         {base_url}/api/v1   (try: curl {base_url}/api/v1/products?limit=3)\n"
            f"  Swagger UI  {base_url}/docs\n"
            f"  Spec        {base_url}/openapi.json\n"
            f"  Admin       {admin_email} / {admin_password}\n"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stop.wait(1.0):
            dead = [managed for managed in processes if not managed.running]
            if dead:
                for managed in dead:
                    print(
                        f"{managed.name} exited; its log ends:\n{managed.log_tail()}",
                        file=sys.stderr,
                    )
                exit_code = 1
                break
    except (RuntimeError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        print("Stopping...", flush=True)
        # The gateway first, so nothing new comes in, then the services.
        for managed in reversed(processes):
            managed.stop()
        print("Stopped.")
    return exit_code


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
