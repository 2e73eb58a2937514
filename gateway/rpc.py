"""Calling nameko services from the gateway's threads.

A standalone nameko RPC proxy is single-threaded (shared across threads it deadlocks),
and starting one costs a reply queue, so each worker thread keeps one started proxy for
its lifetime (:class:`RpcClient`). Every call carries the request's context data and an
explicit timeout, and its request message expires with that timeout, so a service that
comes back after the client gave up does not act on a request nobody waits for.

Failures of the transport become :class:`ServiceUnavailable` (503) and
:class:`ServiceTimeout` (504); a service's own typed errors (``common.errors``) pass
through unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from amqp.exceptions import AMQPError
from kombu.exceptions import KombuError
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.rpc import RpcReply, ServiceProxy
from nameko.standalone.rpc import ClusterProxy, ClusterRpcProxy

from common import tracing
from common.context import CallContext
from common.errors import BookstoreError

log = logging.getLogger(__name__)

# A broker that is down must fail a request in about a second, not after kombu's
# default of three retries with growing waits.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.3}


class ServiceUnavailable(Exception):
    """The broker, or the service named, cannot take the call now."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


class ServiceTimeout(Exception):
    """The service took longer than the timeout to answer."""

    def __init__(self, service: str, timeout: float) -> None:
        super().__init__(f"{service} did not answer within {timeout:g}s")
        self.service = service
        self.timeout = timeout


class _ClusterProxy(ClusterProxy):
    """nameko's cluster proxy, with publisher options for every service proxy it makes."""

    def __init__(self, worker_ctx: Any, reply_listener: Any, **publisher_options: Any) -> None:
        self._publisher_options = publisher_options
        super().__init__(worker_ctx, reply_listener)

    def __getattr__(self, name: str) -> ServiceProxy:
        if name not in self._proxies:
            self._proxies[name] = ServiceProxy(
                self._worker_ctx, name, self._reply_listener, **self._publisher_options
            )
        return self._proxies[name]


class _ThreadProxy(ClusterRpcProxy):
    """One thread's proxy: per-call context data and timeout, expiring requests."""

    def __init__(self, amqp_uri: str, timeout: float) -> None:
        super().__init__({"AMQP_URI": amqp_uri}, timeout=timeout)
        self._proxy = _ClusterProxy(
            self._worker_ctx,
            self._reply_listener,
            retry_policy=PUBLISH_RETRY_POLICY,
        )

    def send(
        self,
        service: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: CallContext,
        timeout: float,
    ) -> RpcReply:
        """Publishes the request; ``wait`` for the reply."""
        # This proxy belongs to one thread, which runs one request at a time, so
        # setting per-call state on it is safe.
        deadline = time.time() + timeout
        self._worker_ctx.data = replace(context, deadline=deadline).as_context_data()
        method_proxy = getattr(getattr(self._proxy, service), method)
        method_proxy.publisher.expiration = timeout
        return method_proxy.call_async(*args, **kwargs)

    def wait(self, reply: RpcReply, timeout: float) -> Any:
        self._reply_listener.queue_consumer.timeout = max(timeout, 0.001)
        return reply.result()


DEGRADED = "degraded"


def ping_outcome(answer: Any) -> str:
    """ "ok", or "degraded: <why>" when a service answers but runs on a fallback (search
    with Elasticsearch configured but unreachable answers from PostgreSQL)."""
    if isinstance(answer, dict) and answer.get("status") == DEGRADED:
        return f"{DEGRADED}: {answer.get('detail') or 'running on a fallback'}"
    return "ok"


def is_serving(outcome: str) -> bool:
    """Whether a ping outcome means the service can serve requests (degraded can)."""
    return outcome == "ok" or outcome.startswith(f"{DEGRADED}:")


class RpcClient:
    """Thread-safe RPC to nameko services: a started proxy per calling thread."""

    def __init__(self, amqp_uri: str, timeout: float) -> None:
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._started: set[_ThreadProxy] = set()

    def call(
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
            with self._translated_errors(service, method, timeout):
                proxy = self._thread_proxy()
                reply = proxy.send(service, method, args, kwargs, context, timeout)
                return proxy.wait(reply, timeout)
        except BaseException as raised:
            error = raised
            raise
        finally:
            tracing.finish(span, error, expected=isinstance(error, BookstoreError))

    def ping_all(
        self, services: Iterable[str], context: CallContext, timeout: float
    ) -> dict[str, str]:
        """Pings every service at once; per service, "ok" or what went wrong.
        Raises :class:`ServiceUnavailable` if the broker cannot be reached at all."""
        deadline = time.monotonic() + timeout
        outcomes: dict[str, str] = {}
        replies: dict[str, RpcReply] = {}
        timed_out = False
        with self._translated_errors("broker", "ping", timeout):
            proxy = self._thread_proxy()
            for service in services:
                try:
                    replies[service] = proxy.send(service, "ping", (), {}, context, timeout)
                except UnknownService:
                    outcomes[service] = "not running"
            for service, reply in replies.items():
                try:
                    answer = proxy.wait(reply, deadline - time.monotonic())
                    outcomes[service] = ping_outcome(answer)
                except RpcTimeout:
                    timed_out = True
                    outcomes[service] = f"no answer within {timeout:g}s"
                except (BookstoreError, RemoteError) as error:
                    # e.g. the service is up but its database is not
                    outcomes[service] = f"unhealthy: {error}"
        if timed_out:
            self._discard_thread_proxy()
        return outcomes

    @contextmanager
    def _translated_errors(self, service: str, method: str, timeout: float) -> Iterator[None]:
        try:
            yield
        except RpcTimeout:
            # Its reply may still arrive; a fresh proxy will not be confused by it.
            self._discard_thread_proxy()
            raise ServiceTimeout(service, timeout) from None
        except UnknownService:
            raise ServiceUnavailable(service, "the service is not running") from None
        except (OSError, AMQPError, KombuError, RuntimeError) as error:
            # nameko raises RuntimeError when the proxy's connection dropped; every
            # branch here means the broker connection cannot be trusted any more.
            log.warning("RPC to %s.%s failed: %r", service, method, error)
            self._discard_thread_proxy()
            raise ServiceUnavailable(service, "the message broker is unreachable") from None

    def close(self) -> None:
        with self._lock:
            proxies, self._started = self._started, set()
        for proxy in proxies:
            _stop_quietly(proxy)

    def _thread_proxy(self) -> _ThreadProxy:
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = _ThreadProxy(self.amqp_uri, self.timeout)
            proxy.start()
            self._local.proxy = proxy
            with self._lock:
                self._started.add(proxy)
        return proxy

    def _discard_thread_proxy(self) -> None:
        proxy = getattr(self._local, "proxy", None)
        self._local.proxy = None
        if proxy is not None:
            with self._lock:
                self._started.discard(proxy)
            _stop_quietly(proxy)


def _stop_quietly(proxy: _ThreadProxy) -> None:
    try:
        proxy.stop()
    except Exception:
        # Closing a connection that already died may fail any way it likes.
        log.debug("closing an RPC proxy failed", exc_info=True)
