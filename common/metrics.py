"""Prometheus metrics for nameko services: entrypoint calls, failures, latency, outbox.

:class:`ServiceMetrics` is one class attribute on a service (``metrics =
ServiceMetrics()``). It times every worker through nameko's ``worker_setup`` /
``worker_result`` hooks, so no entrypoint needs a decorator, and serves the process's
metrics over HTTP on ``<SERVICE>_METRICS_PORT`` (``ORDER_METRICS_PORT``...) or else
``METRICS_PORT`` (off when unset or 0: tests start many services on one machine and turn
it on only where they scrape it; the per-service variable lets ``bin/run``, which starts
every service on one machine, serve each on a port of its own for bench/checkout.py).
``/healthz`` on the same port answers from the service's own event loop, which makes it
a per-instance liveness check: an RPC ping can be answered by any instance of the service.
``/readyz`` also runs ``SELECT 1`` on the service's database (a pooled connection, about a
millisecond): the readiness probe, in place of a ``bookstore ping`` process per probe.

The names below are the contract with the Grafana dashboard (charts/bookstore/dashboards)
and with alerts; tests check the dashboard uses only names a scrape really shows. The
same registry serves the families defined next to what they count:
``bookstore_dead_letters_total`` (common/deadletters.py), ``bookstore_circuit_breaker_*``
(common/circuit.py) and ``bookstore_deliveries_parked_total`` (svc_notify/dispatch.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any
from weakref import WeakKeyDictionary

import eventlet
import eventlet.wsgi
from nameko.containers import WorkerContext
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko_sqlalchemy import Database
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from sqlalchemy import text

from common.config import settings_class
from common.context import is_expected
from common.events import OutboxRelay

log = logging.getLogger(__name__)

RPC_CALLS = Counter(
    "bookstore_rpc_calls_total",
    "RPC entrypoint calls, by outcome: ok, a domain error the caller expects "
    "(not found, conflict...), or a failure (a bug or a broken dependency).",
    ["service", "method", "outcome"],
)
RPC_DURATION = Histogram(
    "bookstore_rpc_duration_seconds",
    "Time an RPC entrypoint took, whatever its outcome.",
    ["service", "method"],
)
EVENTS_HANDLED = Counter(
    "bookstore_events_handled_total",
    "Events an event handler processed, by outcome (ok or failure).",
    ["service", "handler", "source", "event_type", "outcome"],
)
OUTBOX_BACKLOG = Gauge(
    "bookstore_outbox_backlog",
    "Events written to the service's outbox and not yet published to the broker.",
    ["service"],
)

OUTBOX_HELD = Gauge(
    "bookstore_outbox_held",
    "Outbox events the broker returned because no queue takes their type, held in the "
    "outbox and tried again (common/events.py).",
    ["service"],
)

OK, EXPECTED_ERROR, FAILURE = "ok", "expected_error", "failure"


def _outcome(entrypoint: Any, exc_info: tuple[type, BaseException, Any] | None) -> str:
    if exc_info is None:
        return OK
    return EXPECTED_ERROR if is_expected(entrypoint, exc_info[1]) else FAILURE


def _safe(read: Callable[[], int]) -> Callable[[], float]:
    """A gauge callback that cannot fail the whole scrape (NaN says "unknown")."""

    def sample() -> float:
        try:
            return float(read())
        except Exception:
            log.warning("could not read a metric", exc_info=True)
            return math.nan

    return sample


def _http_app(
    metrics_app: Callable[..., Iterable[bytes]],
    readiness: Callable[[], str | None] = lambda: None,
) -> Callable[..., Iterable[bytes]]:
    """``readiness`` returns None when the instance can serve, else why not."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            problem = readiness()
            if problem is None:
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ready\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"not ready: {problem}\n".encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class ServiceMetrics(DependencyProvider):
    """Records every worker of the service it is attached to; serves ``/metrics``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self._started: WeakKeyDictionary[WorkerContext, float] = WeakKeyDictionary()
        self._socket: Any = None
        self._server: eventlet.greenthread.GreenThread | None = None

    def setup(self) -> None:
        self.service_name = self.container.service_name
        if self.port is None:
            self.port = settings_class(self.service_name).current().serving_metrics_port
        for dependency in self.container.dependencies:
            if isinstance(dependency, OutboxRelay):
                OUTBOX_BACKLOG.labels(self.service_name).set_function(_safe(dependency.backlog))
                OUTBOX_HELD.labels(self.service_name).set_function(
                    _safe(lambda relay=dependency: len(relay.held))
                )

    def start(self) -> None:
        if not self.port:
            return
        self._socket = eventlet.listen(("0.0.0.0", self.port))  # noqa: S104 - scraped from outside the pod
        self.port = self._socket.getsockname()[1]
        self._server = self.container.spawn_managed_thread(self._serve)
        log.info("metrics on port %d", self.port)

    def _serve(self) -> None:
        eventlet.wsgi.server(
            self._socket,
            _http_app(make_wsgi_app(REGISTRY), self.readiness),
            log_output=False,
            debug=False,
        )

    def readiness(self) -> str | None:
        """None if every database of the service answers ``SELECT 1``, else why not."""
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database):
                try:
                    with dependency.engine.connect() as connection:  # no trace: no parent
                        connection.execute(text("SELECT 1"))
                except Exception as error:
                    log.warning("readiness: the database does not answer", exc_info=True)
                    return f"database unreachable ({type(error).__name__})"
        return None

    def stop(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    kill = stop

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(
        self,
        worker_ctx: WorkerContext,
        result: Any = None,
        exc_info: tuple[type, BaseException, Any] | None = None,
    ) -> None:
        started = self._started.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint
        outcome = _outcome(entrypoint, exc_info)
        if isinstance(entrypoint, Rpc):
            RPC_CALLS.labels(self.service_name, entrypoint.method_name, outcome).inc()
            if started is not None:
                RPC_DURATION.labels(self.service_name, entrypoint.method_name).observe(
                    time.perf_counter() - started
                )
        elif isinstance(entrypoint, EventHandler):
            EVENTS_HANDLED.labels(
                self.service_name,
                entrypoint.method_name,
                entrypoint.source_service,
                entrypoint.event_type,
                OK if outcome == OK else FAILURE,
            ).inc()
