"""Forgetting what is no longer needed: spent or expired secrets, stale throttles."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from svc_auth import sessions, throttle
from svc_auth.models import AccessRevocation, OneTimeToken, RefreshToken

#: Spent and revoked refresh tokens are kept a while: reuse detection needs them.
KEEP_DEAD_REFRESH_TOKENS = timedelta(days=1)


def purge(session: Session, now: datetime) -> dict[str, int]:
    one_time = session.execute(delete(OneTimeToken).where(OneTimeToken.expires_at < now))
    refresh = session.execute(
        delete(RefreshToken).where(RefreshToken.expires_at < now - KEEP_DEAD_REFRESH_TOKENS)
    )
    revocations = session.execute(
        delete(AccessRevocation).where(
            AccessRevocation.revoked_at < now - sessions.revocations_kept()
        )
    )
    return {
        "access_revocations": revocations.rowcount,
        "one_time_tokens": one_time.rowcount,
        "refresh_tokens": refresh.rowcount,
        "login_throttles": throttle.purge_stale(session, now),
    }
