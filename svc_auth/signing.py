"""Signing keys and access tokens.

Keys live in the service's database so every instance signs with the same key and a
rotation is one transaction; the private half is encrypted at rest with a passphrase
from the environment (``AUTH_KEY_PASSPHRASE``), never stored in clear.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from common import tokens
from common.db import utcnow
from common.errors import Conflict
from svc_auth import domain
from svc_auth.models import RefreshToken, SigningKey
from svc_auth.sealing import Sealer
from svc_auth.settings import Settings

RSA_KEY_BITS = 2048
# Serialises key creation across instances of the service (any constant will do).
_KEY_CREATION_LOCK = 0x5A17_0001


class SealedKeysUnreadable(Exception):
    """The signing keys in auth's database were sealed with another passphrase than the
    configured ``AUTH_KEY_PASSPHRASE``; the message says how to recover."""

    def __init__(self, kids: list[str]) -> None:
        self.kids = kids
        super().__init__(unreadable_keys_advice(kids))


def unreadable_keys_advice(kids: list[str]) -> str:
    """Why the service cannot sign, and the two ways out (docs/decisions/0091)."""
    return (
        f"AUTH_KEY_PASSPHRASE does not open the token signing key(s) {', '.join(kids)} in "
        "auth's database: they were sealed with another passphrase (a new or lost "
        ".env.local, or a changed secret). Either set AUTH_KEY_PASSPHRASE back to the "
        "passphrase they were sealed with, or replace the keys with "
        "`bookstore reset-signing-keys` (every signed-in session then ends, and "
        "two-factor secrets sealed with the old passphrase must be enrolled again)."
    )


def unreadable_key_ids(session: Session, passphrase: bytes) -> list[str]:
    """The active signing keys that ``passphrase`` cannot decrypt (oldest first)."""
    keys = session.scalars(
        select(SigningKey).where(SigningKey.retired_at.is_(None)).order_by(SigningKey.created_at)
    ).all()
    return [key.kid for key in keys if not _opens(key, passphrase)]


def _opens(key: SigningKey, passphrase: bytes) -> bool:
    try:
        serialization.load_pem_private_key(key.private_key_pem.encode(), password=passphrase)
    except ValueError:  # cryptography's "Incorrect password, could not decrypt key"
        return False
    return True


def replace_signing_keys(session: Session, passphrase: bytes) -> tuple[SigningKey, int]:
    """Retires every active key and makes a new one sealed with ``passphrase``, then
    revokes every refresh token: the recovery when the old passphrase is lost. Returns
    the new key and how many refresh tokens (sessions) were revoked."""
    session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _KEY_CREATION_LOCK})
    now = utcnow()
    session.execute(
        update(SigningKey).where(SigningKey.retired_at.is_(None)).values(retired_at=now)
    )
    ended = session.execute(
        update(RefreshToken).where(RefreshToken.revoked_at.is_(None)).values(revoked_at=now)
    ).rowcount
    key = new_signing_key(passphrase)
    session.add(key)
    session.flush()
    return key, ended


def new_signing_key(passphrase: bytes) -> SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    kid = uuid.uuid4().hex
    public_jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    public_jwk.update({"kid": kid, "use": "sig", "alg": tokens.ALGORITHM})
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    ).decode()
    return SigningKey(
        kid=kid, private_key_pem=private_pem, public_jwk=public_jwk, created_at=utcnow()
    )


def current_signing_key(session: Session, passphrase: bytes) -> SigningKey:
    """The newest active key; the first call on an empty database creates one."""
    key = _newest_active_key(session)
    if key is not None:
        return key
    session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _KEY_CREATION_LOCK})
    key = _newest_active_key(session)  # another instance may have made it meanwhile
    if key is None:
        key = new_signing_key(passphrase)
        session.add(key)
        session.flush()
    return key


def _newest_active_key(session: Session) -> SigningKey | None:
    return session.scalars(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    ).first()


def rotate_signing_key(session: Session, passphrase: bytes) -> SigningKey:
    """Makes a new current key. The JWKS then lists it and the previous key (tokens the
    previous key signed stay valid until they expire); keys older than that are retired.

    Refused while the current key is younger than an access token's lifetime: retiring
    the previous key then could cut short tokens it signed.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _KEY_CREATION_LOCK})
    active = session.scalars(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
    ).all()
    now = utcnow()
    ttl = Settings.current().access_token_lifetime
    if not domain.may_rotate(active[0].created_at if active else None, now, ttl):
        raise Conflict(
            "The current signing key is younger than an access token's lifetime; "
            "rotate again later.",
            {"current_kid": active[0].kid},
        )
    for older in active[1:]:
        older.retired_at = now
    key = new_signing_key(passphrase)
    session.add(key)
    session.flush()
    return key


def key_age(session: Session) -> timedelta | None:
    """How old the current signing key is (None when there is none yet)."""
    key = _newest_active_key(session)
    return None if key is None else utcnow() - key.created_at


def public_key_set(session: Session) -> dict[str, Any]:
    """The JWKS: public halves of every key still accepted for verification."""
    keys = session.scalars(
        select(SigningKey).where(SigningKey.retired_at.is_(None)).order_by(SigningKey.created_at)
    ).all()
    return {"keys": [key.public_jwk for key in keys]}


class TokenSigner:
    """Signs access tokens; keeps decrypted private keys in memory by key id."""

    def __init__(self, passphrase: bytes) -> None:
        self._passphrase = passphrase
        self._private_keys: dict[str, Any] = {}

    def check(self, session: Session) -> None:
        """Raises unless the current key exists and decrypts with our passphrase (a
        changed ``AUTH_KEY_PASSPHRASE`` shows up in readiness, not at the first login)."""
        self._private_key(current_signing_key(session, self._passphrase))

    def rotate(self, session: Session) -> str:
        """Rotates the signing key (see :func:`rotate_signing_key`); returns the new kid."""
        return rotate_signing_key(session, self._passphrase).kid

    def key_set(self, session: Session) -> dict[str, Any]:
        """The JWKS, after making sure there is a key to publish."""
        current_signing_key(session, self._passphrase)
        return public_key_set(session)

    def _private_key(self, key: SigningKey) -> Any:
        if key.kid not in self._private_keys:
            try:
                self._private_keys[key.kid] = serialization.load_pem_private_key(
                    key.private_key_pem.encode(), password=self._passphrase
                )
            except ValueError:
                raise SealedKeysUnreadable([key.kid]) from None
        return self._private_keys[key.kid]

    def access_token(
        self,
        session: Session,
        *,
        subject: str,
        roles: list[str],
        scopes: list[str],
        session_id: str | None = None,
    ) -> dict[str, Any]:
        key = current_signing_key(session, self._passphrase)
        issued_at = utcnow()
        ttl = Settings.current().access_token_lifetime
        claims = {
            "iss": tokens.issuer(),
            "aud": tokens.audience(),
            "sub": subject,
            # Milliseconds (RFC 7519 allows a fractional NumericDate): a revocation of
            # all the user's tokens (gateway/revocations.py) compares against it.
            "iat": round(issued_at.timestamp(), 3),
            "nbf": issued_at,
            "exp": issued_at + ttl,
            "jti": uuid.uuid4().hex,
            "roles": roles,
            "scope": " ".join(scopes),
        }
        if session_id is not None:
            claims["sid"] = session_id  # the refresh token family this login started
        token = jwt.encode(
            claims, self._private_key(key), algorithm=tokens.ALGORITHM, headers={"kid": key.kid}
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl.total_seconds()),
            "scope": claims["scope"],
        }


class TokenSigning(DependencyProvider):
    """Gives the service its :class:`TokenSigner`, keyed by ``AUTH_KEY_PASSPHRASE`` from the
    service config; refuses to start without one."""

    def setup(self) -> None:
        self.signer = TokenSigner(configured_passphrase())

    def get_dependency(self, worker_ctx: WorkerContext) -> TokenSigner:
        return self.signer


class Sealing(DependencyProvider):
    """Gives the service its :class:`~svc_auth.sealing.Sealer` (same passphrase)."""

    def setup(self) -> None:
        self.sealer = Sealer(configured_passphrase())

    def get_dependency(self, worker_ctx: WorkerContext) -> Sealer:
        return self.sealer


def configured_passphrase() -> bytes:
    """``AUTH_KEY_PASSPHRASE``; the settings refuse to start without one."""
    return Settings.current().key_passphrase.get_secret_value().encode()
