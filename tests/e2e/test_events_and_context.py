"""Domain events leave through the outbox onto AMQP, carrying the request's correlation
id, which also appears in the services' log lines."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import suppress

from kombu import Exchange, Queue
from sqlalchemy import text

from tests.support import book, eventually


def capture_events(platform, source: str, routing_key: str, action, count: int) -> list:
    """Runs ``action`` while a queue bound to ``source``'s event exchange listens; returns
    the first ``count`` (envelope, message) pairs, waiting up to 15 s for them."""
    received: list = []

    def collect(body, message):
        received.append((body, message))
        message.ack()

    exchange = Exchange(f"{source}.events", type="topic", durable=True)
    queue = Queue(
        f"test-listener-{uuid.uuid4().hex[:8]}",
        exchange,
        routing_key=routing_key,
        exclusive=True,
        auto_delete=True,
    )
    with (
        platform.broker() as connection,
        connection.Consumer(queue, callbacks=[collect], accept=["json"]),
    ):
        action()
        deadline = time.monotonic() + 15
        while len(received) < count and time.monotonic() < deadline:
            with suppress(TimeoutError):
                connection.drain_events(timeout=0.5)
    return received


def test_product_changes_are_published_with_the_correlation_id(api):
    request_id = f"test-{uuid.uuid4()}"
    created = {}

    def change_a_product():
        created.update(
            api.post(
                "/products", json=book(), token=api.admin, headers={"X-Request-ID": request_id}
            ).json()
        )
        api.patch(
            f"/products/{created['id']}",
            json={"title": "Renamed", "price": {"amount": 1, "currency": "EUR"}},
            token=api.admin,
        )
        api.delete(f"/products/{created['id']}", token=api.admin)

    received = capture_events(api.platform, "catalog", "product.*", change_a_product, 3)

    assert [body["type"] for body, _ in received] == [
        "product.created",
        "product.updated",
        "product.deleted",
    ]
    envelope, message = received[0]
    # traceparent is optional; it is there because the test platform traces.
    assert set(envelope) == {
        "id",
        "type",
        "source",
        "time",
        "correlation_id",
        "version",
        "data",
        "traceparent",
    }
    assert message.headers["nameko.traceparent"] == envelope["traceparent"]
    assert envelope["source"] == "catalog"
    assert envelope["version"] == 1
    assert envelope["correlation_id"] == request_id
    assert envelope["data"] == created
    assert message.properties["message_id"] == envelope["id"]
    assert message.headers["nameko.correlation_id"] == request_id
    assert received[1][0]["data"]["changed_fields"] == ["price", "title"]
    assert received[2][0]["data"]["deleted_at"].endswith("Z")
    assert len({body["id"] for body, _ in received}) == 3

    def all_marked_published():
        # The relay marks rows right after the broker confirms them, so a moment later.
        with api.platform.engine("catalog").connect() as connection:
            unpublished = connection.scalar(
                text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        assert unpublished == 0

    eventually(all_marked_published)


def test_registration_is_announced_without_the_password(api):
    registered = {}
    received = capture_events(
        api.platform,
        "auth",
        "user.registered",
        lambda: registered.update(api.platform.new_customer()[0]),
        1,
    )
    assert received[0][0]["data"]["user_id"] == registered["id"]
    assert "password" not in json.dumps(received[0][0])


def test_service_log_lines_carry_the_correlation_id_and_caller(api):
    request_id = f"trace-{uuid.uuid4()}"
    created = api.post(
        "/products", json=book(), token=api.admin, headers={"X-Request-ID": request_id}
    ).json()

    def log_lines_of(name: str) -> list[dict]:
        lines = (api.platform.log_dir / f"{name}.log").read_text().splitlines()
        found = [json.loads(line) for line in lines if request_id in line]
        assert found, f"{name} logged nothing for the request (yet)"
        return found

    line = eventually(lambda: log_lines_of("catalog"), timeout=5)[0]
    assert line["message"] == "product created"
    assert line["product_id"] == created["id"]
    assert line["correlation_id"] == request_id
    assert line["user_id"] == api.platform.admin.id
    gateway_lines = eventually(lambda: log_lines_of("gateway"), timeout=5)
    assert any(entry.get("status") == 201 for entry in gateway_lines)


def test_every_service_log_line_is_json(api):
    for name in ("auth", "catalog", "gateway"):
        for line in (api.platform.log_dir / f"{name}.log").read_text().splitlines():
            assert json.loads(line)["service"] == name, line
