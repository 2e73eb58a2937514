"""Prometheus metrics for the gateway, and the ``/metrics`` route that serves them.

Requests are labelled by route *template* (``/api/v1/products/{product_id}``), never the
raw path: one series per product id would grow without bound. Connexion's router writes
the matched operation into the ASGI scope, and the spec says which template that
operation has. Requests no operation matched are ``unmatched``, except the gateway's own
few operational routes.

A gateway with several worker processes (``GATEWAY_WORKERS``, the number of cores by
default) counts in prometheus-client's multiprocess mode: ``python -m gateway`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, and every
scrape, whichever worker answers it, sums them all (docs/decisions/0071).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.schemas import spec_document
from gateway.settings import API_BASE_PATH

METRICS_PATH = "/metrics"
# Probes are the platform asking, not traffic: every few seconds per replica, they would
# pad the request rate and drag latency percentiles towards zero.
PROBE_PATHS = frozenset({"/health", "/ready"})
UNMATCHED = "unmatched"
# The routes of gateway/operational.py: few and fixed, so their paths are safe labels.
# Swagger UI's many assets are one route.
OPERATIONAL_ROUTES = frozenset({"/", "/health", "/ready", "/openapi.json", "/openapi.yaml"})
DOCS_PREFIX = "/docs"

HTTP_REQUESTS = Counter(
    "bookstore_http_requests_total",
    "HTTP requests the gateway answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "bookstore_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route template.",
    ["route", "method"],
)
#: Set (before this module is imported) when the gateway runs several worker processes.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_IN_FLIGHT = Gauge(
    "bookstore_http_requests_in_flight",
    "Requests the gateway is working on now.",
    multiprocess_mode="livesum",
)


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or every worker's files."""
    if not os.environ.get(MULTIPROCESS_DIR_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def forget_this_process() -> None:
    """A stopping worker's live gauges (requests in flight) stop counting."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        multiprocess.mark_process_dead(os.getpid())


def operation_routes() -> dict[str, str]:
    """operationId -> the full path template it is served at."""
    routes: dict[str, str] = {}
    for path, item in spec_document()["paths"].items():
        for operation in item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                routes[operation["operationId"]] = f"{API_BASE_PATH}{path}"
    return routes


def route_label(path: str, operation_id: str | None, routes: dict[str, str]) -> str:
    if operation_id is not None and operation_id in routes:
        return routes[operation_id]
    if path in OPERATIONAL_ROUTES:
        return path
    if path == DOCS_PREFIX or path.startswith(f"{DOCS_PREFIX}/"):
        return DOCS_PREFIX
    return UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request; answers ``GET /metrics``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = operation_routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] == "GET":
            # Scrapes are not counted: they would be most of the traffic of an idle gateway.
            await self._serve_metrics(send)
            return
        if scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        # Connexion's router records the operation in scope["extensions"]; making sure
        # the dict exists here means the (shallow) scope copies further in share it.
        extensions: dict[str, Any] = scope.setdefault("extensions", {})
        status = {"code": 500, "recorded": False}
        started = time.perf_counter()

        def record() -> None:
            if status["recorded"]:
                return
            status["recorded"] = True
            HTTP_IN_FLIGHT.dec()
            operation_id = extensions.get("connexion_routing", {}).get("operation_id")
            route = route_label(scope["path"], operation_id, self.routes)
            HTTP_REQUESTS.labels(route, scope["method"], str(status["code"])).inc()
            HTTP_DURATION.labels(route, scope["method"]).observe(time.perf_counter() - started)

        async def send_recording_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last byte leaves: a client that scrapes right after
                # its response must see its request counted.
                record()
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            record()

    @staticmethod
    async def _serve_metrics(send: Send) -> None:
        body = generate_latest(scrape_registry())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
