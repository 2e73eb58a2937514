"""The transactional outbox against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import suppress
from datetime import timedelta

import pytest
from kombu import Queue
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from common.events import EnvelopePublisher, purge_published, relay_batch
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


def test_relay_publishes_in_order_and_marks_rows(platform, catalog_db, quiet_relay):
    ids = add_events(catalog_db, 5)
    publisher = EnvelopePublisher(platform.amqp_uri, SOURCE, {})
    received = []
    with platform.broker() as connection:
        queue = Queue(
            f"test-{uuid.uuid4().hex[:8]}",
            publisher.exchange,
            routing_key="#",
            exclusive=True,
            auto_delete=True,
        )
        with connection.Consumer(
            queue,
            callbacks=[lambda body, message: (received.append(body), message.ack())],
            accept=["json"],
        ):
            assert relay_batch(catalog_db, CatalogOutboxMessage, publisher, batch_size=3) == 3
            assert relay_batch(catalog_db, CatalogOutboxMessage, publisher, batch_size=3) == 2
            assert relay_batch(catalog_db, CatalogOutboxMessage, publisher, batch_size=3) == 0
            deadline = time.monotonic() + 10
            while len(received) < 5 and time.monotonic() < deadline:
                with suppress(TimeoutError):
                    connection.drain_events(timeout=0.5)
    assert [body["id"] for body in received] == ids
    assert unpublished(catalog_db) == 0


def test_a_failure_mid_batch_keeps_what_was_not_sent(catalog_db, quiet_relay):
    add_events(catalog_db, 4)
    sent = []

    def flaky(envelope):
        if len(sent) == 2:
            raise ConnectionError("broker went away")
        sent.append(envelope["id"])

    with pytest.raises(ConnectionError):
        relay_batch(catalog_db, CatalogOutboxMessage, flaky, batch_size=10)
    assert unpublished(catalog_db) == 2, "the two sent events are marked, the rest wait"
    sent.clear()
    relay_batch(catalog_db, CatalogOutboxMessage, sent.append, batch_size=10)
    assert len(sent) == 2
    assert unpublished(catalog_db) == 0


def test_events_wait_out_a_broker_outage(platform, catalog_db, quiet_relay):
    add_events(catalog_db, 3)
    proxy = TcpProxy(5672)
    try:
        publisher = EnvelopePublisher(amqp_uri(port=proxy.port), SOURCE, {})
        proxy.cut()
        with pytest.raises(Exception):  # noqa: B017 - whichever way kombu reports it
            relay_batch(catalog_db, CatalogOutboxMessage, publisher, batch_size=10)
        catalog_db.rollback()
        assert unpublished(catalog_db) == 3
        proxy.restore()
        assert relay_batch(catalog_db, CatalogOutboxMessage, publisher, batch_size=10) == 3
    finally:
        proxy.close()


def test_concurrent_relays_publish_each_event_once(platform, catalog_db, quiet_relay):
    add_events(catalog_db, 40)
    published: list[str] = []
    lock = threading.Lock()

    def slow_publish(envelope):
        time.sleep(0.01)
        with lock:
            published.append(envelope["id"])

    def relay():
        with Session(platform.engine("catalog")) as session:
            while relay_batch(session, CatalogOutboxMessage, slow_publish, batch_size=5):
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
    relay_batch(catalog_db, CatalogOutboxMessage, lambda envelope: None, batch_size=2)
    catalog_db.execute(
        update(CatalogOutboxMessage)
        .where(CatalogOutboxMessage.published_at.is_not(None))
        .values(published_at=func.now() - timedelta(days=8))
    )
    catalog_db.commit()
    assert purge_published(catalog_db, CatalogOutboxMessage, timedelta(days=7)) == 2
    assert catalog_db.scalar(select(func.count()).select_from(CatalogOutboxMessage)) == 1
