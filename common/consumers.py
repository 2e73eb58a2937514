"""Reliable event consumers: retried, parked when hopeless, and handled once.

:class:`ReliableEventHandler` is nameko's ``@event_handler`` with three changes
(docs/decisions/0031):

- **Contract first.** An envelope whose version the handler does not accept
  (``versions=``, default ``(1,)``), or that breaks its type's schema in
  openapi/asyncapi.yaml (common/contract.py), is parked at once with the reason.

- **Retry in process.** A transient error (the database or the broker away, a deadlock,
  a timeout: :func:`is_transient`) runs the handler again in a fresh worker after a
  short backoff, up to ``len(retry_delays) + 1`` attempts. Any other error cannot be
  cured by waiting: the message is parked at once.
- **Park, never drop.** A message that still fails is copied, with headers saying what
  went wrong, to its parking queue (common/deadletters.py) and only then acknowledged.
  If that copy cannot be made, the message is rejected without requeue and the broker
  dead-letters it to the same place (its queue is declared with
  ``x-dead-letter-exchange``). If even that fails the connection is gone, and the
  broker redelivers the unacknowledged message. Nothing is requeued in a loop.
- **Context.** Only nameko's own headers become the worker's context data, so a
  parked-and-replayed message's bookkeeping headers do not travel on to the RPC calls
  and events the handler makes.

Handlers are at-least-once; :func:`handle_once` with a :class:`HandledEvent` table makes
their effect exactly-once by recording the envelope id in the same transaction.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import eventlet
import sqlalchemy.exc
from kombu.message import Message
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.containers import WorkerContext
from nameko.events import EventHandler
from nameko.exceptions import ContainerBeingKilled, RpcTimeout
from nameko.messaging import HEADER_PREFIX
from sqlalchemy import DateTime, String, delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from common import contract, deadletters, topology
from common.contract import ContractViolation
from common.db import utcnow
from common.errors import DependencyUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to wait before the second, third... attempt of a transiently failing handler.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 2.0)
# Keeps a parked message's headers small; the full traceback is in the service's log.
MAX_ERROR_HEADER_CHARS = 2000

_TRANSIENT = (
    sqlalchemy.exc.OperationalError,  # connection lost, deadlock, serialization failure
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # the connection pool is exhausted
    ConnectionError,
    TimeoutError,
    RpcTimeout,
    # Another service did not answer in time or its circuit is open: the one rule for
    # every consumer (they used to convert it by hand, or park at once when they forgot).
    DependencyUnavailable,
)


class PoisonMessage(Exception):
    """The message can never be handled as it is (not an event envelope, a bad id)."""


def is_transient(error: BaseException) -> bool:
    """Whether waiting a moment could make the same message succeed."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _TRANSIENT)


class ReliableEventHandler(EventHandler):
    """``@reliable_event_handler(source_service, event_type)``: see the module docstring.

    ``retry_delays`` gives the backoff between attempts for transient errors.
    """

    def __init__(
        self,
        source_service: str,
        event_type: str,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        versions: Sequence[int] = (1,),
        **kwargs: Any,
    ) -> None:
        self.retry_delays = tuple(retry_delays)
        #: The versions of the event type this handler understands; others are parked.
        self.versions = tuple(versions)
        super().__init__(source_service, event_type, **kwargs)

    @property
    def attempts(self) -> int:
        return len(self.retry_delays) + 1

    @property
    def handler_name(self) -> str:
        return f"{self.container.service_name}.{self.method_name}"

    def setup(self) -> None:
        super().setup()
        # nameko built the queue; the same one (common/topology.py says how), with its
        # dead-letter route. (RabbitMQ refuses to redeclare a queue with other arguments:
        # a handler moving to this class from a plain @event_handler needs its old queue
        # drained and deleted.) Declared now, with its binding and parking queue, not
        # when consuming starts: before this service's own relay publishes anything.
        self.queue = topology.handler_queue(
            self.container.service_name,
            self.method_name,
            self.source_service,
            self.event_type,
            self.container.config,
        )
        topology.declare_service(self.container)
        contract.preload()
        deadletters.DEAD_LETTERS.labels(self.queue.name)  # 0 until one is parked: on scrapes

    @property
    def amqp_uri(self) -> str:
        return self.container.config[AMQP_URI_CONFIG_KEY]

    def unpack_message_headers(self, message: Message) -> dict[str, Any]:
        prefix = f"{HEADER_PREFIX}."
        return {
            key[len(prefix) :]: value
            for key, value in (message.headers or {}).items()
            if key.startswith(prefix)
        }

    def handle_message(self, body: Any, message: Message) -> None:
        self._attempt(body, message, 1)

    def _attempt(self, body: Any, message: Message, attempt: int) -> None:
        if not isinstance(body, dict) or "id" not in body:
            self._park(message, PoisonMessage("the body is not an event envelope"), "", 0)
            return
        problem = contract.violation(body, self.versions)
        if problem:
            self._park(message, ContractViolation(problem), "", 0)
            return
        try:
            self.container.spawn_worker(
                self,
                (body,),
                {},
                context_data=self.unpack_message_headers(message),
                handle_result=partial(self._handle_result, body, message, attempt),
            )
        except ContainerBeingKilled:
            # Shutting down: give it back for another instance (once, not a loop).
            self.queue_consumer.requeue_message(message)

    def _handle_result(
        self,
        body: dict[str, Any],
        message: Message,
        attempt: int,
        worker_ctx: WorkerContext,
        result: Any = None,
        exc_info: tuple[type, BaseException, Any] | None = None,
    ) -> tuple[Any, Any]:
        if exc_info is None:
            self.queue_consumer.ack_message(message)
        elif attempt < self.attempts and is_transient(exc_info[1]):
            delay = self.retry_delays[attempt - 1]
            log.warning(
                "%s failed on event %s (attempt %d of %d); retrying in %.1fs: %s",
                self.handler_name,
                body.get("id"),
                attempt,
                self.attempts,
                delay,
                exc_info[1],
            )
            self.container.spawn_managed_thread(
                partial(self._retry_later, body, message, attempt + 1, delay)
            )
        else:
            trace = "".join(traceback.format_exception(*exc_info))
            self._park(message, exc_info[1], trace, attempt)
        return result, exc_info

    def _retry_later(
        self, body: dict[str, Any], message: Message, attempt: int, delay: float
    ) -> None:
        eventlet.sleep(delay)
        self._attempt(body, message, attempt)

    def _park(self, message: Message, error: BaseException, trace: str, attempts: int) -> None:
        summary = f"{type(error).__name__}: {error}"
        parked_in = deadletters.parking_queue_name(self.queue.name)
        parked = deadletters.park(
            self.amqp_uri,
            message,
            queue=self.queue.name,
            parked_in=parked_in,
            reason=(summary + "\n" + trace)[:MAX_ERROR_HEADER_CHARS],
            attempts=attempts,
        )
        if not parked:
            if message.channel.connection:
                message.reject(requeue=False)
            return
        self.queue_consumer.ack_message(message)
        log.error(
            "%s parked event %s in %s after %d attempt(s): %s",
            self.handler_name,
            (message.properties or {}).get("message_id"),
            parked_in,
            attempts,
            summary,
        )


reliable_event_handler = ReliableEventHandler.decorator


class HandledEvent:
    """Columns of a service's ``handled_events`` table; mix into its declarative base."""

    __tablename__ = "handled_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # "<service>.<method>": two handlers of one service each handle an event once.
    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


def handle_once(
    session: Session,
    model: type[HandledEvent],
    envelope: dict[str, Any],
    handler: str,
    effect: Callable[[], T],
) -> tuple[bool, T | None]:
    """Runs ``effect`` in ``session``'s transaction unless ``handler`` already handled
    this envelope's ``id``; returns (whether it ran, its result). The caller commits.

    The id is claimed with an INSERT: a concurrent delivery of the same event blocks on
    the primary key until the first commits (then skips) or rolls back (then runs).
    """
    try:
        event_id = uuid.UUID(str(envelope["id"]))
    except (KeyError, ValueError):
        raise PoisonMessage(f"the envelope id {envelope.get('id')!r} is not a UUID") from None
    claimed = session.execute(
        insert(model)
        .values(event_id=event_id, handler=handler)
        .on_conflict_do_nothing()
        .returning(model.event_id)
    ).first()
    if claimed is None:
        log.info("%s skipped event %s: already handled", handler, event_id)
        return False, None
    return True, effect()


def claim_unhandled(
    session: Session,
    model: type[HandledEvent],
    envelopes: Sequence[dict[str, Any]],
    handler: str,
) -> list[dict[str, Any]]:
    """:func:`handle_once` for a batch: claims every envelope id in one INSERT and
    returns the envelopes not handled before (the first of any repeated id), in order.
    The claims commit or roll back with the caller's transaction."""
    ids: dict[uuid.UUID, dict[str, Any]] = {}
    for envelope in envelopes:
        try:
            event_id = uuid.UUID(str(envelope["id"]))
        except (KeyError, ValueError):
            raise PoisonMessage(f"the envelope id {envelope.get('id')!r} is not a UUID") from None
        ids.setdefault(event_id, envelope)
    if not ids:
        return []
    # One statement sent as an executemany (compiled once and cached, whatever the
    # batch's size), returning the ids it inserted.
    table = model.__table__
    claimed = set(
        session.execute(
            insert(table).on_conflict_do_nothing().returning(table.c.event_id),
            [{"event_id": event_id, "handler": handler} for event_id in ids],
        ).scalars()
    )
    if len(claimed) < len(ids):
        log.info("%s skipped %d event(s): already handled", handler, len(ids) - len(claimed))
    return [envelope for event_id, envelope in ids.items() if event_id in claimed]


#: Redeliveries come within minutes; replays from a parking queue within days.
HANDLED_EVENT_RETENTION = timedelta(days=30)


def purge_handled(
    session: Session, model: type[HandledEvent], older_than: timedelta = HANDLED_EVENT_RETENTION
) -> int:
    """Forgets handled ids older than ``older_than``; returns how many."""
    result = session.execute(delete(model).where(model.handled_at < utcnow() - older_than))
    session.commit()
    return result.rowcount
