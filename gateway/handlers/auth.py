"""Accounts and tokens: svc_auth behind ``/auth`` and ``/me``."""

from __future__ import annotations

from typing import Any

from gateway.calls import Response, call, header, json_response


def register(body: dict[str, Any]) -> Response:
    user = call("auth", "register", body, idempotency_key=header("Idempotency-Key"))
    return json_response(user, 201)


def login(body: dict[str, Any]) -> Response:
    token = call("auth", "login", body["email"], body["password"])
    # Tokens must never sit in a shared cache (RFC 6749 §5.1).
    return json_response(token, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})


def get_jwks() -> Response:
    return json_response(call("auth", "get_jwks"), 200, {"Cache-Control": "public, max-age=300"})


def get_me(user: str) -> Response:
    return json_response(call("auth", "get_user", user))
