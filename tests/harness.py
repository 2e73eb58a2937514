"""The test platform: real services and the gateway, started once per test run.

Everything the suite starts is isolated from a developer's running ``bin/run``: its own
RabbitMQ virtual host (so RPC queues and event exchanges are separate) and its own
databases (``bookstore_<namespace>_<service>``, recreated and migrated at the start of a run).
``BOOKSTORE_TEST_NAMESPACE`` names both; by default it is ``test_`` and a short hash of
the checkout's path, so two checkouts (git worktrees, say) run their suites side by side
on one machine without dropping each other's vhost and databases.
Between tests, :meth:`Platform.reset_data` waits for the services to finish what they
are doing, drops the events nobody has handled yet, empties every table (found in the
database, so a new table needs no change here) except the migrations' bookkeeping and the
signing keys, and re-creates the administrator: each test starts from the same state, with
nothing of the one before still arriving, without paying for a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import psycopg2.errors
import requests
import yaml
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from common import contract, topology
from common.config import SERVICE_PACKAGES, database_url, service_config
from common.deadletters import parking_queue_name
from common.tracing import TRACES_FILE_ENV
from ops import databases, standins
from ops.processes import ManagedProcess, gateway_process, service_process, wait_until_ready
from svc_auth import passwords, roles
from tests import outside

NAMESPACE = (
    os.environ.get("BOOKSTORE_TEST_NAMESPACE")
    or "test_"
    + hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:6]
)
VHOST = f"bookstore-{NAMESPACE}"
# Tables that survive reset_data: the migrations' bookkeeping, and auth's signing keys (the
# gateway caches the public keys; new ones every test would only slow the suite down).
KEPT_TABLES = {"alembic_version", "signing_keys"}
#: How long reset_data waits for the services' transactions to end before going on (a
#: test may leave a process frozen mid-transaction; TRUNCATE then waits on its locks).
QUIET_TIMEOUT_SECONDS = 10.0
ADMIN_EMAIL = "admin@example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


def queue_consumers(vhost: str, queue_prefix: str) -> int:
    """How many consumers the queues whose names start with ``queue_prefix`` have."""
    counts = _queue_column(vhost, "consumers")
    return sum(count for name, count in counts.items() if name.startswith(queue_prefix))


def queue_messages(vhost: str) -> dict[str, int]:
    """Queue name -> how many messages it holds, waiting or delivered and not yet
    acknowledged (a consumer acknowledges when its handler has finished, so 0 means every
    delivery so far has had its whole effect)."""
    return _queue_column(vhost, "messages")


def _queue_column(vhost: str, column: str) -> dict[str, int]:
    """Queue name -> one of ``rabbitmqctl list_queues``' numeric columns."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", column],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split("\t") for line in listing.splitlines()]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def event_probe_process(
    name: str, log_dir: Path, env: dict[str, str], probe_log: Path
) -> ManagedProcess:
    """tests/deploy/probe_service.py, a consumer of catalog's ``product.created`` that
    writes the ids of the events it handled to ``probe_log``; broker from ``env``."""
    config = log_dir / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"AMQP_URI": env["AMQP_URI"]}))
    return ManagedProcess(
        name=name,
        command=[
            sys.executable,
            "-m",
            "ops.nameko_cli",
            "run",
            "--config",
            str(config),
            "tests.deploy.probe_service",
        ],
        log_path=log_dir / f"{name}.log",
        env={**env, "PROBE_LOG": str(probe_log)},
    )


def test_database_url(service: str, namespace: str = NAMESPACE) -> str:
    """The service's configured server and credentials, with a test database name."""
    url = make_url(database_url(service))
    return url.set(database=f"bookstore_{namespace}_{service}").render_as_string(
        hide_password=False
    )


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
    _event_queues: list[str] | None = None
    #: The SMTP server notify sends to, and moto's address (tests/outside.py).
    smtp: outside.SmtpServer | None = None
    aws_endpoint: str = ""
    #: service -> the port its /metrics, /healthz and /readyz answer on
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def aws(self, service: str) -> Any:
        return outside.aws(service, self.aws_endpoint)

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    def spans(self, trace_id: str) -> list[dict[str, Any]]:
        """The finished spans of one trace (hex id) that the processes have exported."""
        path = Path(self.env[TRACES_FILE_ENV])
        if not path.exists():
            return []
        with path.open() as lines:
            spans = [json.loads(line) for line in lines if trace_id in line]
        return [span for span in spans if span["context"]["trace_id"] == f"0x{trace_id}"]

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
        # The previous test's work must not land in this one: handlers still running
        # finish first, then the events nobody has taken yet are dropped, then the
        # tables are emptied.
        self._wait_until_no_transaction()
        self._purge_event_queues()
        for service in self.database_urls:
            self._empty_tables(service)
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

    def _wait_until_no_transaction(self) -> None:
        """Until no service connection is inside a transaction: every handler, RPC worker
        and timer that was writing has committed or rolled back. (One between two of its
        transactions, waiting on another service, is not seen: TRUNCATE's deadlock retry
        below is for it.) Cheap, unlike asking RabbitMQ what is unacknowledged
        (``rabbitmqctl`` takes a second): one query on PostgreSQL's statistics view."""
        names = [make_url(url).database for url in self.database_urls.values()]
        deadline = time.monotonic() + QUIET_TIMEOUT_SECONDS
        with self.engine("auth").connect() as connection:
            while time.monotonic() < deadline:
                busy = connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(:names) "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                        "AND state IN ('active', 'idle in transaction', "
                        "'idle in transaction (aborted)')"
                    ),
                    {"names": names},
                )
                connection.rollback()
                if not busy:
                    return
                time.sleep(0.02)

    def _purge_event_queues(self) -> None:
        """Drops the events waiting in every consumer's queue and parking queue (the
        topology's own list, common/topology.py): they were the previous test's."""
        with self.broker() as connection:
            channel = connection.default_channel
            for name in self.event_queues:
                channel.queue_purge(name)

    @property
    def event_queues(self) -> list[str]:
        if self._event_queues is None:
            queues = {
                subscription.queue.name: subscription.queue
                for subscription in topology.platform_subscriptions(service_config("catalog"))
            }
            self._event_queues = [
                *queues,
                *(
                    parking_queue_name(name)
                    for name, queue in queues.items()
                    if queue.queue_arguments
                ),
            ]
        return self._event_queues

    def _empty_tables(self, service: str, attempts: int = 5) -> None:
        # The services keep working between tests (consumers finishing the previous test's
        # events): TRUNCATE locks table after table and can deadlock with one of their
        # transactions. PostgreSQL then aborts one side; when it is ours, try again.
        for attempt in range(attempts):
            try:
                with self.engine(service).begin() as connection:
                    tables = connection.scalars(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    ).all()
                    emptied = [table for table in tables if table not in KEPT_TABLES]
                    if emptied:
                        connection.execute(
                            text(f"TRUNCATE {', '.join(emptied)} RESTART IDENTITY CASCADE")
                        )
                return
            except OperationalError as error:
                if not isinstance(error.orig, psycopg2.errors.DeadlockDetected):
                    raise
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

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
        token = self.login(email, password)
        me = requests.get(
            f"{self.api}/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        me.raise_for_status()
        return me.json(), token

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
        if self.smtp is not None:
            self.smtp.stop()
        for engine in self.engines.values():
            engine.dispose()


def start_platform(namespace: str = NAMESPACE, extra_env: dict[str, str] | None = None) -> Platform:
    """Every service and a gateway on a vhost and databases of their own. The suite's
    platform uses the run's namespace; a test module may start another (``namespace``
    like ``<run namespace>_stripe``) configured differently by ``extra_env``."""
    vhost = f"bookstore-{namespace}"
    log_dir = Path(tempfile.mkdtemp(prefix="bookstore-test-logs-"))
    with suppress(subprocess.CalledProcessError):  # there may be none
        rabbitmqctl("delete_vhost", vhost)
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    # As `bookstore migrate` does: every consumer's queue exists before any event.
    topology.declare_platform(amqp_uri(vhost), service_config("catalog"))

    database_urls = {service: test_database_url(service, namespace) for service in SERVICE_PACKAGES}
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
    smtp = outside.SmtpServer(free_port())
    smtp.start()
    moto_port = free_port()
    moto = outside.moto_process(moto_port, log_dir)
    moto.start()
    aws_endpoint = f"http://127.0.0.1:{moto_port}"
    env = {
        "AMQP_URI": amqp_uri(vhost),
        # An event the contract (openapi/asyncapi.yaml) does not allow fails its change.
        contract.ENFORCE_ENV: "enforce",
        "AUTH_KEY_PASSPHRASE": secrets.token_urlsafe(24),
        # Long enough that the session's admin token outlives the whole suite.
        "AUTH_ACCESS_TOKEN_TTL": "3600",
        "GATEWAY_PORT": str(port),
        "GATEWAY_VALIDATE_RESPONSES": "1",
        "GATEWAY_RPC_TIMEOUT": "5",
        # Short, so the tests of stale checkouts do not wait long for the timer.
        "ORDER_CHECKOUT_WINDOW_SECONDS": "10",
        "ORDER_ACTION_WINDOW_SECONDS": "20",
        # Tests train the recommender when they want to (search.train_recommender).
        "SEARCH_TRAIN_INTERVAL": "0",  # tests train on demand
        # Tests reconcile the index when they want to (search.reconcile_index).
        "SEARCH_RECONCILE_INTERVAL": "0",
        # Nor would the analytics windows' timer wait for a test's deliberate drift.
        "ANALYTICS_RECONCILE_INTERVAL": "0",
        # The suite makes many requests from one address: limits are tested on a gateway
        # of their own (tests/e2e/test_rate_limits.py), with keys of their own.
        "GATEWAY_RATE_LIMITS": "default=1000000/1s,credentials=1000000/1s",
        "GATEWAY_RATE_LIMIT_PREFIX": f"bookstore-{namespace}:{uuid.uuid4().hex}:",
        # reset_data empties the tables between tests without an event, which a read
        # cache would not hear of: the cache has tests of its own, on a gateway of its
        # own (tests/e2e/test_read_cache.py).
        "GATEWAY_READ_CACHE": "0",
        # One worker per test gateway: the suite starts many, and a test must not depend
        # on which worker's state answers it (tests that want several say so).
        "GATEWAY_WORKERS": "1",
        # Every process traces, to one JSON-lines file (tests/e2e/test_tracing.py reads
        # it), exported often so a test need not wait the default 5 s for its spans.
        TRACES_FILE_ENV: str(log_dir / "traces.jsonl"),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # Notifications and the bridge talk to the SMTP server and moto above, and retry
        # quickly so the tests of failures see every attempt and the parking.
        "NOTIFY_SMTP_HOST": "127.0.0.1",
        "NOTIFY_SMTP_PORT": str(smtp.port),
        "NOTIFY_MAX_ATTEMPTS": "3",
        "NOTIFY_RETRY_BASE_SECONDS": "0.3",
        "NOTIFY_RETRY_MAX_SECONDS": "1",
        "NOTIFY_WEBHOOK_TIMEOUT": "1",
        # The tests' webhook receivers listen on loopback (the refusal: unit tests).
        "NOTIFY_WEBHOOK_ALLOW_PRIVATE": "true",
        "NOTIFY_POLL_SECONDS": "0.2",
        "AWS_ENDPOINT_URL": aws_endpoint,
        **outside.AWS_TEST_ENV,
        "BRIDGE_EVENT_BUS": "bookstore",
        # Product images in moto's S3; objects of deleted images go at the next sweep
        # (the grace period for confirmations in flight is a production concern).
        "CATALOG_IMAGES_BUCKET": f"bookstore-images-{namespace.replace('_', '-')}",
        "CATALOG_IMAGES_DELETE_GRACE_SECONDS": "0",
        "BRIDGE_RETRY_BASE_SECONDS": "0.1",
        "BRIDGE_BATCH_WAIT_SECONDS": "0.1",
        **{f"{service.upper()}_DATABASE_URL": url for service, url in database_urls.items()},
        **(extra_env or {}),
    }
    # Each service serves /metrics on a port of its own (tests/deploy/test_dashboard.py).
    metrics_ports = {service: free_port() for service in SERVICE_PACKAGES}
    processes = {
        service: service_process(
            service, log_dir, {**env, "METRICS_PORT": str(metrics_ports[service])}
        )
        for service in SERVICE_PACKAGES
    }
    processes["gateway"] = gateway_process(log_dir, env)
    processes["moto"] = moto
    platform = Platform(
        base_url=f"http://127.0.0.1:{port}",
        amqp_uri=env["AMQP_URI"],
        database_urls=database_urls,
        processes=processes,
        log_dir=log_dir,
        env=env,
        admin=admin,
        smtp=smtp,
        aws_endpoint=aws_endpoint,
        metrics_ports=metrics_ports,
    )
    platform.reset_data()
    try:
        standins.wait_for_local_aws(aws_endpoint, moto, timeout=30)
        platform.aws("events").create_event_bus(Name=env["BRIDGE_EVENT_BUS"])
        platform.aws("s3").create_bucket(Bucket=env["CATALOG_IMAGES_BUCKET"])
    except BaseException:  # pytest-timeout too: never leave services running
        platform.stop()
        raise
    for process in processes.values():
        if not process.running:
            process.start()
    try:
        wait_until_ready(platform.base_url, list(processes.values()), timeout=60)
    except BaseException:  # pytest-timeout too: never leave services running
        platform.stop()
        raise
    return platform


def stop_platform(platform: Platform) -> None:
    platform.stop()
    if not os.environ.get("BOOKSTORE_KEEP_TEST_STATE"):
        vhost = platform.amqp_uri.rsplit("/", 1)[1]
        with suppress(subprocess.CalledProcessError):
            rabbitmqctl("delete_vhost", unquote(vhost))
