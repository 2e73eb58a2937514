"""OpenTelemetry traces that follow one request across the gateway, RPC calls and events.

The W3C ``traceparent`` of the current span travels in the call context, next to the
correlation id (:class:`common.context.CallContext`): in nameko context data for RPC
calls, and in the event envelope (and its ``nameko.traceparent`` header) for events. The
gateway starts a server span per request (gateway/middleware.py) and a client span per
RPC call (gateway/rpc.py); each service's :class:`~common.context.CallContextProvider`
continues the trace with a span per worker.

Off unless configured, and then nothing is created at all (no spans, no ids): tracing
is on in a process when at least one exporter is configured through the environment:

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: OTLP over
  HTTP/protobuf to a collector, with the exporter's other standard ``OTEL_EXPORTER_OTLP_*``
  variables;
- ``BOOKSTORE_TRACES_FILE``: one JSON object per finished span, appended to this file
  (tests, and a quick look without a collector).

``OTEL_SDK_DISABLED=true`` turns it off whatever else is set; ``OTEL_SERVICE_NAME``
overrides the service name; ``OTEL_TRACES_SAMPLER`` (default: follow the parent's
decision, sample every root) and ``OTEL_BSP_*`` are read by the SDK itself.

When on, the libraries a process calls through add client spans to our traces
(:func:`_instrument_libraries`, docs/decisions/0097): each service's SQL statements,
HTTP calls made with requests (webhooks, Stripe's SDK), AWS calls (SES, SNS,
EventBridge) and Redis commands (the gateway's rate limiter).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: A frozen dataclass with a ``traceparent`` field (common.context.CallContext).
CallContextT = TypeVar("CallContextT")

TRACES_FILE_ENV = "BOOKSTORE_TRACES_FILE"
_OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

#: The span attribute that ties a trace to the correlation id people quote.
CORRELATION_ID_ATTRIBUTE = "bookstore.correlation_id"

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
#: The libraries' spans go through this provider: same exporters, but it starts no trace
#: of its own (see _instrument_libraries).
_library_provider: TracerProvider | None = None
# nameko sets a service's dependencies up concurrently (green threads), and two of them
# configure tracing (common.context, common.db); starting the batch processor's thread
# yields, so without the lock both would build a provider.
_configure_lock = threading.Lock()


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one line of JSON (the SDK's own span format)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        # One write() of an O_APPEND file: the processes of a platform can share a file
        # without their lines interleaving.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, lines.encode())
        finally:
            os.close(descriptor)
        return SpanExportResult.SUCCESS


def _exporters() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    if any(os.environ.get(name) for name in _OTLP_ENDPOINT_ENVS):
        # Imported only when used: it brings protobuf along.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    if path := os.environ.get(TRACES_FILE_ENV):
        exporters.append(JsonLinesSpanExporter(path))
    return exporters


def configure(service_name: str) -> bool:
    """Sets this process's tracer up from the environment (once); True if tracing is on."""
    with _configure_lock:
        return _configure(service_name)


def _configure(service_name: str) -> bool:
    global _tracer  # one tracer provider per process, as OpenTelemetry has it
    if _tracer is not None:
        return True
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters()
    if not exporters:
        return False
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; an
    # explicit service.name would override them.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    resource = Resource.create(attributes)
    provider = TracerProvider(resource=resource)
    processors = [BatchSpanProcessor(exporter) for exporter in exporters]
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("bookstore")
    _instrument_libraries(resource, processors)
    return True


def _instrument_libraries(resource: Resource, processors: list[BatchSpanProcessor]) -> None:
    """Client spans for requests, botocore and Redis calls (patched on their classes, so
    clients made before and after are covered), and for SQL through :func:`trace_engine`.

    They are recorded only inside a trace of ours: their provider samples no root, so
    the outbox relay's polls, the notify senders' and the bridge's loops and the
    readiness probe's query start no trace each. Imported here, when a service's
    container sets up: ``nameko run`` has monkey-patched (eventlet) by then, before
    requests and botocore import ssl and socket.
    """
    global _library_provider
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    _library_provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
    for processor in processors:
        _library_provider.add_span_processor(processor)
    for instrumentor in (RequestsInstrumentor(), BotocoreInstrumentor(), RedisInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=_library_provider)


def trace_engine(engine: Any) -> None:
    """A span per SQL statement ``engine`` runs, inside the current trace; nothing when
    tracing is off. For engines made by modules that imported ``create_engine`` before
    tracing was configured (nameko-sqlalchemy's, through common.db)."""
    if _library_provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        # instrument() runs once per process; later engines get their tracer directly.
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import get_meter

        EngineTracer(
            _library_provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
            engine,
            get_meter("bookstore").create_up_down_counter("db.client.connections.usage"),
        )
        return
    # Its declared range stops below SQLAlchemy 2.1, which it works with (the events it
    # listens to are unchanged; tests/e2e/test_tracing.py checks the spans).
    instrumentor.instrument(
        tracer_provider=_library_provider, engines=[engine], skip_dep_check=True
    )


def enabled() -> bool:
    return _tracer is not None


def start_span(
    name: str,
    kind: SpanKind,
    traceparent: str | None,
    attributes: dict[str, Any] | None = None,
) -> Span | None:
    """A span continuing ``traceparent`` (a new trace without one); None when tracing is off."""
    if _tracer is None:
        return None
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    return _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def start_rpc_client_span(
    service: str, method: str, context: CallContextT
) -> tuple[Span | None, CallContextT]:
    """The client span of one RPC call (None when tracing is off), and the call context
    to send: its ``traceparent`` made this span's, so the service's span is a child of the
    call's, which then measures the queueing too."""
    span = start_span(
        f"{service}.{method}",
        SpanKind.CLIENT,
        context.traceparent,
        {"rpc.system": "nameko", "rpc.service": service, "rpc.method": method},
    )
    if span is None:
        return None, context
    return span, dataclasses.replace(context, traceparent=traceparent(span))


def unsampled_traceparent() -> str:
    """A ``traceparent`` whose trace is not recorded (flags ``00``): calls made with it
    start no trace here or in the service (the default sampler follows the parent).
    For background polls, which would otherwise start a trace every second."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def traceparent(span: Span | None) -> str | None:
    """The W3C ``traceparent`` that makes ``span`` the parent of the next hop."""
    if span is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def activate(span: Span | None) -> object | None:
    """Makes ``span`` current (log lines then carry its ids); pass the result to
    :func:`deactivate`."""
    if span is None:
        return None
    return otel_context.attach(trace.set_span_in_context(span))


def deactivate(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)


def finish(span: Span | None, error: BaseException | None = None, expected: bool = False) -> None:
    """Ends ``span``. A domain error the caller expects (not found, conflict...) is an
    answer, not a failure: it is recorded as an event, and the span's status stays unset."""
    if span is None:
        return
    if error is not None:
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__name__)
        if not expected:
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
    span.end()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, in hex, for log lines; None outside one."""
    if _tracer is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
