"""Logging in and staying logged in: passwords, the second factor, refresh tokens.

A login (password, then the TOTP or a recovery code when MFA is on) starts a *family*
of refresh tokens. Each refresh spends the presented token and issues the next; a spent
token presented again means a copy was stolen, so the whole family is revoked (OAuth 2.0
Security BCP, refresh token rotation). Logout, a password change or reset, suspension
and deletion revoke families.

Refusals are audited and counted by the throttle, and those writes must survive the
error that follows, so ``_refuse`` commits before raising.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common import context
from common.db import utcnow
from common.errors import (
    BookstoreError,
    Forbidden,
    InvalidInput,
    TooManyAttempts,
    Unauthenticated,
)
from svc_auth import audit, domain, emails, mfa, onetime, passwords, throttle
from svc_auth.models import AccessRevocation, RefreshToken, User
from svc_auth.roles import scopes_for
from svc_auth.sealing import Sealer
from svc_auth.settings import Settings
from svc_auth.signing import TokenSigner

log = logging.getLogger(__name__)

WRONG_CREDENTIALS = "The email or password is wrong."
MFA_CHALLENGE_TTL = timedelta(minutes=5)
ACTIVE = "active"
SUSPENDED = "suspended"
#: The gateway's clock leeway on token times, and a margin (gateway/security.py).
REVOCATION_LEEWAY_SECONDS = 60
REVOCATION_PAGE = 1000


def _refuse(session: Session, error: BookstoreError) -> NoReturn:
    session.commit()  # keep the audit entry and the failure count
    raise error


def login(session: Session, signer: TokenSigner, email: str, password: str) -> dict[str, Any]:
    """Tokens for these credentials, or an MFA challenge when the account has MFA on."""
    email = emails.lookup_form(email)
    now = utcnow()
    keys = _throttle_keys(email)
    throttle.serialize(session, keys[0][0])
    try:
        throttle.check(session, keys, now)
    except TooManyAttempts as error:
        audit.record(session, "login.throttled", details={"email": email})
        _refuse(session, error)
    user = session.scalars(select(User).where(User.email == email)).first()
    if not passwords.verify_password(user.password_hash if user else None, password):
        throttle.record_failure(session, keys, now)
        audit.record(
            session,
            "login.failed",
            subject_id=user.id if user else None,
            details={"email": email, "reason": "wrong_credentials"},
        )
        log.info("login refused", extra={"subject_id": str(user.id) if user else None})
        _refuse(session, Unauthenticated(WRONG_CREDENTIALS))
    if user.status != ACTIVE:
        # Only someone who knows the password learns the account is suspended.
        audit.record(session, "login.refused_suspended", subject_id=user.id)
        _refuse(session, Forbidden("This account is suspended. Contact support."))
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    throttle.clear(session, keys[0][0])
    if user.totp_enabled_at is not None:
        challenge = onetime.issue(session, user.id, onetime.MFA_LOGIN, MFA_CHALLENGE_TTL)
        return {
            "mfa_required": True,
            "mfa_token": challenge,
            "expires_in": int(MFA_CHALLENGE_TTL.total_seconds()),
        }
    audit.record(session, "login.succeeded", subject_id=user.id, details={"mfa": False})
    return issue_tokens(session, signer, user)


def complete_mfa_login(
    session: Session, signer: TokenSigner, sealer: Sealer, mfa_token: str, code: str
) -> dict[str, Any]:
    """Second step of a login: the challenge from :func:`login` and a TOTP or recovery code."""
    challenge = onetime.find(session, mfa_token, onetime.MFA_LOGIN)
    if challenge is None:
        raise Unauthenticated("The sign-in attempt is unknown or has expired; log in again.")
    user = session.get(User, challenge.user_id, with_for_update=True)
    now = utcnow()
    keys = _throttle_keys(user.email)
    try:
        throttle.check(session, keys, now)
    except TooManyAttempts as error:
        audit.record(session, "login.throttled", subject_id=user.id, details={"step": "mfa"})
        _refuse(session, error)
    if user.status != ACTIVE:
        _refuse(session, Forbidden("This account is suspended. Contact support."))
    if not mfa.check_second_factor(session, sealer, user, code):
        throttle.record_failure(session, keys, now)
        audit.record(session, "mfa.failed", subject_id=user.id)
        _refuse(session, Unauthenticated("The code is wrong or was already used."))
    challenge.used_at = now
    throttle.clear(session, keys[0][0])
    audit.record(session, "login.succeeded", subject_id=user.id, details={"mfa": True})
    return issue_tokens(session, signer, user)


def _throttle_keys(email: str) -> list[tuple[str, domain.Policy]]:
    settings = Settings.current()
    keys = [(throttle.account_key(email), domain.account_policy(settings))]
    if address := throttle.address_key(context.current().client_ip):
        keys.append((address, domain.address_policy(settings)))
    return keys


def issue_tokens(
    session: Session, signer: TokenSigner, user: User, family_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """An access token and the next refresh token of ``family_id`` (a new family if None)."""
    family_id = family_id or uuid.uuid4()
    refresh_secret = onetime.new_secret()
    now = utcnow()
    ttl = Settings.current().refresh_token_lifetime
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            family_id=family_id,
            user_id=user.id,
            token_hash=onetime.digest(refresh_secret),
            issued_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    access = signer.access_token(
        session,
        subject=str(user.id),
        roles=list(user.roles),
        scopes=scopes_for(user.roles),
        session_id=str(family_id),
    )
    return {
        **access,
        "refresh_token": refresh_secret,
        "refresh_expires_in": int(ttl.total_seconds()),
    }


def refresh(session: Session, signer: TokenSigner, refresh_secret: str) -> dict[str, Any]:
    """Spends ``refresh_secret`` and issues the next pair of its family."""
    token = session.scalars(
        select(RefreshToken)
        .where(RefreshToken.token_hash == onetime.digest(refresh_secret))
        .with_for_update()
    ).first()
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise Unauthenticated("The refresh token is not valid; log in again.")
    if token.used_at is not None:
        revoked = revoke_family(session, token.family_id, token.user_id)
        audit.record(
            session,
            "refresh.reused",
            subject_id=token.user_id,
            actor_id=token.user_id,
            details={"family_id": str(token.family_id), "revoked_tokens": revoked},
        )
        log.warning(
            "refresh token reused; family revoked", extra={"subject_id": str(token.user_id)}
        )
        _refuse(
            session,
            Unauthenticated(
                "This refresh token was already used, so it may have been stolen: "
                "every session from that login is now signed out. Log in again."
            ),
        )
    user = session.get(User, token.user_id)
    if user is None or user.status != ACTIVE:
        revoke_family(session, token.family_id, token.user_id)
        _refuse(session, Unauthenticated("The refresh token is not valid; log in again."))
    token.used_at = now
    return issue_tokens(session, signer, user, family_id=token.family_id)


def logout(session: Session, refresh_secret: str) -> None:
    """Revokes the family of ``refresh_secret`` (an unknown token is already logged out)."""
    token = session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == onetime.digest(refresh_secret))
    ).first()
    if token is None or token.revoked_at is not None:
        return
    revoke_family(session, token.family_id, token.user_id)
    audit.record(session, "logout", subject_id=token.user_id, actor_id=token.user_id)


def revoke_family(session: Session, family_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """Signs one login out: its refresh tokens, and its access tokens (``sid``)."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    revoke_access(session, user_id, family_id)
    return result.rowcount


def revoke_all(session: Session, user_id: uuid.UUID) -> int:
    """Signs the user out everywhere: refresh tokens and access tokens."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    revoke_access(session, user_id)
    return result.rowcount


def revoke_access(
    session: Session, user_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> None:
    """Access tokens already issued stop working: one login's (``session_id``) or all
    the user's (issued before now). Gateways learn it within a poll interval."""
    session.add(AccessRevocation(user_id=user_id, session_id=session_id, revoked_at=utcnow()))


def revocations_kept() -> timedelta:
    """How long a revocation is served after it: an access token's lifetime and the
    gateway's clock leeway; older ones concern tokens that have expired anyway."""
    return Settings.current().access_token_lifetime + timedelta(seconds=REVOCATION_LEEWAY_SECONDS)


def access_revocations(session: Session, since: float | None = None) -> dict[str, Any]:
    """Revocations made at or after ``since`` (Unix seconds) that may still concern
    unexpired tokens, oldest first, a page at a time (call again from the last one's
    time while ``more``). By time, not by id: a caller re-reads a few seconds back each
    time, which catches a transaction that committed after a later one."""
    if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
        raise InvalidInput("since: must be a time in Unix seconds.", {"field": "since"})
    oldest = utcnow() - revocations_kept()
    if since is not None:
        oldest = max(oldest, datetime.fromtimestamp(since, UTC))
    rows = session.scalars(
        select(AccessRevocation)
        .where(AccessRevocation.revoked_at >= oldest)
        .order_by(AccessRevocation.revoked_at, AccessRevocation.id)
        .limit(REVOCATION_PAGE + 1)
    ).all()
    page = rows[:REVOCATION_PAGE]
    return {
        "items": [
            {
                "user_id": str(row.user_id),
                "session_id": str(row.session_id) if row.session_id else None,
                "revoked_at": row.revoked_at.timestamp(),
            }
            for row in page
        ],
        "more": len(rows) > REVOCATION_PAGE,
        "kept_seconds": int(revocations_kept().total_seconds()),
    }
