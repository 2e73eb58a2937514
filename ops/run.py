"""``bookstore run``: databases, demo data, every service and the gateway, kept running
(a crashed one is restarted: ops/supervisor.py) until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from email.utils import parseaddr
from pathlib import Path
from types import FrameType
from urllib.parse import unquote

import requests
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from common.config import REPO_ROOT, SERVICE_PACKAGES, database_url, service_config
from ops import databases, standins
from ops.instance import INSTANCE_ENV, database_name
from ops.processes import (
    ManagedProcess,
    gateway_process,
    service_process,
    stop_in_order,
    wait_until_ready,
)
from ops.supervisor import Supervisor
from svc_catalog.settings import Settings as CatalogSettings
from svc_notify.settings import Settings as NotifySettings

LOG_DIR = REPO_ROOT / "var" / "log"
READY_TIMEOUT_SECONDS = 90


def _prepare_data(books: int) -> tuple[str, str]:
    from common.topology import declare_platform
    from svc_auth.accounts import create_admin
    from svc_catalog.seed import seed_catalog

    for service in SERVICE_PACKAGES:
        databases.prepare(service)
        print(f"  {service}: database migrated")
    _check_signing_keys()
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


class StartupRefused(Exception):
    """Something ``bookstore run`` can see before starting anything, and says how to fix."""


def _check_signing_keys() -> None:
    """Auth would start but never sign a token if its keys were sealed with another
    passphrase (another checkout's, a lost .env.local): say so now, and how to recover,
    instead of waiting for readiness to time out."""
    from svc_auth.signing import unreadable_key_ids, unreadable_keys_advice

    with Session(create_engine(database_url("auth"))) as session:
        kids = unreadable_key_ids(session, os.environ["AUTH_KEY_PASSPHRASE"].encode())
    if kids:
        raise StartupRefused(f"auth cannot start. {unreadable_keys_advice(kids)}")


# Secrets with no default anywhere; bin/run generates them into .env.local.
REQUIRED_SECRETS = ("AUTH_KEY_PASSPHRASE", "BOOKSTORE_ADMIN_PASSWORD")


def run_platform(books: int, port: int, allow_loopback_webhooks: bool = False) -> int:
    missing = [name for name in REQUIRED_SECRETS if not os.environ.get(name)]
    if missing:
        print(
            f"error: set {' and '.join(missing)} (bin/run generates them into .env.local)",
            file=sys.stderr,
        )
        return 2
    instance = os.environ.get(INSTANCE_ENV)
    if instance:
        print(
            f"Instance {instance} (.env.local): databases {database_name(instance, '<service>')}, "
            f"RabbitMQ vhost {unquote(os.environ['AMQP_URI'].rsplit('/', 1)[1])}"
        )
    print("Preparing databases and demo data...")
    try:
        admin_email, admin_password = _prepare_data(books)
    except StartupRefused as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2

    env = {"GATEWAY_PORT": str(port)}
    if allow_loopback_webhooks:
        env["NOTIFY_WEBHOOK_ALLOW_LOOPBACK"] = "true"
    local_standins: list[ManagedProcess] = []
    try:
        _start_standins(env, local_standins)
    except (RuntimeError, OSError, requests.RequestException, BotoCoreError, ClientError) as error:
        print(f"error: the local stand-ins did not start: {error}", file=sys.stderr)
        stop_in_order(local_standins, [])
        return 1
    services = [service_process(service, LOG_DIR, env) for service in SERVICE_PACKAGES]
    gateway = gateway_process(LOG_DIR, env)
    processes: list[ManagedProcess] = [*services, gateway]
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
            f"  Webhooks    {_webhook_guard(allow_loopback_webhooks)}\n"
            f"{_standin_lines()}"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )
        # From here on a process that dies is started again (a crash before the platform
        # was ever ready is a configuration problem: wait_until_ready reports it instead).
        supervisor = Supervisor(processes, say=_say, clock=time.monotonic)
        supervisor.started()
        while not stop.wait(1.0):
            supervisor.check()
    except (RuntimeError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        print("Stopping...", flush=True)
        stop_in_order([gateway], services)
        stop_in_order(local_standins, [])
        print("Stopped.")
    return exit_code


def _start_standins(env: dict[str, str], started: list[ManagedProcess]) -> None:
    """Local AWS and a mail catcher where the environment points nowhere else
    (ops/standins.py), appended to ``started`` as they start; adds their addresses to
    ``env``. Not supervised: a restarted moto would have forgotten the bus and the rule."""
    state: dict[str, str] = {}
    if not os.environ.get("AWS_ENDPOINT_URL"):
        port = standins.free_port()
        aws = standins.local_aws_process(port, LOG_DIR)
        print("  starting a local AWS (moto: EventBridge, SES, SNS, S3)...", flush=True)
        aws.start()
        started.append(aws)
        endpoint = f"http://127.0.0.1:{port}"
        standins.wait_for_local_aws(endpoint, aws)
        sender = parseaddr(NotifySettings.load().email_from)[1]
        state["mirror_queue"] = standins.prepare_local_aws(
            endpoint, sender, CatalogSettings.load().images_bucket
        )
        state["aws_endpoint"] = endpoint
        env.update(
            {**standins.LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": endpoint},
            BRIDGE_EVENT_BUS=standins.EVENT_BUS,
        )
    if not (os.environ.get("NOTIFY_SMTP_HOST") or os.environ.get("NOTIFY_SMTP_PORT")):
        port = standins.free_port()
        catcher = standins.mail_catcher_process(port, LOG_DIR)
        print(f"  starting a mail catcher (smtp://127.0.0.1:{port})", flush=True)
        catcher.start()
        started.append(catcher)
        env.update(NOTIFY_SMTP_HOST="127.0.0.1", NOTIFY_SMTP_PORT=str(port))
        state["smtp"] = f"127.0.0.1:{port}"
    standins.save_state(state)


def _standin_lines() -> str:
    state = standins.load_state()
    lines = []
    if "smtp" in state:
        lines.append("  Mail        .venv/bin/bookstore mail   (every email sent, kept locally)\n")
    if "mirror_queue" in state:
        lines.append(
            "  Events      .venv/bin/bookstore events --follow   (mirrored to EventBridge: "
            "moto, locally)\n"
        )
    return "".join(lines)


def _webhook_guard(allow_loopback: bool) -> str:
    """What the notify service's destination guard lets through, for the banner."""
    if NotifySettings.load().webhook_allow_private:
        return "to any address, this machine and private networks included (set in the "
        "environment: NOTIFY_WEBHOOK_ALLOW_PRIVATE)"
    if allow_loopback:
        return "to public addresses and this machine (--allow-loopback-webhooks)"
    return "to public addresses only (--allow-loopback-webhooks lets in a receiver on this machine)"


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
