"""ASGI middleware: a correlation id, a trace span and one access-log line per request; a
cap on body size."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import context, tracing
from gateway.metrics import operation_routes, route_label

log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
# A caller's id is kept if it is a sane token; anything else (too long, odd characters
# that could forge log lines) is replaced by a fresh UUID.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT_KEY = b"traceparent"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for key, value in headers:
        if key == _REQUEST_ID_KEY:
            candidate = value.decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.match(candidate):
                return candidate
            break
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Assigns the correlation id (the caller's ``X-Request-ID`` or a new one), makes it
    the request's ``X-Request-ID`` header for everything downstream, echoes it on the
    response, binds it for log lines and logs the request when it is answered.

    When tracing is on it also starts the request's server span (continuing the caller's
    W3C ``traceparent`` if it sent one) and binds its ``traceparent`` with the correlation
    id, so every RPC call the request makes continues the trace; the access-log line is
    written inside the span, so it carries the trace id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = operation_routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        headers = [(key, value) for key, value in scope["headers"] if key != _REQUEST_ID_KEY]
        headers.append((_REQUEST_ID_KEY, request_id.encode()))
        scope = {**scope, "headers": headers}
        response: dict[str, Any] = {"status": 500}

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (_REQUEST_ID_KEY, request_id.encode()),
                ]
            await send(message)

        # uvicorn has already replaced the peer by X-Forwarded-For's client when the peer
        # is a trusted proxy (GATEWAY_FORWARDED_ALLOW_IPS).
        client = scope.get("client")
        span = tracing.start_span(
            scope["method"],  # renamed to the route template once routing has found it
            SpanKind.SERVER,
            _header(headers, _TRACEPARENT_KEY),
            {
                tracing.CORRELATION_ID_ATTRIBUTE: request_id,
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "client.address": client[0] if client else "",
            },
        )
        token = context.bind(
            context.CallContext(
                correlation_id=request_id,
                client_ip=client[0] if client else None,
                traceparent=tracing.traceparent(span),
            )
        )
        span_token = tracing.activate(span)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                response["status"],
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": response["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            if span is not None:
                self._end_span(span, scope, response["status"])
            tracing.deactivate(span_token)
            context.unbind(token)

    def _end_span(self, span: Any, scope: Scope, status: int) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        route = route_label(scope["path"], routing.get("operation_id"), self.routes)
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        failed = RuntimeError(f"HTTP {status}") if status >= 500 else None
        tracing.finish(span, failed)


class BodySizeLimitMiddleware:
    """Refuses, before anything reads them, request bodies over ``max_bytes`` (413) and
    bodies streamed without a ``Content-Length`` (411): connexion validates a body only
    when it knows its length, and would otherwise call it missing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            declared = headers.get(b"content-length")
            if declared is None and b"transfer-encoding" in headers:
                raise HTTPException(411, "Send the body with a Content-Length header.")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise HTTPException(413, f"The request body is larger than {self.max_bytes} bytes.")
        await self.app(scope, receive, send)


class ControlCharactersInPathMiddleware:
    """Refuses paths with a line break in them (``/products/%0A``) with a 400 before
    routing: connexion's router does not match such a path but Flask's does, so the
    handler would run without connexion's operation context and fail with a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\n" in scope["path"] or "\r" in scope["path"]):
            raise HTTPException(400, "The path must not contain line breaks.")
        await self.app(scope, receive, send)


#: Where :class:`RawBodyMiddleware` leaves the bytes, in the scope's ``extensions``.
RAW_BODY_KEY = "bookstore_raw_body"
#: Operations whose handler needs the body as sent: a signature covers those bytes.
RAW_BODY_OPERATIONS = frozenset({"receiveStripeWebhook"})


class RawBodyMiddleware:
    """Keeps a copy of the request body, as received, for the operations that verify a
    signature over it (connexion hands handlers the parsed JSON only). Sits after routing
    and before validation; the copy goes in ``scope["extensions"]``, which the scope
    copies further in share."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        if scope["type"] != "http" or routing.get("operation_id") not in RAW_BODY_OPERATIONS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        extensions = scope.setdefault("extensions", {})
        extensions[RAW_BODY_KEY] = b""

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                extensions[RAW_BODY_KEY] = b"".join(chunks)
            return message

        await self.app(scope, receive_and_keep, send)
