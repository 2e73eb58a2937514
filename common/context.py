"""The call context that travels with every RPC call and event.

The gateway puts a correlation id and the caller's user id into nameko's context data;
nameko carries context data in AMQP headers to every downstream call. Inside a service,
:class:`CallContextProvider` binds it to a context variable so log lines and outbox events
can read it without every function passing it along.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider

CORRELATION_ID_KEY = "correlation_id"
USER_ID_KEY = "user_id"
#: Epoch seconds after which the original caller no longer waits (see common/rpc.py).
DEADLINE_KEY = "deadline"


@dataclass(frozen=True)
class CallContext:
    correlation_id: str | None = None
    user_id: str | None = None
    deadline: float | None = None

    def as_context_data(self) -> dict[str, str]:
        """The nameko context data for this call (``None`` values are left out)."""
        data = {
            CORRELATION_ID_KEY: self.correlation_id,
            USER_ID_KEY: self.user_id,
            DEADLINE_KEY: None if self.deadline is None else f"{self.deadline:.3f}",
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
    """Binds each worker's context data for logs and events; gives it to the service.

    Entrypoints with no correlation id (a timer, an operator's ``nameko shell`` call) get
    a fresh one, written back into the worker's context data so the RPC calls and events
    that the worker makes carry it onwards.
    """

    def __init__(self) -> None:
        self._contexts: WeakKeyDictionary[WorkerContext, CallContext] = WeakKeyDictionary()
        self._tokens: WeakKeyDictionary[WorkerContext, Token[CallContext]] = WeakKeyDictionary()

    def get_dependency(self, worker_ctx: WorkerContext) -> CallContext:
        # nameko injects dependencies before it calls worker_setup, so this is first.
        data = worker_ctx.data
        data.setdefault(CORRELATION_ID_KEY, new_correlation_id())
        call_context = CallContext(
            correlation_id=str(data[CORRELATION_ID_KEY]),
            user_id=_optional_str(data.get(USER_ID_KEY)),
        )
        self._contexts[worker_ctx] = call_context
        return call_context

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        self._tokens[worker_ctx] = bind(self._contexts[worker_ctx])

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        self._contexts.pop(worker_ctx, None)
        token = self._tokens.pop(worker_ctx, None)
        if token is not None:
            unbind(token)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
