"""The scale-out cluster: two catalogs and two event consumers on a vhost of their own.

A RabbitMQ vhost and a catalog database for this cluster alone, two catalog instances and
two instances of an event consumer (probe_service.py), each serving its metrics on a port
of its own.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import databases
from ops.processes import ManagedProcess, service_process
from tests import harness
from tests.deploy.prometheus import Samples, scrape

VHOST = f"{harness.VHOST}-scale-out"


@dataclass
class Cluster:
    amqp_uri: str
    database_url: str
    catalogs: dict[str, int]  # instance name -> metrics port
    probes: dict[str, tuple[int, Path]]  # instance name -> (metrics port, log of handled ids)

    def scrape(self, port: int) -> Samples:
        return scrape(f"http://127.0.0.1:{port}/metrics")


def _consumers(queue_prefix: str) -> int:
    return harness.queue_consumers(VHOST, queue_prefix)


@pytest.fixture(scope="session")
def cluster(platform: harness.Platform, tmp_path_factory) -> Iterator[Cluster]:
    with suppress(subprocess.CalledProcessError):
        harness.rabbitmqctl("delete_vhost", VHOST)
    harness.rabbitmqctl("add_vhost", VHOST)
    harness.rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    # A database of its own too: a relay of the main platform's catalog would otherwise
    # publish this cluster's events to the main vhost.
    database_url = harness.test_database_url("catalog").replace("_catalog", "_scale_catalog")
    databases.prepare("catalog", database_url, recreate=True)

    log_dir = tmp_path_factory.mktemp("scale-out")
    amqp_uri = harness.amqp_uri(VHOST)
    env = {**platform.env, "AMQP_URI": amqp_uri, "CATALOG_DATABASE_URL": database_url}
    processes: list[ManagedProcess] = []
    catalogs: dict[str, int] = {}
    probes: dict[str, tuple[int, Path]] = {}
    for name in ("catalog-a", "catalog-b"):
        catalogs[name] = harness.free_port()
        processes.append(
            service_process("catalog", log_dir, {**env, "METRICS_PORT": str(catalogs[name])}, name)
        )
    for name in ("probe-a", "probe-b"):
        probes[name] = (harness.free_port(), log_dir / f"{name}.ids")
        processes.append(
            harness.event_probe_process(
                name, log_dir, {**env, "METRICS_PORT": str(probes[name][0])}, probes[name][1]
            )
        )
    for process in processes:
        process.start()
    try:
        deadline = time.monotonic() + 60
        while _consumers("rpc-catalog") < 2 or _consumers("evt-catalog-product.created") < 2:
            for process in processes:
                assert process.running, f"{process.name} died:\n{process.log_tail()}"
            assert time.monotonic() < deadline, "the instances did not all start consuming"
            time.sleep(0.5)
        yield Cluster(amqp_uri, database_url, catalogs, probes)
    finally:
        for process in processes:
            process.stop()
        with suppress(subprocess.CalledProcessError):
            harness.rabbitmqctl("delete_vhost", VHOST)
