"""Two instances of a service on one vhost share its work (docs/decisions/0022).

On the scale-out cluster (conftest.py). RPC requests go to one shared queue, so the
instances compete for them; an event handler's queue is shared by every instance of the
consuming service, so each event is handled once, by one of them.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from common.errors import NotFound
from svc_catalog.models import CatalogOutboxMessage
from tests.deploy.prometheus import scrape, total
from tests.support import book, eventually

CALLS = 40
EVENTS = 20


def _per_instance(ports: dict[str, int], name: str, **labels: str) -> dict[str, float]:
    return {
        instance: total(scrape(f"http://127.0.0.1:{port}/metrics"), name, **labels)
        for instance, port in ports.items()
    }


def _handled_ids(cluster) -> dict[str, list[str]]:
    return {
        name: log.read_text().split() if log.exists() else []
        for name, (_port, log) in cluster.probes.items()
    }


def _event_ids(database_url: str) -> set[str]:
    with Session(create_engine(database_url)) as session:
        query = select(CatalogOutboxMessage.event_id).where(
            CatalogOutboxMessage.event_type == "product.created"
        )
        return {str(event_id) for event_id in session.scalars(query)}


def test_rpc_calls_are_spread_over_both_instances(cluster):
    labels = {"service": "catalog", "method": "get_product", "outcome": "expected_error"}
    before = _per_instance(cluster.catalogs, "bookstore_rpc_calls_total", **labels)
    with ClusterRpcProxy({"AMQP_URI": cluster.amqp_uri}, timeout=10) as rpc:
        for _ in range(CALLS):
            with pytest.raises(NotFound):
                rpc.catalog.get_product(str(uuid.uuid4()))
    after = _per_instance(cluster.catalogs, "bookstore_rpc_calls_total", **labels)

    served = {instance: after[instance] - before[instance] for instance in after}
    assert sum(served.values()) == CALLS, served
    assert all(count > 0 for count in served.values()), served
    for port in cluster.catalogs.values():
        samples = cluster.scrape(port)
        assert total(samples, "bookstore_rpc_duration_seconds_count", method="get_product") > 0
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok\n"


def test_each_event_is_handled_once_by_one_of_the_consumers(cluster):
    probe_ports = {name: port for name, (port, _log) in cluster.probes.items()}
    labels = {"service": "event_probe", "event_type": "product.created", "outcome": "ok"}
    counted_before = _per_instance(probe_ports, "bookstore_events_handled_total", **labels)
    handled_before = _handled_ids(cluster)
    events_before = _event_ids(cluster.database_url)
    with ClusterRpcProxy({"AMQP_URI": cluster.amqp_uri}, timeout=10) as rpc:
        for _ in range(EVENTS):
            rpc.catalog.create_product(book())
    published = _event_ids(cluster.database_url) - events_before
    assert len(published) == EVENTS

    def handled_now() -> dict[str, list[str]]:
        ids = {
            name: found[len(handled_before[name]) :]
            for name, found in _handled_ids(cluster).items()
        }
        assert sum(len(found) for found in ids.values()) >= EVENTS
        return ids

    ids = eventually(handled_now)
    every = [event_id for found in ids.values() for event_id in found]
    assert sorted(every) == sorted(published), "each event handled exactly once"
    assert all(ids.values()), f"both consumers took a share: {ids}"

    counted = _per_instance(probe_ports, "bookstore_events_handled_total", **labels)
    assert {name: counted[name] - counted_before[name] for name in counted} == {
        name: len(found) for name, found in ids.items()
    }

    def outbox_drained() -> None:
        backlog = _per_instance(cluster.catalogs, "bookstore_outbox_backlog", service="catalog")
        assert set(backlog.values()) == {0}

    eventually(outbox_drained)
