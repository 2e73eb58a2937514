"""How handlers call services: with the request's correlation id and caller attached."""

from __future__ import annotations

import json
from typing import Any

from connexion import request
from connexion.context import context as connexion_context
from connexion.context import scope as connexion_scope
from connexion.jsonifier import Jsonifier
from starlette.responses import Response as StarletteResponse

from common import context
from gateway.amqp_rpc import AsyncRpcClient
from gateway.middleware import RAW_BODY_KEY

_rpc: AsyncRpcClient | None = None


def use_rpc_client(rpc: AsyncRpcClient) -> None:
    global _rpc  # one client per gateway process, set by the app factory
    _rpc = rpc


def rpc_client() -> AsyncRpcClient:
    if _rpc is None:
        raise RuntimeError("the gateway's RPC client is not configured (use create_app)")
    return _rpc


async def call(service: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Calls ``service.method`` on behalf of the current request's caller."""
    return await rpc_client().call(service, method, *args, context=request_context(), **kwargs)


def request_context() -> context.CallContext:
    user = connexion_context.get("user")  # set by connexion for authenticated operations
    current = context.current()
    return context.CallContext(
        correlation_id=current.correlation_id,
        user_id=str(user) if user is not None else None,
        client_ip=current.client_ip,
        traceparent=current.traceparent,
    )


JSON_RESPONSE = {"Content-Type": "application/json"}

Response = tuple[Any, int, dict[str, str]]


#: How handlers' answers are encoded (compact); the read cache encodes what events carry
#: the same way (gateway/read_cache.py).
JSONIFIER = Jsonifier(json, separators=(",", ":"))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A handler's answer. The content type is explicit because every operation can also
    answer ``application/problem+json``, and connexion will not guess between the two."""
    return body, status, {**JSON_RESPONSE, **(headers or {})}


def empty_response(status: int, headers: dict[str, str] | None = None) -> StarletteResponse:
    """A 204 or 304: no body, so no Content-Type either."""
    return StarletteResponse(status_code=status, headers=headers)


def header(name: str) -> str | None:
    """A request header (connexion passes only path, query and body parameters)."""
    return request.headers.get(name)


def raw_body() -> bytes:
    """The request body exactly as it came (only for operations that need the bytes:
    see :class:`gateway.middleware.RawBodyMiddleware`)."""
    return connexion_scope["extensions"][RAW_BODY_KEY]
