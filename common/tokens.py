"""The access-token contract between svc_auth (which signs) and the gateway (which verifies)."""

from __future__ import annotations

from common.config import TokenSettings

ALGORITHM = "RS256"


def issuer() -> str:
    return TokenSettings.current().token_issuer


def audience() -> str:
    return TokenSettings.current().token_audience
