"""Idempotency keys: an unsafe request replayed with the same key does its work once.

The key is claimed with an INSERT in the same transaction as the work it guards. A
concurrent request with the same key blocks on the primary key until the first commits,
then finds the stored response; if the first rolled back (the work failed), the key is
free again and the retry does the work. So: exactly one success per key, no stored
failures, and no locks held outside the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, delete, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.db import utcnow
from common.errors import IdempotencyKeyReused

#: How long a key is remembered; a client retrying later than this makes a new request.
KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKey:
    """Columns of a service's ``idempotency_keys`` table; mix into its declarative base."""

    __tablename__ = "idempotency_keys"

    # Who asked and for what (e.g. "create_product:<user id>"): the same key from two
    # callers, or for two operations, are different requests.
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[Any] = mapped_column(JSONB, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


def request_fingerprint(request: Any) -> str:
    return hashlib.sha256(
        json.dumps(request, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def run_once(
    session: Session,
    model: type[IdempotencyKey],
    *,
    scope: str,
    key: str | None,
    request: Any,
    operation: Callable[[], Any],
) -> Any:
    """Runs ``operation`` in ``session``'s transaction unless ``key`` was used before.

    A replay with the same request returns the first response; the same key with a
    different request raises :class:`IdempotencyKeyReused`. With no key, just runs it.
    The caller commits.
    """
    if key is None:
        return operation()
    fingerprint = request_fingerprint(request)
    claimed = session.execute(
        insert(model)
        .values(scope=scope, key=key, request_hash=fingerprint)
        .on_conflict_do_nothing()
        .returning(model.key)
    ).first()
    if claimed is None:
        stored = session.execute(
            select(model.request_hash, model.response).where(model.scope == scope, model.key == key)
        ).one()
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request.",
                {"idempotency_key": key},
            )
        return stored.response
    response = operation()
    session.execute(
        update(model).where(model.scope == scope, model.key == key).values(response=response)
    )
    return response


def purge_expired(session: Session, model: type[IdempotencyKey]) -> int:
    """Forgets keys older than :data:`KEY_LIFETIME`; returns how many."""
    result = session.execute(delete(model).where(model.created_at < utcnow() - KEY_LIFETIME))
    session.commit()
    return result.rowcount
