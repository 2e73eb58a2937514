"""ASGI middleware: a correlation id and one access-log line per request; a cap on body size."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import context

log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
# A caller's id is kept if it is a sane token; anything else (too long, odd characters
# that could forge log lines) is replaced by a fresh UUID.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
    response, binds it for log lines and logs the request when it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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

        token = context.bind(context.CallContext(correlation_id=request_id))
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
            context.unbind(token)


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
