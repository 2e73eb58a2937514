"""svc_auth's tables, in its own database (``bookstore_auth``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import Timestamps, new_id
from common.events import Outbox, OutboxMessage
from common.idempotency import IdempotencyKey


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Lower-cased: addresses are compared case-insensitively, so one per person.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    terms_accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """An RSA key pair that signs access tokens. The private half is stored encrypted
    with ``AUTH_KEY_PASSPHRASE``; the public half is published in the JWKS."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_key_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthOutboxMessage(OutboxMessage, Base):
    pass


class AuthIdempotencyKey(IdempotencyKey, Base):
    pass


outbox = Outbox(AuthOutboxMessage, source="auth")
