"""Every domain event of every service, consumed in batches and mirrored to EventBridge.

nameko's ``@event_handler`` binds one event type of one service; the bridge must see
every type of every service, including types added later. So :class:`EventMirror` runs
its own kombu consumer on one durable queue, :data:`QUEUE`, bound with routing key ``#``
to each ``<service>.events`` topic exchange of ``SERVICE_PACKAGES``: a new event type
needs no change here, a new service only its entry there.

A message is acknowledged only after EventBridge accepted its entry, or after it was
parked (with the reason) on ``bridge-events.dead``, the same kind of parking queue as
every reliable consumer's (common/deadletters.py), so the same list and replay tools
work. While EventBridge cannot be reached the batch stays unacknowledged and is tried
again with backoff; stopping the service closes the channel and the broker redelivers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import eventlet
from botocore.config import Config as BotoConfig
from kombu import Connection, Consumer, Queue, binding
from kombu.message import Message
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.containers import WorkerContext
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from nameko_sqlalchemy.database import DB_URIS_KEY
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import sessionmaker

from common import deadletters
from common.backoff import backoff_delay
from common.config import SERVICE_PACKAGES
from common.db import create_pinged_engine, utcnow
from svc_bridge.mirror import MAX_ENTRIES, EventBridgeUnavailable, Item, Mirror, Outcome
from svc_bridge.models import Base, MirroredEvent
from svc_bridge.settings import Settings

log = logging.getLogger(__name__)

QUEUE = "bridge-events"
PARKING_QUEUE = deadletters.parking_queue_name(QUEUE)
# While EventBridge is unreachable: first wait, and the longest.
UNAVAILABLE_BACKOFF = (1.0, 30.0)


def events_client(settings: Settings) -> Any:
    """A boto3 EventBridge client for the configured region and endpoint."""
    return settings.aws_client(
        "events",
        # Retries are ours (only failed entries, with jitter); boto3's would resend
        # the whole batch.
        config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


def subscribed_services(own_name: str) -> list[str]:
    return [service for service in SERVICE_PACKAGES if service != own_name]


def event_queue(services: list[str], config: dict[str, Any]) -> Queue:
    return Queue(
        QUEUE,
        bindings=[
            binding(get_event_exchange(service, config), routing_key="#") for service in services
        ],
        durable=True,
        queue_arguments=deadletters.dead_letter_arguments(QUEUE),
    )


def source_service(message: Message, envelope: dict[str, Any]) -> str:
    """The publishing service: its exchange's name, or (a replayed message, which comes
    through the default exchange) the envelope's ``source``."""
    exchange = str((message.delivery_info or {}).get("exchange") or "")
    if exchange.endswith(".events"):
        return exchange.removesuffix(".events")
    return str(envelope.get("source") or "unknown")


class EventMirror(DependencyProvider):
    """One green thread per instance: consume, batch, mirror, acknowledge or park."""

    #: Events held while EventBridge cannot be reached, and why (for ping).
    held: int = 0
    unavailable: str | None = None

    def setup(self) -> None:
        config = self.container.config
        deadletters.DEAD_LETTERS.labels(QUEUE)  # 0 until one is parked: on scrapes
        self.amqp_uri = config[AMQP_URI_CONFIG_KEY]
        settings = Settings.current()
        self.bus_name = settings.event_bus
        self.batch_wait = settings.batch_wait_seconds
        self.mirror = Mirror(
            events_client(settings),
            self.bus_name,
            max_attempts=settings.max_attempts,
            base_delay=settings.retry_base_seconds,
            sleep=eventlet.sleep,
        )
        (self.queue,) = self.declared_queues(self.container.service_name, config)
        db_url = config[DB_URIS_KEY][f"{self.container.service_name}:{Base.__name__}"]
        self._engine = create_pinged_engine(db_url, pool_size=1, max_overflow=1)
        self._sessions = sessionmaker(bind=self._engine)
        self._buffer: list[Message] = []
        self._running = False
        self._thread: eventlet.greenthread.GreenThread | None = None

    def start(self) -> None:
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._run)

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.wait()
        self._engine.dispose()

    def kill(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.kill()
        self._engine.dispose()

    def get_dependency(self, worker_ctx: WorkerContext) -> EventMirror:
        return self

    @staticmethod
    def declared_queues(service_name: str, config: dict[str, Any]) -> list[Queue]:
        """The queue this consumer reads (common/topology.py declares it ahead)."""
        return [event_queue(subscribed_services(service_name), config)]

    def health(self) -> dict[str, Any]:
        """For ``ping`` (and so ``/ready``): ``degraded`` while EventBridge cannot be
        reached, with how many events are held (they stay in RabbitMQ meanwhile)."""
        if self.unavailable is not None:
            return {
                "status": "degraded",
                "detail": f"EventBridge unavailable, {self.held} event(s) held: {self.unavailable}",
                "held": self.held,
            }
        return {"status": "ok", "held": 0}

    # -- consuming ----------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while self._running:
            try:
                with Connection(self.amqp_uri) as connection:
                    self._consume(connection)
                failures = 0
            except Exception:
                # Broker away: whatever was buffered is unacknowledged and comes back.
                self._buffer.clear()
                failures += 1
                delay = backoff_delay(failures, base=0.5, cap=30.0)
                log.warning("bridge consumer failed; reconnecting in %.1fs", delay, exc_info=True)
                self._sleep_while_running(delay)

    def _consume(self, connection: Connection) -> None:
        channel = connection.channel()
        queue = self.queue(channel)
        queue.declare()
        deadletters.parking_queue(QUEUE)(channel).declare()
        # Prefetch one batch: nothing waits unacknowledged beyond what we are sending.
        with Consumer(channel, [queue], on_message=self._buffer.append, prefetch_count=MAX_ENTRIES):
            first_at: float | None = None
            while self._running:
                # TimeoutError (socket.timeout): no message within the wait.
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=self.batch_wait)
                if not self._buffer:
                    first_at = None
                    continue
                first_at = first_at or time.monotonic()
                if (
                    len(self._buffer) >= MAX_ENTRIES
                    or time.monotonic() - first_at >= self.batch_wait
                ):
                    # Emptied in place: the consumer's callback appends to this list.
                    batch = list(self._buffer)
                    self._buffer.clear()
                    first_at = None
                    self._flush(batch)

    def _flush(self, messages: list[Message]) -> None:
        items = []
        for message in messages:
            try:
                envelope = message.decode()
            except Exception as error:  # noqa: BLE001 - undecodable is itself the finding
                envelope = error
            if not isinstance(envelope, dict) or "id" not in envelope or "type" not in envelope:
                self._settle(
                    [Outcome(message, "", False, reason="the body is not an event envelope")]
                )
                continue
            items.append(Item(message, source_service(message, envelope), envelope))
        failures = 0
        while items and self._running:
            try:
                self._settle(self.mirror.send(items))
                self.held, self.unavailable = 0, None
                return
            except EventBridgeUnavailable as error:
                self._settle(error.settled)
                done = {id(outcome.key) for outcome in error.settled}
                items = [item for item in items if id(item.key) not in done]
                self.held, self.unavailable = len(items), str(error)[:200]
                failures += 1
                delay = backoff_delay(
                    failures, base=UNAVAILABLE_BACKOFF[0], cap=UNAVAILABLE_BACKOFF[1]
                )
                log.error(
                    "EventBridge unavailable; %d event(s) held, trying again in %.1fs: %s",
                    len(items),
                    delay,
                    error,
                )
                self._sleep_while_running(delay)
        # Stopping with items held: closing the channel gives them back to the broker.

    # -- settling -----------------------------------------------------------------------

    def _settle(self, outcomes: list[Outcome]) -> None:
        self._record(outcomes)
        for outcome in outcomes:
            message: Message = outcome.key
            if outcome.accepted:
                message.ack()
            else:
                self._park(message, outcome)

    def _record(self, outcomes: list[Outcome]) -> None:
        """The ledger is for operators' questions, not the source of truth (EventBridge
        is): if the database is away the events are still acknowledged, and logged."""
        rows = []
        for outcome in outcomes:
            envelope = _decoded(outcome.key)
            if not outcome.event_id or not isinstance(envelope, dict):
                continue
            rows.append(
                {
                    "event_id": outcome.event_id,
                    "source": f"bookstore.{source_service(outcome.key, envelope)}",
                    "event_type": str(envelope.get("type")),
                    "status": "accepted" if outcome.accepted else "parked",
                    "eventbridge_id": outcome.eventbridge_id,
                    "reason": outcome.reason,
                    "attempts": outcome.attempts,
                    "updated_at": utcnow(),
                }
            )
        if not rows:
            return
        try:
            with self._sessions.begin() as session:
                statement = insert(MirroredEvent).values(rows)
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=[MirroredEvent.event_id],
                        set_={
                            column: statement.excluded[column]
                            for column in ("status", "eventbridge_id", "reason", "attempts")
                        }
                        | {"updated_at": statement.excluded.updated_at},
                    )
                )
        except Exception:
            log.exception("could not record %d mirrored event(s) in the ledger", len(rows))

    def _park(self, message: Message, outcome: Outcome) -> None:
        parked = deadletters.park(
            self.amqp_uri,
            message,
            queue=QUEUE,
            parked_in=PARKING_QUEUE,
            reason=outcome.reason,
            attempts=outcome.attempts,
        )
        if not parked:
            message.reject(requeue=False)  # the broker dead-letters it to the same queue
            return
        message.ack()
        log.error("parked event %s in %s: %s", outcome.event_id, PARKING_QUEUE, outcome.reason)

    def _sleep_while_running(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._running and time.monotonic() < deadline:
            eventlet.sleep(min(0.25, seconds))


def _decoded(message: Message) -> Any:
    try:
        return message.decode()
    except Exception:  # noqa: BLE001
        return None
