"""Domain events: one envelope for all, written to an outbox, relayed to AMQP.

A state change and the event that announces it are written in the same database
transaction (:meth:`Outbox.add`), so neither exists without the other. The
:class:`OutboxRelay` dependency then publishes committed events to the service's nameko
event exchange (``<service>.events``, routing key = event type), where any
``@event_handler(<service>, <type>)`` receives the envelope. Delivery is at least once:
a crash between publishing and marking a row sent publishes it again, so consumers
de-duplicate by the envelope's ``id``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import eventlet
from eventlet.queue import LightQueue
from kombu import Connection, serialization
from nameko.constants import AMQP_URI_CONFIG_KEY, PERSISTENT
from nameko.containers import WorkerContext
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from nameko_sqlalchemy.database import DB_URIS_KEY
from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    String,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, sessionmaker

from common import context, contract
from common.backoff import backoff_delay
from common.db import create_pinged_engine, isoformat, utcnow

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1

Envelope = dict[str, Any]


def make_envelope(source: str, event_type: str, data: dict[str, Any]) -> Envelope:
    """The envelope every event travels in, stamped with the current call's correlation
    id and, when the call is traced, its ``traceparent`` (optional: consumers' handlers
    then continue the trace that wrote the event)."""
    current = context.current()
    envelope = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": source,
        "time": isoformat(utcnow()),
        "correlation_id": current.correlation_id,
        "version": ENVELOPE_VERSION,
        "data": data,
    }
    if current.traceparent:
        envelope["traceparent"] = current.traceparent
    return envelope


# Field names whose values are secrets: auth's emailed one-time tokens (docs/decisions/
# 0014) and anything named like them. Events leaving the platform (EventBridge, webhooks)
# go without them: whoever reads those could use them.
SECRET_NAME_ENDINGS = ("token", "secret", "password")


def redact_secrets(value: Any) -> Any:
    """``value`` without any mapping key that names a secret, at any depth."""
    if isinstance(value, dict):
        return {
            key: redact_secrets(item)
            for key, item in value.items()
            if not str(key).lower().endswith(SECRET_NAME_ENDINGS)
        }
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


class OutboxMessage:
    """Columns of a service's ``outbox`` table; mix into the service's declarative base."""

    __tablename__ = "outbox"

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:  # noqa: N805 - a declared_attr
        # The relay only ever looks for unpublished rows, oldest first. (A function, so
        # each service's table gets an Index object of its own.)
        return (
            Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outbox:
    """Writes a service's events into its outbox table, inside the caller's transaction."""

    def __init__(self, model: type[OutboxMessage], source: str) -> None:
        self.model = model
        self.source = source

    def add(self, session: Session, event_type: str, data: dict[str, Any]) -> Envelope:
        envelope = make_envelope(self.source, event_type, data)
        # Tests refuse an event the contract does not allow (openapi/asyncapi.yaml).
        contract.check_published(envelope)
        session.add(
            self.model(event_id=uuid.UUID(envelope["id"]), event_type=event_type, envelope=envelope)
        )
        session.info[_EVENTS_WRITTEN] = True
        return envelope


# Relays in this process, woken when a transaction that wrote events commits, so events
# leave at once without the relay querying the outbox after every request.
_EVENTS_WRITTEN = "bookstore.outbox.events_written"
_relays: weakref.WeakSet[OutboxRelay] = weakref.WeakSet()


@sqlalchemy_event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    if session.info.pop(_EVENTS_WRITTEN, False):
        for relay in list(_relays):
            relay.wake()


@sqlalchemy_event.listens_for(Session, "after_rollback")
def _forget_events(session: Session) -> None:
    session.info.pop(_EVENTS_WRITTEN, None)


@dataclass
class Relayed:
    """What one pass of the relay did: how many events the broker took, and the rows it
    returned because no queue is bound for their type (``row id -> envelope``)."""

    published: int = 0
    unroutable: dict[int, Envelope] = field(default_factory=dict)
    claimed: set[int] = field(default_factory=set)


def relay_batch(
    session: Session,
    model: type[OutboxMessage],
    publish: Callable[[list[Envelope]], set[str]],
    batch_size: int,
    skip: Collection[int] = (),
) -> Relayed:
    """Publishes up to ``batch_size`` unpublished events, oldest first, except the rows
    in ``skip`` (held, waiting for their next try).

    ``publish`` sends the batch and returns once the broker confirmed every event; it
    returns the ids of the events the broker could not route (they stay unpublished,
    and the caller decides when to try them again) and raises if the broker did not
    confirm them all (then none is marked: publishing again is safe, consumers
    de-duplicate). Rows are locked with SKIP LOCKED, so several instances of a service
    relay side by side without publishing the same row at the same time.
    """
    query = (
        select(model.id, model.envelope)
        .where(model.published_at.is_(None))
        .order_by(model.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    if skip:
        query = query.where(model.id.not_in(list(skip)))
    rows = session.execute(query).all()
    if not rows:
        session.commit()
        return Relayed()
    try:
        unroutable_ids = publish([row.envelope for row in rows])
    except BaseException:
        session.rollback()
        raise
    unroutable = {row.id: row.envelope for row in rows if row.envelope["id"] in unroutable_ids}
    published = [row.id for row in rows if row.id not in unroutable]
    if published:
        session.execute(
            update(model).where(model.id.in_(published)).values(published_at=func.now())
        )
    session.commit()
    return Relayed(len(published), unroutable, {row.id for row in rows})


def purge_published(session: Session, model: type[OutboxMessage], older_than: timedelta) -> int:
    """Deletes events published longer ago than ``older_than``; returns how many."""
    result = session.execute(delete(model).where(model.published_at < utcnow() - older_than))
    session.commit()
    return result.rowcount


class UnroutableEvent(Exception):
    """The broker took the event but no queue is bound to receive it."""


def _amqp_headers(envelope: Envelope) -> dict[str, Any]:
    # The same context data an RPC call carries, so handlers bind it the same way.
    return {
        f"nameko.{key}": envelope[name]
        for key, name in (
            (context.CORRELATION_ID_KEY, "correlation_id"),
            (context.TRACEPARENT_KEY, "traceparent"),
        )
        if envelope.get(name)
    }


class ConfirmingPublisher:
    """Publishes batches of envelopes to a service's nameko event exchange (routing key =
    event type) with publisher confirms and the ``mandatory`` flag.

    A batch is sent in one go and then the broker's confirms are awaited together (one
    round trip per batch, not per event). An event no queue is bound to take comes back
    as a ``basic.return`` before its confirm: it is reported, not lost. Not thread-safe:
    one per relay thread.
    """

    def __init__(
        self,
        amqp_uri: str,
        service_name: str,
        config: dict[str, Any],
        *,
        confirm_timeout: float = 10.0,
    ) -> None:
        self.amqp_uri = amqp_uri
        self.exchange = get_event_exchange(service_name, config)
        self.confirm_timeout = confirm_timeout
        self._connection: Connection | None = None
        self._channel: Any = None
        self._next_tag = 1
        self._pending: dict[int, str] = {}
        self._returned: set[str] = set()
        self._nacked: set[str] = set()

    def publish(self, envelopes: list[Envelope]) -> set[str]:
        """Returns the ids of the events no queue took; raises if any event was not
        confirmed (refused by the broker, or no answer within ``confirm_timeout``)."""
        if not envelopes:
            return set()
        try:
            channel = self._ready_channel()
            self._returned.clear()
            self._nacked.clear()
            for envelope in envelopes:
                content_type, content_encoding, body = serialization.dumps(envelope, "json")
                message = channel.prepare_message(
                    body,
                    content_type=content_type,
                    content_encoding=content_encoding,
                    headers=_amqp_headers(envelope),
                    properties={"delivery_mode": PERSISTENT, "message_id": envelope["id"]},
                )
                self._pending[self._next_tag] = envelope["id"]
                self._next_tag += 1
                channel.basic_publish(
                    message,
                    exchange=self.exchange.name,
                    routing_key=envelope["type"],
                    mandatory=True,
                )
            self._await_confirms()
        except BaseException:
            # The channel's state is unknown now: start afresh on the next batch.
            self.close()
            raise
        if self._nacked:
            raise ConnectionError(f"the broker refused {len(self._nacked)} event(s)")
        return set(self._returned)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = self._channel = None
        self._pending.clear()

    def _ready_channel(self) -> Any:
        if self._channel is None:
            connection = Connection(self.amqp_uri, connect_timeout=5)
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            self.exchange(channel).declare()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._connection, self._channel, self._next_tag = connection, channel, 1
        return self._channel

    def _await_confirms(self) -> None:
        deadline = time.monotonic() + self.confirm_timeout
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._pending)} event(s) not confirmed in time")
            self._connection.drain_events(timeout=remaining)

    def _settle(self, delivery_tag: int, multiple: bool) -> list[str]:
        tags = [tag for tag in self._pending if tag <= delivery_tag] if multiple else [delivery_tag]
        return [self._pending.pop(tag) for tag in tags if tag in self._pending]

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked.update(self._settle(delivery_tag, multiple))

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # The broker returns an unroutable message before it confirms it.
        self._returned.add(str(message.properties.get("message_id")))


class EnvelopePublisher:
    """Publishes one envelope and waits for the broker's confirm, so that a returned call
    means the broker has the event (tests and operators inject events with it)."""

    def __init__(self, amqp_uri: str, service_name: str, config: dict[str, Any]) -> None:
        self._publisher = ConfirmingPublisher(amqp_uri, service_name, config)
        self.exchange = self._publisher.exchange

    def __call__(self, envelope: Envelope) -> None:
        try:
            if self._publisher.publish([envelope]):
                raise UnroutableEvent(f"no queue takes {envelope['type']!r} events")
        finally:
            self._publisher.close()


@dataclass
class HeldEvent:
    """An outbox row the broker returned (no queue takes its type), waiting to be tried
    again; kept in the relay's memory: the row itself is what is never lost."""

    event_id: str
    event_type: str
    since: float
    tries: int = 1
    next_try: float = 0.0


#: Events the broker returned because no queue is bound to take their type.
OUTBOX_UNROUTABLE = Counter(
    "bookstore_outbox_unroutable_total",
    "Publications of an outbox event that no queue took (the event stays in the outbox "
    "and is tried again).",
    ["service", "event_type"],
)


class OutboxRelay(DependencyProvider):
    """Relays a service's committed outbox rows to its nameko event exchange.

    Runs one green thread per service instance. It wakes as soon as a transaction in this
    process commits events, and otherwise polls every ``poll_interval`` seconds, so events
    written by another process (the seed command, say) leave too. Each pass claims a
    batch, publishes it with confirms and the mandatory flag, and marks what the broker
    took. When the broker is away, rows stay in the outbox and the relay retries with
    backoff. An event no queue takes (its consumers' topology was never declared) stays
    in the outbox too, is logged, counted (``bookstore_outbox_unroutable_total``) and
    reported by :meth:`health`, and is tried again with backoff up to
    ``held_retry_max`` seconds (docs/decisions/0060).
    """

    def __init__(
        self,
        base: type,
        model: type[OutboxMessage],
        *,
        poll_interval: float = 1.0,
        batch_size: int = 200,
        retention: timedelta = timedelta(days=7),
        held_retry_max: float = 30.0,
    ) -> None:
        self.base = base
        self.model = model
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.retention = retention
        self.held_retry_max = held_retry_max
        self.held: dict[int, HeldEvent] = {}
        self._wakeups: LightQueue = LightQueue(maxsize=1)
        self._running = False
        self._thread: eventlet.greenthread.GreenThread | None = None

    def setup(self) -> None:
        config = self.container.config
        self.service_name = self.container.service_name
        db_url = config[DB_URIS_KEY][f"{self.service_name}:{self.base.__name__}"]
        self._engine = create_pinged_engine(db_url, pool_size=1, max_overflow=1)
        self._sessions = sessionmaker(bind=self._engine)
        self._publisher = ConfirmingPublisher(
            config[AMQP_URI_CONFIG_KEY], self.service_name, config
        )
        if contract.enforced():
            contract.preload()

    def start(self) -> None:
        self._running = True
        _relays.add(self)
        self._thread = self.container.spawn_managed_thread(self._run)

    def stop(self) -> None:
        self._running = False
        _relays.discard(self)
        self.wake()
        if self._thread is not None:
            self._thread.wait()
        self._publisher.close()
        self._engine.dispose()

    def kill(self) -> None:
        self._running = False
        _relays.discard(self)
        if self._thread is not None:
            self._thread.kill()
        self._publisher.close()
        self._engine.dispose()

    def get_dependency(self, worker_ctx: WorkerContext) -> OutboxRelay:
        return self

    def wake(self) -> None:
        if self._wakeups.empty():
            self._wakeups.put_nowait(None)

    def backlog(self) -> int:
        """How many events wait to be published (for health checks and operators)."""
        with self._sessions() as session:
            return session.scalar(
                select(func.count())
                .select_from(self.model)
                .where(self.model.published_at.is_(None))
            )

    def health(self) -> dict[str, Any]:
        """The outbox's part of the service's ping: ``degraded`` (still serving) while
        events are held because no queue takes them, with which and since when."""
        report: dict[str, Any] = {"status": "ok", "outbox_backlog": self.backlog()}
        if self.held:
            now = _clock()
            types = sorted({held.event_type for held in self.held.values()})
            oldest = max(now - held.since for held in self.held.values())
            report |= {
                "status": "degraded",
                "detail": (
                    f"{len(self.held)} event(s) held in the outbox, no queue takes them: "
                    f"{', '.join(types)} (oldest {oldest:.0f}s)"
                ),
                "outbox_held": len(self.held),
            }
        return report

    def relay_once(self) -> Relayed:
        """One pass: a batch published, held events due for a try included."""
        now = _clock()
        waiting = [row_id for row_id, held in self.held.items() if held.next_try > now]
        with self._sessions() as session:
            relayed = relay_batch(
                session, self.model, self._publisher.publish, self.batch_size, skip=waiting
            )
        self._note(relayed, now)
        return relayed

    def _note(self, relayed: Relayed, now: float) -> None:
        # Held rows tried in this pass and taken now (marked published): no longer held.
        for row_id in relayed.claimed - set(relayed.unroutable):
            self.held.pop(row_id, None)
        for row_id, envelope in relayed.unroutable.items():
            held = self.held.get(row_id)
            if held is None:
                held = self.held[row_id] = HeldEvent(envelope["id"], envelope["type"], now)
                log.error(
                    "no queue takes %s event %s; it stays in the outbox and is tried again",
                    envelope["type"],
                    envelope["id"],
                )
            else:
                held.tries += 1
            held.next_try = now + min(self.held_retry_max, 0.5 * 2**held.tries)
            OUTBOX_UNROUTABLE.labels(self.service_name, envelope["type"]).inc()

    def _run(self) -> None:
        failures = 0
        last_purge = float("-inf")
        while self._running:
            try:
                relayed = self.relay_once()
                if _clock() - last_purge > 3600:
                    with self._sessions() as session:
                        purge_published(session, self.model, self.retention)
                    last_purge = _clock()
                failures = 0
            except Exception:
                # Broker or database away: the rows stay in the outbox; try again later.
                failures += 1
                delay = backoff_delay(failures, base=0.5, cap=30.0)
                log.warning("outbox relay failed; retrying in %.1fs", delay, exc_info=True)
                self._back_off(delay)
                continue
            if relayed.published + len(relayed.unroutable) < self.batch_size:
                self._wait_for_work(self._next_wait())

    def _next_wait(self) -> float:
        """The poll interval, or less when a held event is due sooner."""
        if not self.held:
            return self.poll_interval
        due = min(held.next_try for held in self.held.values()) - _clock()
        return max(0.05, min(self.poll_interval, due))

    def _wait_for_work(self, seconds: float) -> None:
        with contextlib.suppress(eventlet.queue.Empty):
            self._wakeups.get(timeout=seconds)

    def _back_off(self, seconds: float) -> None:
        # Unlike _wait_for_work, new work does not cut this short (the broker or the
        # database is away), but stopping the service does.
        deadline = _clock() + seconds
        while self._running and _clock() < deadline:
            eventlet.sleep(0.25)


def _clock() -> float:
    return eventlet.hubs.get_hub().clock()
