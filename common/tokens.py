"""The access-token contract between svc_auth (which signs) and the gateway (which verifies)."""

from __future__ import annotations

from common.config import env_str

ALGORITHM = "RS256"


def issuer() -> str:
    return env_str("AUTH_TOKEN_ISSUER", "bookstore-auth")


def audience() -> str:
    return env_str("AUTH_TOKEN_AUDIENCE", "bookstore-api")
