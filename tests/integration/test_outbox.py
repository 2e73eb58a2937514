"""The transactional outbox against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import suppress
from datetime import timedelta
from functools import partial

import pytest
from amqp.exceptions import AMQPError
from kombu import Queue
from kombu.exceptions import KombuError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from common.events import ConfirmingPublisher, purge_published, relay_batch
from svc_catalog.models import CatalogOutboxMessage, outbox
from tests.harness import amqp_uri
from tests.tcp_proxy import TcpProxy

# A source no service uses, so the running catalog's relay never touches these events.
SOURCE = "outbox_test"


def add_events(session: Session, count: int) -> list[str]:
    ids = [outbox.add(session, f"thing.happened_{n}", {"n": n})["id"] for n in range(count)]
    session.commit()
    return ids


def unpublished(session: Session) -> int:
    return session.scalar(
        select(func.count())
        .select_from(CatalogOutboxMessage)
        .where(CatalogOutboxMessage.published_at.is_(None))
    )


@pytest.fixture
def quiet_relay(platform):
    """Freezes the running catalog service so its own relay does not race the test's."""
    import os
    import signal

    pid = platform.processes["catalog"].process.pid
    os.kill(pid, signal.SIGSTOP)
    yield
    os.kill(pid, signal.SIGCONT)


def test_events_are_written_in_the_callers_transaction(catalog_db, quiet_relay):
    outbox.add(catalog_db, "thing.happened", {})
    catalog_db.rollback()
    assert unpublished(catalog_db) == 0, "a rolled-back change leaves no event behind"
    envelope = outbox.add(catalog_db, "thing.happened", {"a": 1})
    catalog_db.commit()
    assert uuid.UUID(envelope["id"])
    assert envelope["source"] == "catalog"
    assert unpublished(catalog_db) == 1


@pytest.fixture
def bound_queue(platform):
    """A queue that takes every event of the test's source, deleted afterwards."""
    exchange = ConfirmingPublisher(platform.amqp_uri, SOURCE, {}).exchange
    queue = Queue(f"test-outbox-{uuid.uuid4().hex[:8]}", exchange, routing_key="#")
    with platform.broker() as connection:
        queue(connection.default_channel).declare()
    yield queue
    with platform.broker() as connection:
        queue(connection.default_channel).delete()


def test_relay_publishes_in_order_and_marks_rows(platform, catalog_db, quiet_relay, bound_queue):
    ids = add_events(catalog_db, 5)
    publisher = ConfirmingPublisher(platform.amqp_uri, SOURCE, {})
    received = []
    with (
        platform.broker() as connection,
        connection.Consumer(
            bound_queue,
            callbacks=[lambda body, message: (received.append(body), message.ack())],
            accept=["json"],
        ),
    ):
        relay = partial(relay_batch, catalog_db, CatalogOutboxMessage, publisher.publish)
        assert relay(batch_size=3).published == 3
        assert relay(batch_size=3).published == 2
        assert relay(batch_size=3).published == 0
        deadline = time.monotonic() + 10
        while len(received) < 5 and time.monotonic() < deadline:
            with suppress(TimeoutError):
                connection.drain_events(timeout=0.5)
    publisher.close()
    assert [body["id"] for body in received] == ids
    assert unpublished(catalog_db) == 0


def test_an_event_no_queue_takes_stays_in_the_outbox(platform, catalog_db, quiet_relay):
    """mandatory + confirms: the broker returns what it cannot route; the row waits."""
    (event_id,) = add_events(catalog_db, 1)
    publisher = ConfirmingPublisher(platform.amqp_uri, SOURCE, {})
    try:
        relayed = relay_batch(catalog_db, CatalogOutboxMessage, publisher.publish, batch_size=10)
        assert relayed.published == 0
        assert [envelope["id"] for envelope in relayed.unroutable.values()] == [event_id]
        assert unpublished(catalog_db) == 1
        # Held rows are skipped until their next try...
        skipped = relay_batch(
            catalog_db, CatalogOutboxMessage, publisher.publish, 10, skip=relayed.unroutable
        )
        assert (skipped.published, skipped.unroutable) == (0, {})
        # ...and go once a queue takes their type.
        queue = Queue(f"test-outbox-{uuid.uuid4().hex[:8]}", publisher.exchange, "thing.#")
        with platform.broker() as connection:
            bound = queue(connection.default_channel)
            bound.declare()
            try:
                relayed = relay_batch(catalog_db, CatalogOutboxMessage, publisher.publish, 10)
                assert (relayed.published, relayed.unroutable) == (1, {})
                message = bound.get(no_ack=True)
                assert message.payload["id"] == event_id
            finally:
                bound.delete()
    finally:
        publisher.close()
    assert unpublished(catalog_db) == 0


def test_a_failed_batch_is_all_kept(catalog_db, quiet_relay):
    """Unconfirmed means not sent: the whole batch stays and goes again (consumers
    de-duplicate what the broker did get)."""
    add_events(catalog_db, 4)
    sent = []

    def flaky(envelopes):
        sent.extend(envelope["id"] for envelope in envelopes)
        raise ConnectionError("broker went away before confirming")

    with pytest.raises(ConnectionError):
        relay_batch(catalog_db, CatalogOutboxMessage, flaky, batch_size=10)
    assert unpublished(catalog_db) == 4
    sent.clear()
    relay_batch(catalog_db, CatalogOutboxMessage, lambda batch: set(), batch_size=10)
    assert unpublished(catalog_db) == 0


def test_events_wait_out_a_broker_outage(platform, catalog_db, quiet_relay, bound_queue):
    add_events(catalog_db, 3)
    proxy = TcpProxy(5672)
    publisher = ConfirmingPublisher(amqp_uri(port=proxy.port), SOURCE, {}, confirm_timeout=3)
    try:
        proxy.cut()
        with pytest.raises((OSError, TimeoutError, AMQPError, KombuError)):
            relay_batch(catalog_db, CatalogOutboxMessage, publisher.publish, batch_size=10)
        assert unpublished(catalog_db) == 3
        proxy.restore()
        relayed = relay_batch(catalog_db, CatalogOutboxMessage, publisher.publish, batch_size=10)
        assert relayed.published == 3
    finally:
        publisher.close()
        proxy.close()


def test_concurrent_relays_publish_each_event_once(platform, catalog_db, quiet_relay):
    add_events(catalog_db, 40)
    published: list[str] = []
    lock = threading.Lock()

    def slow_publish(envelopes):
        time.sleep(0.01)
        with lock:
            published.extend(envelope["id"] for envelope in envelopes)
        return set()

    def relay():
        with Session(platform.engine("catalog")) as session:
            while relay_batch(session, CatalogOutboxMessage, slow_publish, batch_size=5).published:
                pass

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(published) == 40
    assert len(set(published)) == 40


def test_purge_forgets_only_old_published_events(catalog_db, quiet_relay):
    add_events(catalog_db, 3)
    relay_batch(catalog_db, CatalogOutboxMessage, lambda batch: set(), batch_size=2)
    catalog_db.execute(
        update(CatalogOutboxMessage)
        .where(CatalogOutboxMessage.published_at.is_not(None))
        .values(published_at=func.now() - timedelta(days=8))
    )
    catalog_db.commit()
    assert purge_published(catalog_db, CatalogOutboxMessage, timedelta(days=7)) == 2
    assert catalog_db.scalar(select(func.count()).select_from(CatalogOutboxMessage)) == 1
