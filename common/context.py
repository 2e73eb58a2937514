"""The call context that travels with every RPC call and event.

The gateway puts a correlation id, the caller's user id and, when tracing is on, the
W3C ``traceparent`` of its span into nameko's context data; nameko carries context data
in AMQP headers to every downstream call. Inside a service, :class:`CallContextProvider`
binds it to a context variable so log lines and outbox events can read it without every
function passing it along, and continues the trace with a span per worker.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from nameko.containers import WorkerContext
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from opentelemetry.trace import Span, SpanKind

from common import tracing

CORRELATION_ID_KEY = "correlation_id"
USER_ID_KEY = "user_id"
#: The address the original HTTP request came from (for audit and login throttling).
CLIENT_IP_KEY = "client_ip"
#: Epoch seconds after which the original caller no longer waits (see common/rpc.py).
DEADLINE_KEY = "deadline"
#: The W3C trace context of the caller's span (see common/tracing.py).
TRACEPARENT_KEY = "traceparent"


@dataclass(frozen=True)
class CallContext:
    correlation_id: str | None = None
    user_id: str | None = None
    deadline: float | None = None
    client_ip: str | None = None
    traceparent: str | None = None

    def as_context_data(self) -> dict[str, str]:
        """The nameko context data for this call (``None`` values are left out)."""
        data = {
            CORRELATION_ID_KEY: self.correlation_id,
            USER_ID_KEY: self.user_id,
            CLIENT_IP_KEY: self.client_ip,
            DEADLINE_KEY: None if self.deadline is None else f"{self.deadline:.3f}",
            TRACEPARENT_KEY: self.traceparent,
        }
        return {key: value for key, value in data.items() if value is not None}


_current: ContextVar[CallContext] = ContextVar(
    "bookstore_call_context",
    default=CallContext(),  # noqa: B039 - frozen, so immutable
)


def current() -> CallContext:
    return _current.get()


def bind(call_context: CallContext) -> Token[CallContext]:
    return _current.set(call_context)


def unbind(token: Token[CallContext]) -> None:
    _current.reset(token)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


class CallContextProvider(DependencyProvider):
    """Binds each worker's context data for logs and events; gives it to the service;
    continues the caller's trace with a span for the worker when tracing is on.

    Entrypoints with no correlation id (a timer, an operator's ``nameko shell`` call) get
    a fresh one, written back into the worker's context data so the RPC calls and events
    that the worker makes carry it onwards. The worker's span replaces the caller's
    ``traceparent`` there for the same reason: what the worker calls is its child.
    """

    def __init__(self) -> None:
        self._contexts: WeakKeyDictionary[WorkerContext, CallContext] = WeakKeyDictionary()
        self._tokens: WeakKeyDictionary[WorkerContext, Token[CallContext]] = WeakKeyDictionary()
        self._spans: WeakKeyDictionary[WorkerContext, tuple[Span, object]] = WeakKeyDictionary()

    def setup(self) -> None:
        tracing.configure(self.container.service_name)

    def get_dependency(self, worker_ctx: WorkerContext) -> CallContext:
        # nameko injects dependencies before it calls worker_setup, so this is first.
        data = worker_ctx.data
        data.setdefault(CORRELATION_ID_KEY, new_correlation_id())
        span = _worker_span(worker_ctx)
        if span is not None:
            data[TRACEPARENT_KEY] = tracing.traceparent(span)
            self._spans[worker_ctx] = (span, None)
        call_context = CallContext(
            correlation_id=str(data[CORRELATION_ID_KEY]),
            user_id=_optional_str(data.get(USER_ID_KEY)),
            client_ip=_optional_str(data.get(CLIENT_IP_KEY)),
            traceparent=_optional_str(data.get(TRACEPARENT_KEY)),
        )
        self._contexts[worker_ctx] = call_context
        return call_context

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        self._tokens[worker_ctx] = bind(self._contexts[worker_ctx])
        if worker_ctx in self._spans:
            span, _ = self._spans[worker_ctx]
            self._spans[worker_ctx] = (span, tracing.activate(span))

    def worker_result(
        self,
        worker_ctx: WorkerContext,
        result: Any = None,
        exc_info: tuple[type, BaseException, Any] | None = None,
    ) -> None:
        if worker_ctx in self._spans:
            span, _ = self._spans[worker_ctx]
            error = exc_info[1] if exc_info else None
            tracing.finish(span, error, expected=is_expected(worker_ctx.entrypoint, error))

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        self._contexts.pop(worker_ctx, None)
        token = self._tokens.pop(worker_ctx, None)
        if token is not None:
            unbind(token)
        _, otel_token = self._spans.pop(worker_ctx, (None, None))
        tracing.deactivate(otel_token)


def _worker_span(worker_ctx: WorkerContext) -> Span | None:
    entrypoint = worker_ctx.entrypoint
    service = worker_ctx.service_name
    data = worker_ctx.data
    attributes: dict[str, Any] = {tracing.CORRELATION_ID_ATTRIBUTE: str(data[CORRELATION_ID_KEY])}
    if isinstance(entrypoint, Rpc):
        kind = SpanKind.SERVER
        attributes |= {"rpc.system": "nameko", "rpc.service": service}
        attributes["rpc.method"] = entrypoint.method_name
    elif isinstance(entrypoint, EventHandler):
        kind = SpanKind.CONSUMER
        attributes |= {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": f"{entrypoint.source_service}.events",
            "bookstore.event_type": entrypoint.event_type,
        }
    else:  # a timer: the start of a trace of its own
        kind = SpanKind.INTERNAL
    return tracing.start_span(
        f"{service}.{entrypoint.method_name}",
        kind,
        _optional_str(data.get(TRACEPARENT_KEY)),
        attributes,
    )


def is_expected(entrypoint: Any, error: BaseException | None) -> bool:
    """Whether ``error`` is one of the typed domain errors the entrypoint declares (its
    caller expects it: not found, conflict...), as opposed to a failure."""
    expected = getattr(entrypoint, "expected_exceptions", ())
    return bool(expected) and error is not None and isinstance(error, expected)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
