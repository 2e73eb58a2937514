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
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import eventlet
from eventlet.queue import LightQueue
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.containers import WorkerContext
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from nameko_sqlalchemy.database import DB_URIS_KEY
from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    String,
    create_engine,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, sessionmaker

from common import context
from common.db import isoformat, utcnow

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


def relay_batch(
    session: Session,
    model: type[OutboxMessage],
    publish: Callable[[Envelope], None],
    batch_size: int,
) -> int:
    """Publishes up to ``batch_size`` unpublished events, oldest first; returns how many.

    Rows are locked with SKIP LOCKED, so several instances of a service relay side by side
    without publishing the same row at the same time. If publishing fails part-way, the
    rows already published are still marked, then the error propagates.
    """
    rows = session.execute(
        select(model.id, model.envelope)
        .where(model.published_at.is_(None))
        .order_by(model.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    published: list[int] = []
    try:
        for row in rows:
            publish(row.envelope)
            published.append(row.id)
    finally:
        if published:
            session.execute(
                update(model).where(model.id.in_(published)).values(published_at=func.now())
            )
        session.commit()
    return len(published)


def purge_published(session: Session, model: type[OutboxMessage], older_than: timedelta) -> int:
    """Deletes events published longer ago than ``older_than``; returns how many."""
    result = session.execute(delete(model).where(model.published_at < utcnow() - older_than))
    session.commit()
    return result.rowcount


class EnvelopePublisher:
    """Publishes envelopes to a service's nameko event exchange, waiting for the broker's
    confirm, so that a returned call means the broker has the event."""

    def __init__(self, amqp_uri: str, service_name: str, config: dict[str, Any]) -> None:
        self.exchange = get_event_exchange(service_name, config)
        self._publisher = Publisher(
            amqp_uri,
            serializer="json",
            declare=[self.exchange],
            # Fail fast and let the relay's own backoff decide when to try again.
            retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2},
        )

    def __call__(self, envelope: Envelope) -> None:
        # The same context data an RPC call carries, so handlers bind it the same way.
        headers = {
            f"nameko.{key}": envelope[field]
            for key, field in (
                (context.CORRELATION_ID_KEY, "correlation_id"),
                (context.TRACEPARENT_KEY, "traceparent"),
            )
            if envelope.get(field)
        }
        self._publisher.publish(
            envelope,
            exchange=self.exchange,
            routing_key=envelope["type"],
            headers=headers,
            message_id=envelope["id"],
        )


class OutboxRelay(DependencyProvider):
    """Relays a service's committed outbox rows to its nameko event exchange.

    Runs one green thread per service instance. It wakes as soon as a transaction in this
    process commits events, and otherwise polls every ``poll_interval`` seconds, so events
    written by another process (the seed command, say) leave too. When the broker is
    away, rows stay in the outbox and the relay retries with backoff.
    """

    def __init__(
        self,
        base: type,
        model: type[OutboxMessage],
        *,
        poll_interval: float = 1.0,
        batch_size: int = 200,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.base = base
        self.model = model
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.retention = retention
        self._wakeups: LightQueue = LightQueue(maxsize=1)
        self._running = False
        self._thread: eventlet.greenthread.GreenThread | None = None

    def setup(self) -> None:
        config = self.container.config
        service_name = self.container.service_name
        db_url = config[DB_URIS_KEY][f"{service_name}:{self.base.__name__}"]
        self._engine = create_engine(db_url, pool_size=1, max_overflow=1, pool_pre_ping=True)
        self._sessions = sessionmaker(bind=self._engine)
        self._publish = EnvelopePublisher(config[AMQP_URI_CONFIG_KEY], service_name, config)

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
        self._engine.dispose()

    def kill(self) -> None:
        self._running = False
        _relays.discard(self)
        if self._thread is not None:
            self._thread.kill()
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

    def _run(self) -> None:
        failures = 0
        last_purge = float("-inf")
        while self._running:
            try:
                with self._sessions() as session:
                    relayed = relay_batch(session, self.model, self._publish, self.batch_size)
                    if eventlet.hubs.get_hub().clock() - last_purge > 3600:
                        purge_published(session, self.model, self.retention)
                        last_purge = eventlet.hubs.get_hub().clock()
                failures = 0
            except Exception:
                # Broker or database away: the rows stay in the outbox; try again later.
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("outbox relay failed; retrying in %.1fs", delay, exc_info=True)
                self._back_off(delay)
                continue
            if relayed < self.batch_size:
                self._wait_for_work(self.poll_interval)

    def _wait_for_work(self, seconds: float) -> None:
        with contextlib.suppress(eventlet.queue.Empty):
            self._wakeups.get(timeout=seconds)

    def _back_off(self, seconds: float) -> None:
        # Unlike _wait_for_work, new work does not cut this short (the broker or the
        # database is away), but stopping the service does.
        deadline = eventlet.hubs.get_hub().clock() + seconds
        while self._running and eventlet.hubs.get_hub().clock() < deadline:
            eventlet.sleep(0.25)
