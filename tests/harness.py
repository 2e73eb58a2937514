"""The test platform: real services and the gateway, started once per test run.

Everything the suite starts is isolated from a developer's running ``bin/run``: its own
RabbitMQ virtual host (so RPC queues and event exchanges are separate) and its own
databases (``bookstore_test_<service>``, recreated and migrated at the start of a run).
Between tests, :meth:`Platform.reset_data` empties every table except the signing keys
and re-creates the administrator, so each test starts from the same state without paying
for a restart.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from common.config import SERVICE_PACKAGES, database_url
from ops import databases
from ops.processes import ManagedProcess, gateway_process, service_process, wait_until_ready
from svc_auth import passwords, roles

VHOST = "bookstore-test"
# Tables that survive reset_data: the migration state, and auth's signing keys (the
# gateway caches the public keys; new ones every test would only slow the suite down).
KEPT_TABLES = {"alembic_version", "signing_keys"}
ADMIN_EMAIL = "admin@example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


def test_database_url(service: str) -> str:
    """The service's configured server and credentials, with a test database name."""
    url = make_url(database_url(service))
    return url.set(database=f"bookstore_test_{service}").render_as_string(hide_password=False)


def amqp_uri(vhost: str = VHOST, port: int = 5672) -> str:
    return f"pyamqp://guest:guest@127.0.0.1:{port}/{quote(vhost, safe='')}"


@dataclass
class Admin:
    id: str
    email: str
    password: str
    password_hash: str


@dataclass
class Platform:
    """Handles on the running test platform."""

    base_url: str
    amqp_uri: str
    database_urls: dict[str, str]
    processes: dict[str, ManagedProcess]
    log_dir: Path
    env: dict[str, str]
    admin: Admin
    engines: dict[str, Engine] = field(default_factory=dict)
    _admin_token: str | None = None

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    def engine(self, service: str) -> Engine:
        if service not in self.engines:
            self.engines[service] = create_engine(self.database_urls[service])
        return self.engines[service]

    @contextmanager
    def rpc(self, timeout: float = 10) -> Iterator[Any]:
        """A nameko cluster proxy into the test vhost, like an operator's shell."""
        with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=timeout) as proxy:
            yield proxy

    def broker(self) -> Connection:
        return Connection(self.amqp_uri)

    def reset_data(self) -> None:
        for service in self.database_urls:
            with self.engine(service).begin() as connection:
                tables = connection.scalars(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).all()
                emptied = [table for table in tables if table not in KEPT_TABLES]
                if emptied:
                    connection.execute(
                        text(f"TRUNCATE {', '.join(emptied)} RESTART IDENTITY CASCADE")
                    )
        with self.engine("auth").begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, name, roles) "
                    "VALUES (:id, :email, :hash, 'Administrator', :roles)"
                ),
                {
                    "id": self.admin.id,
                    "email": self.admin.email,
                    "hash": self.admin.password_hash,
                    "roles": [roles.CUSTOMER, roles.ADMIN],
                },
            )

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.login(self.admin.email, self.admin.password)
        return self._admin_token

    def login(self, email: str, password: str) -> str:
        response = requests.post(
            f"{self.api}/auth/login", json={"email": email, "password": password}, timeout=10
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def new_customer(self, password: str = "a long enough password") -> tuple[dict, str]:
        """Registers a customer with a unique email; returns (user, access token)."""
        email = f"reader-{uuid.uuid4().hex[:12]}@example.com"
        response = requests.post(
            f"{self.api}/auth/register",
            json={"email": email, "password": password, "accept_terms": True},
            timeout=10,
        )
        response.raise_for_status()
        return response.json(), self.login(email, password)

    def start_gateway(self, amqp_uri: str, **env: str) -> tuple[ManagedProcess, str]:
        """Another gateway process (e.g. one whose broker goes through a cuttable proxy)."""
        port = free_port()
        process = gateway_process(
            self.log_dir / f"gateway-{port}",
            {**self.env, "AMQP_URI": amqp_uri, "GATEWAY_PORT": str(port), **env},
        )
        process.start()
        return process, f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        for engine in self.engines.values():
            engine.dispose()


def start_platform() -> Platform:
    log_dir = Path(tempfile.mkdtemp(prefix="bookstore-test-logs-"))
    with suppress(subprocess.CalledProcessError):  # there may be none
        rabbitmqctl("delete_vhost", VHOST)
    rabbitmqctl("add_vhost", VHOST)
    rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")

    database_urls = {service: test_database_url(service) for service in SERVICE_PACKAGES}
    for service, url in database_urls.items():
        databases.prepare(service, url, recreate=True)

    admin_password = secrets.token_urlsafe(16)
    admin = Admin(
        id=str(uuid.uuid4()),
        email=ADMIN_EMAIL,
        password=admin_password,
        password_hash=passwords.hash_password(admin_password),
    )
    port = free_port()
    env = {
        "AMQP_URI": amqp_uri(),
        "AUTH_KEY_PASSPHRASE": secrets.token_urlsafe(24),
        # Long enough that the session's admin token outlives the whole suite.
        "AUTH_ACCESS_TOKEN_TTL": "3600",
        "GATEWAY_PORT": str(port),
        "GATEWAY_VALIDATE_RESPONSES": "1",
        "GATEWAY_RPC_TIMEOUT": "5",
        **{f"{service.upper()}_DATABASE_URL": url for service, url in database_urls.items()},
    }
    processes = {service: service_process(service, log_dir, env) for service in SERVICE_PACKAGES}
    processes["gateway"] = gateway_process(log_dir, env)
    platform = Platform(
        base_url=f"http://127.0.0.1:{port}",
        amqp_uri=env["AMQP_URI"],
        database_urls=database_urls,
        processes=processes,
        log_dir=log_dir,
        env=env,
        admin=admin,
    )
    platform.reset_data()
    for process in processes.values():
        process.start()
    try:
        wait_until_ready(platform.base_url, list(processes.values()), timeout=60)
    except Exception:
        platform.stop()
        raise
    return platform


def stop_platform(platform: Platform) -> None:
    platform.stop()
    if not os.environ.get("BOOKSTORE_KEEP_TEST_STATE"):
        with suppress(subprocess.CalledProcessError):
            rabbitmqctl("delete_vhost", VHOST)
