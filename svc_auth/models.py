"""svc_auth's tables, in its own database (``bookstore_auth``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
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
    phone: Mapped[str | None] = mapped_column(String(20))
    #: ``active``, ``suspended`` (by an admin) or ``deleted`` (anonymised on request).
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspension_reason: Mapped[str | None] = mapped_column(String(500))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The TOTP secret, sealed with the service's passphrase (see svc_auth/sealing.py).
    #: Set at enrolment; MFA is on only once ``totp_enabled_at`` is set by a first code.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The last TOTP time step accepted, so a code cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_users_created_at_id", "created_at", "id"),)


class Address(Timestamps, Base):
    __tablename__ = "addresses"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(50))
    recipient: Mapped[str] = mapped_column(String(200))
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    #: ISO 3166-1 alpha-2.
    country: Mapped[str] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(20))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_addresses_user_id", "user_id"),
        # At most one default address per user, enforced by the database.
        Index(
            "uq_addresses_one_default_per_user",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )


class RefreshToken(Base):
    """One refresh token; only its SHA-256 is stored. Tokens issued from one login form
    a family: each refresh uses one up and issues the next, and presenting a used one
    again (a stolen copy) revokes the whole family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccessRevocation(Base):
    """Access tokens that stop working before they expire: one login's (``session_id``,
    the tokens' ``sid``), or every token of the user issued before ``revoked_at`` (no
    ``session_id``: suspension, deletion, a new password, new roles). Gateways poll these
    (``access_revocations``); kept for an access token's lifetime, then purged."""

    __tablename__ = "access_revocations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID]
    session_id: Mapped[uuid.UUID | None]
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OneTimeToken(Base):
    """A single-use secret sent to the user: email verification, password reset, or the
    second step of an MFA login. Only its SHA-256 is stored."""

    __tablename__ = "one_time_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecoveryCode(Base):
    """An MFA recovery code (single use); only its SHA-256 is stored."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Recent failed logins for one key (``account:<email>`` or ``ip:<address>``)."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """Who did what to which account, when, from where (kept for admins to query)."""

    __tablename__ = "audit_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(50))
    #: Who acted (an admin, the user themselves); None for anonymous callers.
    actor_id: Mapped[uuid.UUID | None]
    #: Whose account it concerns, when known.
    subject_id: Mapped[uuid.UUID | None]
    client_ip: Mapped[str | None] = mapped_column(String(45))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (
        Index("ix_audit_events_occurred_at_id", "occurred_at", "id"),
        Index("ix_audit_events_subject", "subject_id", "occurred_at"),
        Index("ix_audit_events_action", "action", "occurred_at"),
    )


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
