"""Dead letters: where events a handler cannot handle are parked, and how they come back.

Every reliable handler queue (common/consumers.py) has a parking queue, ``<queue>.dead``,
bound to one direct exchange, :data:`DEAD_LETTER_EXCHANGE`, with the parking queue's
name as routing key. The handler queue is declared with ``x-dead-letter-exchange`` and
``x-dead-letter-routing-key`` pointing there, so anything the broker dead-letters from it
(a rejected message) lands in its parking queue too.

The operator's side, from ``nameko shell`` (docs/decisions/0031; the commands are in
the runbook, docs/operations.md section 12):

- ``n.rpc.<service>.list_dead_letters()`` lists what a service has parked, without
  taking it off the queue;
- ``n.rpc.<service>.replay_dead_letters(event_id)`` (or with no id: all of them) puts
  parked events back on the queue they came from, for that handler alone.

Services get both RPC methods from :class:`DeadLetterAdmin`. The functions below do the
work and also take a bare AMQP URI and queue name, for a queue whose service is down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from amqp.exceptions import NotFound
from kombu import Connection, Exchange, Queue
from kombu.message import Message
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from prometheus_client import Counter

from common.db import isoformat, utcnow
from common.rpc import rpc

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "bookstore.dead-letters"
PARKED_SUFFIX = ".dead"

# Headers the consumer adds when it parks a message (besides RabbitMQ's own x-death
# when the broker dead-letters it).
ERROR_HEADER = "x-bookstore-error"
FAILED_AT_HEADER = "x-bookstore-failed-at"
ATTEMPTS_HEADER = "x-bookstore-attempts"
QUEUE_HEADER = "x-bookstore-queue"
PARKED_COUNT_HEADER = "x-bookstore-parked-count"
REPLAYED_AT_HEADER = "x-bookstore-replayed-at"

dead_letter_exchange = Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)

#: Served on the service's /metrics (common/metrics.py) and on the dashboard: every parked
#: message is one an operator must look at (runbook section 12).
DEAD_LETTERS = Counter(
    "bookstore_dead_letters_total",
    "Events parked on a dead-letter queue after their handler (or the bridge) gave up, "
    "by the queue they came from.",
    ["queue"],
)


def parking_queue_name(queue_name: str) -> str:
    return f"{queue_name}{PARKED_SUFFIX}"


def parking_queue(queue_name: str) -> Queue:
    name = parking_queue_name(queue_name)
    return Queue(name, exchange=dead_letter_exchange, routing_key=name, durable=True)


def dead_letter_arguments(queue_name: str) -> dict[str, str]:
    """The arguments a handler queue is declared with so the broker parks what it rejects."""
    return {
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": parking_queue_name(queue_name),
    }


def confirming_connection(amqp_uri: str) -> Connection:
    """A connection whose publishes return only once the broker has the message."""
    return Connection(amqp_uri, transport_options={"confirm_publish": True})


def republish(
    connection: Connection,
    message: Message,
    *,
    exchange: str,
    routing_key: str,
    headers: dict[str, Any],
) -> None:
    """Publishes ``message``'s body unchanged (bytes, content type and encoding as they
    came) with new headers. ``mandatory``: a message nothing would receive is an error
    here, not a silent loss."""
    properties = message.properties
    connection.Producer().publish(
        message.body,
        exchange=exchange,
        routing_key=routing_key,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        headers=headers,
        delivery_mode=2,
        mandatory=True,
        message_id=properties.get("message_id"),
        correlation_id=properties.get("correlation_id"),
    )


def park(
    amqp_uri: str,
    message: Message,
    *,
    queue: str,
    parked_in: str,
    reason: str,
    attempts: int,
) -> bool:
    """Copies ``message`` (taken from ``queue``) to the parking queue ``parked_in``, with
    why and when in its headers and its park count raised, confirmed by the broker.
    False if that failed (the caller then rejects it, and the broker dead-letters it to
    the same place without our headers); the caller acknowledges the original."""
    headers = dict(message.headers or {})
    headers.update(
        {
            ERROR_HEADER: reason,
            FAILED_AT_HEADER: isoformat(utcnow()),
            ATTEMPTS_HEADER: attempts,
            QUEUE_HEADER: queue,
            PARKED_COUNT_HEADER: int(headers.get(PARKED_COUNT_HEADER) or 0) + 1,
        }
    )
    try:
        with confirming_connection(amqp_uri) as connection:
            republish(
                connection,
                message,
                exchange=DEAD_LETTER_EXCHANGE,
                routing_key=parked_in,
                headers=headers,
            )
    except Exception:
        log.exception("could not park a message in %s; rejecting it instead", parked_in)
        DEAD_LETTERS.labels(queue).inc()  # the broker dead-letters it there instead
        return False
    DEAD_LETTERS.labels(queue).inc()
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def original_queue(message: Message, parked_in: str) -> str:
    headers = message.headers or {}
    if headers.get(QUEUE_HEADER):
        return str(headers[QUEUE_HEADER])
    for death in headers.get("x-death") or []:
        if death.get("queue"):
            return str(death["queue"])
    return parked_in.removesuffix(PARKED_SUFFIX)


def describe(message: Message, parked_in: str) -> dict[str, Any]:
    """What an operator needs to decide about a parked message."""
    headers = message.headers or {}
    try:
        envelope = message.decode()
    except Exception:  # noqa: BLE001 - an undecodable body is itself the finding
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {}
    deaths = headers.get("x-death") or []
    return {
        "event_id": envelope.get("id") or message.properties.get("message_id"),
        "type": envelope.get("type"),
        "source": envelope.get("source"),
        "correlation_id": envelope.get("correlation_id") or headers.get("nameko.correlation_id"),
        "queue": original_queue(message, parked_in),
        "error": headers.get(ERROR_HEADER),
        "failed_at": headers.get(FAILED_AT_HEADER),
        "attempts": headers.get(ATTEMPTS_HEADER),
        # How often it was parked: our count, or the broker's when it dead-lettered it.
        "parked_count": headers.get(PARKED_COUNT_HEADER)
        or sum(int(death.get("count", 0)) for death in deaths),
        "x_death": _jsonable(deaths),
    }


@contextlib.contextmanager
def _held(connection: Connection, parked_in: str) -> Iterator[tuple[Any, int]]:
    """A channel on the parking queue and how many messages it holds now. Messages
    taken and not acknowledged go back to the queue when the channel closes: listing
    never removes anything, and an interrupted replay loses nothing."""
    channel = connection.channel()
    try:
        queue = parking_queue(parked_in.removesuffix(PARKED_SUFFIX))(channel)
        try:
            _, ready, _ = queue.queue_declare(passive=True)
        except NotFound:
            # Never declared on this broker (or vhost): nothing was ever parked there.
            ready = 0
        yield queue, ready
    finally:
        # The broker closes the channel itself after a NotFound.
        with contextlib.suppress(Exception):
            channel.close()


def list_parked(amqp_uri: str, parked_in: str, limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` messages parked in the queue ``parked_in``, oldest first."""
    with Connection(amqp_uri) as connection, _held(connection, parked_in) as (queue, ready):
        listed = []
        for _ in range(min(ready, limit)):
            message = queue.get(no_ack=False)
            if message is None:
                break
            listed.append(describe(message, parked_in))
        return listed


def replay(amqp_uri: str, parked_in: str, event_id: str | None = None) -> list[str]:
    """Moves parked messages (the one with ``event_id``, or all) back onto the queue they
    were parked from, through the default exchange so that only that handler sees them
    again. Each is acknowledged on the parking queue only once the broker confirmed the
    copy. Returns the event ids replayed."""
    replayed: list[str] = []
    with (
        confirming_connection(amqp_uri) as connection,
        _held(connection, parked_in) as (queue, ready),
    ):
        # Only what is parked now: a replayed event that fails at once is parked again
        # behind these, and must not be replayed again in the same pass.
        for _ in range(ready):
            message = queue.get(no_ack=False)
            if message is None:
                break
            described = describe(message, parked_in)
            if event_id is not None and described["event_id"] != event_id:
                continue
            headers = {**(message.headers or {}), REPLAYED_AT_HEADER: isoformat(utcnow())}
            republish(
                connection,
                message,
                exchange="",
                routing_key=described["queue"],
                headers=headers,
            )
            message.ack()
            replayed.append(described["event_id"])
    return replayed


class DeadLetters(DependencyProvider):
    """Lists and replays the parked messages of this service's reliable handlers."""

    def _parking_queues(self) -> list[str]:
        from common.consumers import ReliableEventHandler

        return sorted(
            parking_queue_name(entrypoint.queue.name)
            for entrypoint in self.container.entrypoints
            if isinstance(entrypoint, ReliableEventHandler)
        )

    def get_dependency(self, worker_ctx: WorkerContext) -> DeadLetters:
        return self

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        uri = self.container.config[AMQP_URI_CONFIG_KEY]
        listed: list[dict[str, Any]] = []
        for parked_in in self._parking_queues():
            listed.extend(list_parked(uri, parked_in, limit - len(listed)))
        return listed

    def replay(self, event_id: str | None = None) -> list[str]:
        uri = self.container.config[AMQP_URI_CONFIG_KEY]
        replayed: list[str] = []
        for parked_in in self._parking_queues():
            replayed.extend(replay(uri, parked_in, event_id))
        return replayed


class DeadLetterAdmin:
    """Mix into a service that has reliable event handlers: it gets the operator's RPC
    methods ``list_dead_letters`` and ``replay_dead_letters``."""

    dead_letters = DeadLetters()

    @rpc
    def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.dead_letters.list(limit)

    @rpc
    def replay_dead_letters(self, event_id: str | None = None) -> dict[str, Any]:
        replayed = self.dead_letters.replay(event_id)
        return {"replayed": len(replayed), "event_ids": replayed}
