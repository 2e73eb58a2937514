"""The transactional outbox against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import suppress
from datetime import timedelta
from functools import partial

import pytest
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from nameko.exceptions import RpcTimeout
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from common.events import ConfirmingPublisher, purge_published, relay_batch
from ops.processes import service_process
from svc_catalog.models import CatalogOutboxMessage, outbox
from tests.harness import amqp_uri, free_port
from tests.support import eventually, frozen
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
    with frozen(platform.processes["catalog"]):
        yield


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
        # kombu reports the refused connection as its OperationalError.
        with pytest.raises(OperationalError):
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


def test_a_service_cut_from_the_broker_publishes_its_event_when_the_link_returns(api):
    """The real catalog, its only route to RabbitMQ through a proxy the test cuts: a
    reservation expires meanwhile (its timer writes the release and the event, no broker
    needed), the row waits in the outbox, and the event arrives once the link is back."""
    platform = api.platform
    proxy = TcpProxy(5672)
    behind_proxy = service_process(
        "catalog",
        platform.log_dir,
        {
            **platform.env,
            "AMQP_URI": amqp_uri(port=proxy.port),
            "METRICS_PORT": str(free_port()),
        },
        name="catalog-behind-proxy",
    )
    platform.processes["catalog"].stop()
    behind_proxy.start()
    expired = Queue(
        f"test-outbox-{uuid.uuid4().hex[:8]}",
        Exchange("catalog.events", type="topic", durable=True, no_declare=True),
        routing_key="inventory.reservation_expired",
    )
    try:
        eventually(lambda: _catalog_answers(platform, behind_proxy), timeout=60)
        with platform.broker() as connection:
            expired(connection.default_channel).declare()
        product = api.create_product()
        api.request("PUT", f"/products/{product['id']}/stock", json={"on_hand": 3}, token=api.admin)
        order_id = str(uuid.uuid4())
        with platform.rpc() as rpc:
            rpc.catalog.reserve(order_id, [{"product_id": product["id"], "quantity": 1}], 1)

        proxy.cut()
        # Written while the link is down: the timer expired the reservation (every 5 s).
        row = eventually(lambda: _expiry_row(platform, order_id), timeout=30)
        assert row.published_at is None
        assert behind_proxy.running, behind_proxy.log_tail()

        proxy.restore()
        event = _next_message(platform, expired, timeout=60)
        assert event["id"] == row.envelope["id"]
        assert event["data"]["order_id"] == order_id
        eventually(lambda: _assert_published(platform, order_id))
    finally:
        behind_proxy.stop()
        proxy.close()
        with platform.broker() as connection:
            expired(connection.default_channel).delete()
        platform.processes["catalog"].start()
        eventually(lambda: _catalog_answers(platform, platform.processes["catalog"]), timeout=60)


def _catalog_answers(platform, process) -> None:
    assert process.running, process.log_tail()
    try:
        with platform.rpc(timeout=3) as rpc:
            assert rpc.catalog.ping()["service"] == "catalog"
    except RpcTimeout as error:
        raise AssertionError("catalog does not answer yet") from error


def _expiry_row(platform, order_id: str):
    with platform.engine("catalog").connect() as connection:
        row = connection.execute(
            text(
                "SELECT envelope, published_at FROM outbox "
                "WHERE event_type = 'inventory.reservation_expired' "
                "AND envelope->'data'->>'order_id' = :order_id"
            ),
            {"order_id": order_id},
        ).first()
    assert row is not None, "the reservation has not expired yet"
    return row


def _assert_published(platform, order_id: str) -> None:
    assert _expiry_row(platform, order_id).published_at is not None


def _next_message(platform, queue: Queue, timeout: float) -> dict:
    def arrived() -> dict:
        with platform.broker() as connection:
            message = queue(connection.default_channel).get(no_ack=True)
        assert message is not None, "the event has not arrived"
        return message.payload

    return eventually(arrived, timeout=timeout)
