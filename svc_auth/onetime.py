"""Opaque secrets handed to users (refresh tokens, emailed links, recovery codes).

Only a SHA-256 digest is stored: the secrets are long and random (256 bits), so a fast
hash is enough to make a stolen table useless, and lookups stay one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.db import utcnow
from svc_auth.models import OneTimeToken

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a password
MFA_LOGIN = "mfa_login"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(session: Session, user_id: uuid.UUID, purpose: str, ttl: timedelta) -> str:
    """A new single-use token for ``purpose``; returns the secret (never stored)."""
    secret = new_secret()
    session.add(
        OneTimeToken(
            token_hash=digest(secret),
            user_id=user_id,
            purpose=purpose,
            expires_at=utcnow() + ttl,
        )
    )
    session.flush()
    return secret


def find(session: Session, secret: str, purpose: str) -> OneTimeToken | None:
    """The unused, unexpired token with this secret, locked for update; else None."""
    return session.scalars(
        select(OneTimeToken)
        .where(
            OneTimeToken.token_hash == digest(secret),
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > utcnow(),
        )
        .with_for_update()
    ).first()


def use_up_all(session: Session, user_id: uuid.UUID, purpose: str) -> None:
    """Marks every outstanding ``purpose`` token of the user used (one reset link works
    once, and using it voids the others)."""
    session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
