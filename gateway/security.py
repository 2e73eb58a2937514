"""Access tokens are verified here, locally, against svc_auth's cached public keys.

Connexion calls the bearer function on its event loop for every protected request, so
it must not do I/O: :class:`KeyCache` keeps the JWKS in memory and refreshes it from a
background thread (on a timer, and soon after a token names a key id it has not seen,
which is how a key rotation reaches the gateway); revoked tokens are known the same way
(gateway/revocations.py). Only RS256 is accepted, which is what
defeats ``alg: none`` and HS256-signed-with-the-public-key forgeries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from connexion.exceptions import OAuthProblem, OAuthScopeProblem
from connexion.security import NO_VALUE, BearerSecurityHandler

from common import tokens
from gateway.audit import TokenRefusalReporter
from gateway.revocations import RevocationList
from gateway.rpc import ServiceUnavailable

log = logging.getLogger(__name__)

# A flood of tokens with made-up key ids must not become a flood of JWKS fetches.
MIN_SECONDS_BETWEEN_FORCED_REFRESHES = 10.0
RETRY_SECONDS_UNTIL_FIRST_KEYS = 2.0
LEEWAY_SECONDS = 30


class KeyCache:
    """svc_auth's token-signing public keys by key id, refreshed in the background."""

    def __init__(self, fetch_jwks: Callable[[], dict[str, Any]], refresh_interval: float) -> None:
        self._fetch_jwks = fetch_jwks
        self._refresh_interval = refresh_interval
        self._keys: dict[str, Any] = {}
        self._loaded = threading.Event()
        self._refresh_requested = threading.Event()
        self._stopping = threading.Event()
        self._last_forced_refresh = 0.0
        self._thread = threading.Thread(target=self._run, name="jwks-refresh", daemon=True)

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._refresh_requested.set()

    def get(self, key_id: str) -> Any | None:
        key = self._keys.get(key_id)
        if key is None and self.loaded:
            self._request_refresh()
        return key

    def refresh(self) -> None:
        key_set = jwt.PyJWKSet.from_dict(self._fetch_jwks())
        # Replaced whole, so readers never see a half-built dict.
        self._keys = {key.key_id: key.key for key in key_set.keys if key.key_id}
        self._loaded.set()

    def _request_refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_forced_refresh >= MIN_SECONDS_BETWEEN_FORCED_REFRESHES:
            self._last_forced_refresh = now
            self._refresh_requested.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.refresh()
                wait = self._refresh_interval
            except Exception as error:  # noqa: BLE001 - keep the last keys, try again
                log.warning("could not refresh the token signing keys: %r", error)
                wait = self._refresh_interval if self.loaded else RETRY_SECONDS_UNTIL_FIRST_KEYS
            self._refresh_requested.wait(wait)
            self._refresh_requested.clear()


_key_cache: KeyCache | None = None
_refusals: TokenRefusalReporter | None = None
_revocations: RevocationList | None = None


def use_key_cache(
    key_cache: KeyCache,
    refusals: TokenRefusalReporter | None = None,
    revocations: RevocationList | None = None,
) -> None:
    # connexion finds the bearer function by path, not instance
    global _key_cache, _refusals, _revocations
    _key_cache = key_cache
    _refusals = refusals
    _revocations = revocations


class InvalidToken(Exception):
    """Why a token was refused (an audit reason), and whom it claimed to be."""

    def __init__(self, reason: str, claimed_subject: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed_subject = claimed_subject


def check_access_token(token: str) -> dict[str, Any]:
    """The verified claims of ``token``, or :class:`InvalidToken`."""
    if _key_cache is None or not _key_cache.loaded:
        raise ServiceUnavailable("auth", "token signing keys are not loaded yet")
    if _revocations is not None and not _revocations.loaded:
        raise ServiceUnavailable("auth", "token revocations are not loaded yet")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid") from None
    claimed = _claimed_subject(token)
    if header.get("alg") != tokens.ALGORITHM or not isinstance(header.get("kid"), str):
        raise InvalidToken("invalid", claimed)
    key = _key_cache.get(header["kid"])
    if key is None:
        raise InvalidToken("unknown_key", claimed)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[tokens.ALGORITHM],
            audience=tokens.audience(),
            issuer=tokens.issuer(),
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("expired", claimed) from None
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid", claimed) from None
    if _revocations is not None and _revocations.is_revoked(claims):
        raise InvalidToken("revoked", claimed)
    return claims


def _claimed_subject(token: str) -> str | None:
    """The ``sub`` a token claims, unverified: for the audit trail only."""
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.InvalidTokenError:
        return None
    return subject if isinstance(subject, str) else None


def token_subject(token: str) -> str | None:
    """The verified subject of ``token``, or None (no side effects; for rate limiting)."""
    try:
        return str(check_access_token(token)["sub"])
    except (InvalidToken, ServiceUnavailable):
        return None


def report_refusal(reason: str, claimed_subject: str | None = None) -> None:
    if _refusals is not None:
        _refusals.report(reason, claimed_subject)


def verify_access_token(token: str) -> dict[str, Any] | None:
    """Connexion's ``x-bearerInfoFunc``: the token's identity and scopes, or None (401)."""
    try:
        claims = check_access_token(token)
    except InvalidToken as refusal:
        report_refusal(refusal.reason, refusal.claimed_subject)
        if refusal.reason == "expired":
            raise OAuthProblem(detail="The access token has expired; log in again.") from None
        if refusal.reason == "revoked":
            raise OAuthProblem(
                detail="The access token was revoked (signed out, suspended, or a new "
                "password or roles); refresh it or log in again."
            ) from None
        return None
    scope = claims.get("scope", "")
    return {
        "sub": str(claims["sub"]),
        "scope": scope.split() if isinstance(scope, str) else [],
        "roles": claims.get("roles", []),
    }


class ScopedBearerSecurityHandler(BearerSecurityHandler):
    """Bearer tokens whose ``scope`` must hold every scope the operation requires.

    OpenAPI 3.1 lets any security requirement list scopes (or roles); connexion only
    enforces them for OAuth2 schemes, so this handler does it for our bearer scheme.
    """

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: list[str]) -> Any:
        verify = super().get_fn(security_scheme, required_scopes)
        if verify is None:
            return None
        required = set(required_scopes or [])

        async def verify_with_scopes(request: Any) -> Any:
            token_info = verify(request)
            if token_info is NO_VALUE:
                return NO_VALUE
            token_info = await token_info
            if token_info is NO_VALUE:
                return NO_VALUE
            granted = set(token_info.get("scope", []))
            if not required <= granted:
                report_refusal("insufficient_scope", token_info.get("sub"))
                raise OAuthScopeProblem(
                    token_scopes=sorted(granted), required_scopes=sorted(required)
                )
            return token_info

        return verify_with_scopes


SECURITY_MAP = {"bearer": ScopedBearerSecurityHandler}
