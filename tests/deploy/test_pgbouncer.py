"""A service works through a real PgBouncer in transaction pooling, configured by the
checked-in deploy/pgbouncer/pgbouncer.ini (docs/decisions/0096): many client connections
from the service, few server connections to PostgreSQL, and what needs a transaction's
guarantees (reservations under advisory locks, the outbox relay's row locks) still holds.

PgBouncer is Debian's package (bin/bootstrap installs it); it refuses to run as root, so
it drops to the ``postgres`` user, as a packaged PgBouncer would run.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from common import topology
from common.config import REPO_ROOT, service_config
from ops import databases
from ops.processes import ManagedProcess, service_process
from svc_catalog.models import CatalogOutboxMessage
from tests import harness
from tests.support import book, eventually

VHOST = f"{harness.VHOST}-pgbouncer"
CHECKED_IN = REPO_ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini"
RESERVATIONS = 40
# The session platform may start in this module's set-up, on a busy machine.
pytestmark = pytest.mark.timeout(400)
WORKERS = 20


@dataclass
class Bounced:
    amqp_uri: str
    direct_url: str  # the catalog database itself, for checking
    port: int  # PgBouncer's
    database: str
    max_db_connections: int

    def admin(self, command: str) -> list[tuple]:
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, dbname="pgbouncer", user="bookstore",
            password="bookstore",
        )  # fmt: skip
        connection.autocommit = True  # the admin console has no transactions
        try:
            with connection.cursor() as cursor:
                cursor.execute(command)
                columns = [column.name for column in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()


def _pgbouncer_config(directory: Path, port: int) -> configparser.ConfigParser:
    """The checked-in file, with this machine's addresses and paths."""
    config = configparser.ConfigParser(inline_comment_prefixes=(";",), strict=True)
    config.optionxform = str  # keep names as written
    config.read(CHECKED_IN)
    server = make_url(harness.test_database_url("catalog"))
    config["databases"] = {"*": f"host={server.host} port={server.port}"}
    config["pgbouncer"].update(
        listen_addr="127.0.0.1",
        listen_port=str(port),
        auth_file=str(directory / "userlist.txt"),
        unix_socket_dir="",
        pidfile="",  # in the foreground: no pid file (the directory is not postgres's)
    )
    return config


@pytest.fixture(scope="module")
def bounced(platform: harness.Platform) -> Iterator[Bounced]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert os.path.exists(binary), "PgBouncer is not installed: run bin/bootstrap"
    directory = Path(tempfile.mkdtemp(prefix="bookstore-pgbouncer-"))
    directory.chmod(0o755)  # PgBouncer runs as postgres and reads its files
    port = harness.free_port()
    config = _pgbouncer_config(directory, port)
    with (directory / "pgbouncer.ini").open("w") as ini:
        config.write(ini)
    shutil.copy(REPO_ROOT / "deploy" / "pgbouncer" / "userlist.txt", directory / "userlist.txt")
    for path in directory.iterdir():
        path.chmod(0o644)

    with suppress(subprocess.CalledProcessError):
        harness.rabbitmqctl("delete_vhost", VHOST)
    harness.rabbitmqctl("add_vhost", VHOST)
    harness.rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    # As `bookstore migrate` does: every consumer's queue exists, so the catalog's relay
    # has somewhere to deliver its events (an event no queue takes is held, by design).
    topology.declare_platform(harness.amqp_uri(VHOST), service_config("catalog"))
    direct_url = harness.test_database_url("catalog").replace("_catalog", "_bounced_catalog")
    databases.prepare("catalog", direct_url, recreate=True)  # directly: CREATE DATABASE
    through = make_url(direct_url).set(host="127.0.0.1", port=port)

    bouncer = ManagedProcess(
        name="pgbouncer",
        command=[binary, "-u", "postgres", str(directory / "pgbouncer.ini")],
        log_path=directory / "pgbouncer.log",
        env=dict(os.environ),
    )
    bouncer.start()
    amqp_uri = harness.amqp_uri(VHOST)
    env = {
        **platform.env,
        "AMQP_URI": amqp_uri,
        "CATALOG_DATABASE_URL": through.render_as_string(hide_password=False),
        # More workers, and so more client connections, than PgBouncer's server pool.
        "CATALOG_MAX_WORKERS": str(WORKERS),
        "CATALOG_DB_POOL_SIZE": str(WORKERS),
    }
    catalog = service_process("catalog", directory, env, "catalog-bounced")
    catalog.start()
    try:
        deadline = time.monotonic() + 60
        while harness.queue_consumers(VHOST, "rpc-catalog") < 1:
            assert bouncer.running, f"PgBouncer died:\n{bouncer.log_tail()}"
            assert catalog.running, f"catalog died:\n{catalog.log_tail()}"
            assert time.monotonic() < deadline, f"catalog did not start:\n{catalog.log_tail()}"
            time.sleep(0.5)
        yield Bounced(
            amqp_uri,
            direct_url,
            port,
            make_url(direct_url).database,
            int(config["pgbouncer"]["max_db_connections"]),
        )
    finally:
        catalog.stop()
        bouncer.stop()
        with suppress(subprocess.CalledProcessError):
            harness.rabbitmqctl("delete_vhost", VHOST)


def _server_connections(bounced: Bounced) -> int:
    """Connections PostgreSQL holds for the catalog database (all of them PgBouncer's)."""
    engine = create_engine(make_url(bounced.direct_url).set(database="postgres"))
    try:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
            return connection.execute(query, {"name": bounced.database}).scalar_one()
    finally:
        engine.dispose()


def test_a_service_works_through_pgbouncer_in_transaction_pooling(bounced):
    (pool,) = [row for row in bounced.admin("SHOW POOLS") if row["database"] == bounced.database]
    assert pool["pool_mode"] == "transaction"
    with ClusterRpcProxy({"AMQP_URI": bounced.amqp_uri}, timeout=30) as rpc:
        product = rpc.catalog.create_product(book())
        rpc.catalog.set_stock(product["id"], RESERVATIONS * 2)
        # Concurrent reservations of one book: each takes a transaction-scoped advisory
        # lock and row locks, which transaction pooling keeps within one server connection.
        replies = [
            rpc.catalog.reserve.call_async(
                str(uuid.uuid4()), [{"product_id": product["id"], "quantity": 1}], 600
            )
            for _ in range(RESERVATIONS)
        ]
        for reply in replies:
            reply.result()
        stock = rpc.catalog.get_stock(product["id"])
    assert (stock["reserved"], stock["available"]) == (RESERVATIONS, RESERVATIONS)

    # The service opened more connections to PgBouncer than PgBouncer opened to PostgreSQL.
    clients = [row for row in bounced.admin("SHOW CLIENTS") if row["database"] == bounced.database]
    assert len(clients) > bounced.max_db_connections, len(clients)
    assert 0 < _server_connections(bounced) <= bounced.max_db_connections

    # The outbox relay (row locks, SKIP LOCKED) publishes through PgBouncer too.
    def relayed() -> None:
        with Session(create_engine(bounced.direct_url)) as session:
            unsent = select(func.count()).where(CatalogOutboxMessage.published_at.is_(None))
            assert session.scalar(unsent) == 0

    eventually(relayed)
