"""Calling nameko services from the gateway's event loop: one AMQP connection per process.

This client speaks nameko's RPC protocol (``nameko/rpc.py``, ``nameko/messaging.py``)
with aio-pika instead of running nameko's standalone proxy, which is single-threaded
and needed one started proxy (connection and reply queue) per request thread:

* a request is published to the ``nameko-rpc`` topic exchange with routing key
  ``service.method``, a JSON body ``{"args": [...], "kwargs": {...}}``, ``reply_to`` and
  a fresh ``correlation_id``; the call's context data travels in headers named
  ``nameko.<key>``; publishing is mandatory and confirmed, so a service nobody listens
  for is returned at once (:class:`ServiceUnavailable`, as nameko's ``UnknownService``);
* the service publishes its answer ``{"result": ..., "error": ...}`` to the same exchange
  with routing key ``reply_to``: each process binds one exclusive reply queue there
  and matches answers to waiting calls by correlation id; an ``error`` is nameko's
  serialised exception, turned back into our typed errors by ``nameko.exceptions
  .deserialize`` (the classes in ``common.errors`` are registered with it);
* every call has a timeout (504 material, :class:`ServiceTimeout`), its request expires
  with that timeout and carries the caller's deadline, so a service that comes back
  after the client gave up does not act on a request nobody waits for.

When the connection is lost (closed, or silent past its heartbeats) calls fail at once
with :class:`ServiceUnavailable` (503), calls waiting for answers on it fail too rather
than at their timeout, and a background task reconnects with growing waits. A broker
that does not confirm a publish within the call's timeout times the call out (504) but
keeps the connection: an overloaded broker is not a lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.exceptions import AMQPError, PublishError
from nameko.exceptions import RemoteError, deserialize

from common import tracing
from common.context import CallContext
from common.errors import BookstoreError
from gateway.rpc import ServiceTimeout, ServiceUnavailable, ping_outcome

log = logging.getLogger(__name__)

#: nameko's default RPC exchange (``RPC_EXCHANGE_CONFIG_KEY`` unset in every service).
RPC_EXCHANGE = "nameko-rpc"
#: nameko's prefix for context data headers (``nameko.constants.HEADER_PREFIX``).
HEADER_PREFIX = "nameko"
CONNECT_TIMEOUT_SECONDS = 2.0
RECONNECT_DELAYS_SECONDS = (0.1, 0.5, 1.0, 2.0)
#: Seconds between heartbeats: a broker that vanished without closing the socket is
#: noticed within a few of these.
HEARTBEAT_SECONDS = 5


def amqp_url(uri: str) -> str:
    """A kombu URI (``pyamqp://guest:guest@host:5672//``) as aio-pika wants it."""
    scheme, sep, rest = uri.partition("://")
    if scheme in ("pyamqp", "librabbitmq"):
        scheme = "amqp"
    separator = "&" if "?" in rest else "?"
    return f"{scheme}{sep}{rest}{separator}heartbeat={HEARTBEAT_SECONDS}"


class AsyncRpcClient:
    """RPC to nameko services from one event loop: one connection, one reply queue."""

    def __init__(self, amqp_uri: str, timeout: float) -> None:
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._url = amqp_url(amqp_uri)
        self._reply_key = uuid.uuid4().hex
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called after every (re)connection, with the connection: other consumers
        #: (the read cache's event subscription) ride on it.
        self.on_connected: list[Callable[[AbstractConnection], Any]] = []

    @property
    def connected(self) -> bool:
        return self._exchange is not None and not self._connection.is_closed

    async def start(self) -> None:
        """Connects now if the broker answers; otherwise keeps trying in the background."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._connect()
        except (TimeoutError, OSError, AMQPError) as error:
            log.warning("the message broker is unreachable, retrying: %r", error)
            self._reconnect_soon()

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        connection, self._connection, self._exchange = self._connection, None, None
        self._fail_pending("the gateway is stopping")
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def call(
        self,
        service: str,
        method: str,
        *args: Any,
        context: CallContext,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        timeout = self.timeout if timeout is None else timeout
        span, context = tracing.start_rpc_client_span(service, method, context)
        error: BaseException | None = None
        try:
            # One deadline for publishing (confirmed) and the answer together.
            deadline = time.monotonic() + timeout
            reply = await self._send(service, method, args, kwargs, context, timeout)
            return await self._wait(service, reply, timeout, deadline - time.monotonic())
        except BaseException as raised:
            error = raised
            raise
        finally:
            tracing.finish(span, error, expected=isinstance(error, BookstoreError))

    def call_from_thread(
        self, service: str, method: str, *args: Any, context: CallContext, **kwargs: Any
    ) -> Any:
        """:meth:`call` for the gateway's background threads (key and revocation
        refreshes), run on the client's event loop."""
        if self._loop is None:
            raise ServiceUnavailable(service, "the RPC client has not started")
        future = asyncio.run_coroutine_threadsafe(
            self.call(service, method, *args, context=context, **kwargs), self._loop
        )
        return future.result(self.timeout + 1)

    async def ping_all(
        self, services: Iterable[str], context: CallContext, timeout: float
    ) -> dict[str, str]:
        """Pings every service at once; per service, "ok" or what went wrong.
        Raises :class:`ServiceUnavailable` if the broker cannot be reached at all."""
        services = list(services)
        deadline = time.monotonic() + timeout
        replies: dict[str, asyncio.Future[Any]] = {}
        outcomes: dict[str, str] = {}
        for service in services:
            try:
                replies[service] = await self._send(service, "ping", (), {}, context, timeout)
            except ServiceUnavailable as error:
                if error.reason != NOT_RUNNING:
                    raise
                outcomes[service] = "not running"
        for service, reply in replies.items():
            try:
                answer = await self._wait(service, reply, timeout, deadline - time.monotonic())
                outcomes[service] = ping_outcome(answer)
            except ServiceTimeout:
                outcomes[service] = f"no answer within {timeout:g}s"
            except (BookstoreError, RemoteError) as error:
                # e.g. the service is up but its database is not
                outcomes[service] = f"unhealthy: {error}"
        return {service: outcomes[service] for service in services}

    async def _send(
        self,
        service: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: CallContext,
        timeout: float,
    ) -> asyncio.Future[Any]:
        exchange = self._exchange
        if exchange is None or self._connection is None or self._connection.is_closed:
            self._reconnect_soon()
            raise ServiceUnavailable(service, UNREACHABLE)
        correlation_id = str(uuid.uuid4())
        data = replace(context, deadline=time.time() + timeout).as_context_data()
        message = aio_pika.Message(
            orjson.dumps({"args": args, "kwargs": kwargs}),
            content_type="application/json",
            content_encoding="utf-8",
            headers={f"{HEADER_PREFIX}.{key}": value for key, value in data.items()},
            reply_to=self._reply_key,
            correlation_id=correlation_id,
            expiration=timeout,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (service, reply)
        try:
            await asyncio.wait_for(
                exchange.publish(message, f"{service}.{method}", mandatory=True),
                timeout,
            )
        except PublishError:
            self._forget(correlation_id, reply)
            raise ServiceUnavailable(service, NOT_RUNNING) from None
        except TimeoutError:
            # Not confirmed within the call's timeout: whether the service got it is
            # unknown, as with any timeout (504; a retry with the same Idempotency-Key
            # is safe). An overloaded broker is not a lost connection: dropping it would
            # fail every call in flight and empty the read cache; a dead one closes the
            # socket or misses heartbeats, and is dropped then.
            self._forget(correlation_id, reply)
            log.warning("RPC to %s.%s: the broker did not confirm in time", service, method)
            raise ServiceTimeout(service, timeout) from None
        except BROKEN_LINK as error:
            self._forget(correlation_id, reply)
            log.warning("RPC to %s.%s failed: %r", service, method, error)
            self._drop_connection(exchange)
            raise ServiceUnavailable(service, UNREACHABLE) from None
        return reply

    def _forget(self, correlation_id: str, reply: asyncio.Future[Any]) -> None:
        """Stops waiting for a reply whose request could not be sent."""
        self._pending.pop(correlation_id, None)
        if reply.done():
            reply.exception()  # failed by a dropped connection meanwhile: seen, not lost
        else:
            reply.cancel()

    async def _wait(
        self, service: str, reply: asyncio.Future[Any], timeout: float, remaining: float
    ) -> Any:
        """The answer, waited for ``remaining`` seconds (504 names the call's ``timeout``)."""
        try:
            body = await asyncio.wait_for(reply, max(remaining, 0.001))
        except TimeoutError:
            raise ServiceTimeout(service, timeout) from None
        finally:
            if not reply.done():
                reply.cancel()
        error = body.get("error")
        if error:
            raise deserialize(error)
        return body.get("result")

    def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        _, reply = self._pending.pop(message.correlation_id or "", (None, None))
        if reply is None or reply.done():
            return  # its caller gave up (timed out): nobody waits for it
        try:
            reply.set_result(orjson.loads(message.body))
        except orjson.JSONDecodeError as error:
            reply.set_exception(RemoteError("MalformedReply", str(error)))

    async def _connect(self) -> None:
        connection = await aio_pika.connect(self._url, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                RPC_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            replies = await channel.declare_queue(
                f"rpc.reply-gateway-{self._reply_key}", exclusive=True, auto_delete=True
            )
            await replies.bind(exchange, self._reply_key)
            await replies.consume(self._on_reply_message, no_ack=True)
            for callback in self.on_connected:
                await callback(connection)
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(lambda _sender, _exc: self._drop_connection(exchange))
        self._connection, self._channel, self._exchange = connection, channel, exchange
        log.info("connected to the message broker")

    async def _on_reply_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._on_reply(message)

    def _drop_connection(self, exchange: AbstractExchange) -> None:
        """Forgets a connection that failed (once, whoever notices first), fails the
        calls waiting on it, and reconnects."""
        if self._exchange is not exchange:
            return
        connection, self._connection, self._exchange = self._connection, None, None
        self._fail_pending(UNREACHABLE)
        if connection is not None and not connection.is_closed:
            asyncio.get_running_loop().create_task(_close_quietly(connection))
        self._reconnect_soon()

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for service, reply in pending.values():
            if not reply.done():
                reply.set_exception(ServiceUnavailable(service, reason))

    def _reconnect_soon(self) -> None:
        if self._closed or (self._connecting is not None and not self._connecting.done()):
            return
        self._connecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed and self._exchange is None:
            await asyncio.sleep(
                RECONNECT_DELAYS_SECONDS[min(attempt, len(RECONNECT_DELAYS_SECONDS) - 1)]
            )
            attempt += 1
            try:
                await self._connect()
            except (TimeoutError, *BROKEN_LINK) as error:
                log.debug("reconnecting to the message broker failed: %r", error)


#: What a publish raises when the link to the broker is gone or going: a socket error, an
#: AMQP error, or (when the connection closed a moment earlier) aiormq's
#: ChannelInvalidStateError, a RuntimeError: each is a 503, never a 500.
BROKEN_LINK = (
    OSError,
    AMQPError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
)
NOT_RUNNING = "the service is not running"
UNREACHABLE = "the message broker is unreachable"


async def _close_quietly(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await connection.close()
