"""Topology before traffic (common/topology.py, docs/decisions/0060): a producer that
starts and publishes before its consumers exist loses nothing, and an event no queue
takes stays in the outbox, visible, until one does.

Runs catalog and search alone, on a vhost and databases of their own (the suite's
platform would consume the events itself), in the order a first ``bin/run`` or a
deployment with a late consumer has them: catalog first, search later.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
import requests
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from common import topology
from common.config import service_config
from ops import databases
from ops.processes import ManagedProcess, service_process
from svc_bridge.subscription import QUEUE as BRIDGE_QUEUE
from svc_catalog.models import outbox
from svc_catalog.seed import seed_catalog
from tests import harness
from tests.support import eventually

BOOKS = 120
NAMESPACE = f"{harness.NAMESPACE}_topology"
VHOST = f"bookstore-{NAMESPACE}"
UNPUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


class LateConsumer:
    """catalog and search on their own vhost and databases; search starts on demand."""

    def __init__(self, log_dir: Any) -> None:
        self.amqp_uri = harness.amqp_uri(VHOST)
        self.urls = {
            service: harness.test_database_url(service, NAMESPACE)
            for service in ("catalog", "search")
        }
        self.metrics_port = harness.free_port()
        env = {
            "AMQP_URI": self.amqp_uri,
            "CATALOG_DATABASE_URL": self.urls["catalog"],
            "SEARCH_DATABASE_URL": self.urls["search"],
            "SEARCH_TRAIN_INTERVAL": "0",
        }
        self.processes: dict[str, ManagedProcess] = {
            "catalog": service_process(
                "catalog", log_dir, {**env, "METRICS_PORT": str(self.metrics_port)}
            ),
            "search": service_process("search", log_dir, env),
        }
        self.engines: dict[str, Engine] = {
            service: create_engine(url) for service, url in self.urls.items()
        }

    def start(self, service: str) -> None:
        self.processes[service].start()
        eventually(lambda: self.assert_answers(service), timeout=60)

    def assert_answers(self, service: str) -> dict[str, Any]:
        assert self.processes[service].running, self.processes[service].log_tail()
        try:
            with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=5) as rpc:
                return getattr(rpc, service).ping()
        except Exception as error:
            raise AssertionError(f"{service} does not answer: {error!r}") from error

    def scalar(self, service: str, query: str) -> Any:
        with self.engines[service].connect() as connection:
            return connection.scalar(text(query))

    def assert_scalar(self, service: str, query: str, expected: Any) -> None:
        found = self.scalar(service, query)
        assert found == expected, f"{query}: {found!r}"

    def metric(self, line_start: str) -> float:
        body = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        values = [line.split()[-1] for line in body.splitlines() if line.startswith(line_start)]
        return float(values[0]) if values else 0.0

    def stop(self) -> None:
        for managed in self.processes.values():
            managed.stop()
        for engine in self.engines.values():
            engine.dispose()


@pytest.fixture(scope="module")
def late(tmp_path_factory) -> Iterator[LateConsumer]:
    with suppress(subprocess.CalledProcessError):
        harness.rabbitmqctl("delete_vhost", VHOST)
    harness.rabbitmqctl("add_vhost", VHOST)
    harness.rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    platform = LateConsumer(tmp_path_factory.mktemp("late-consumer"))
    for service, url in platform.urls.items():
        databases.prepare(service, url, recreate=True)
    try:
        yield platform
    finally:
        platform.stop()
        with suppress(subprocess.CalledProcessError):
            harness.rabbitmqctl("delete_vhost", VHOST)


def test_a_consumer_started_after_the_producer_published_misses_nothing(late):
    # What `bookstore migrate` does before anything publishes.
    topology.declare_platform(late.amqp_uri, service_config("catalog"))
    late.start("catalog")
    with Session(late.engines["catalog"]) as session:
        assert seed_catalog(session, books=BOOKS, progress=False) == BOOKS
    eventually(lambda: late.assert_scalar("catalog", UNPUBLISHED, 0), timeout=60)
    assert late.scalar("search", "SELECT count(*) FROM search_documents") == 0

    late.start("search")

    def every_book_indexed() -> None:
        indexed = late.scalar("search", "SELECT count(*) FROM search_documents")
        assert indexed == BOOKS, f"{indexed} of {BOOKS} books indexed"

    eventually(every_book_indexed, timeout=90)


def test_an_event_no_queue_takes_is_held_visible_and_delivered_later(late):
    if not late.processes["catalog"].running:
        late.start("catalog")
    # Nothing takes a category.created but the bridge's queue: without it, nothing.
    with Connection(late.amqp_uri) as connection:
        connection.default_channel.queue_delete(BRIDGE_QUEUE)
    with Session(late.engines["catalog"]) as session:
        event_id = outbox.add(session, "category.created", {"id": "held", "slug": "held"})["id"]
        session.commit()

    def held() -> dict[str, Any]:
        answer = late.assert_answers("catalog")
        assert answer["status"] == "degraded", answer
        return answer

    answer = eventually(held, timeout=30)
    assert "category.created" in answer["detail"]
    assert answer["outbox_held"] == 1
    assert late.metric('bookstore_outbox_held{service="catalog"}') == 1
    assert (
        late.metric(
            'bookstore_outbox_unroutable_total{event_type="category.created",service="catalog"}'
        )
        >= 1
    )
    row = f"SELECT published_at IS NULL FROM outbox WHERE event_id = '{event_id}'"
    assert late.scalar("catalog", row) is True, "held in the outbox, not dropped"

    # The queue comes back (`bookstore declare-topology`): the event goes, once.
    topology.declare_platform(late.amqp_uri, service_config("catalog"))
    eventually(lambda: late.assert_scalar("catalog", row, False), timeout=60)
    assert late.assert_answers("catalog")["status"] == "ok"
    with Connection(late.amqp_uri) as connection:
        queue = connection.default_channel.queue_declare(BRIDGE_QUEUE, passive=True)
    assert queue.message_count == 1
