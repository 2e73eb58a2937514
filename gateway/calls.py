"""How handlers call services: with the request's correlation id and caller attached."""

from __future__ import annotations

from typing import Any

from connexion.context import context as connexion_context
from flask import Response as FlaskResponse
from flask import request

from common import context
from gateway.rpc import RpcClient

_rpc: RpcClient | None = None


def use_rpc_client(rpc: RpcClient) -> None:
    global _rpc  # one client per gateway process, set by the app factory
    _rpc = rpc


def rpc_client() -> RpcClient:
    if _rpc is None:
        raise RuntimeError("the gateway's RPC client is not configured (use create_app)")
    return _rpc


def call(service: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Calls ``service.method`` on behalf of the current request's caller."""
    return rpc_client().call(service, method, *args, context=request_context(), **kwargs)


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


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A handler's answer. The content type is explicit because every operation can also
    answer ``application/problem+json``, and connexion will not guess between the two."""
    return body, status, {**JSON_RESPONSE, **(headers or {})}


def empty_response(status: int, headers: dict[str, str] | None = None) -> FlaskResponse:
    """A 204 or 304: no body, so no Content-Type either (Flask would add text/html)."""
    response = FlaskResponse(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def header(name: str) -> str | None:
    """A request header (connexion passes only path, query and body parameters)."""
    return request.headers.get(name)
