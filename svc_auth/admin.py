"""What administrators do to accounts: find them, change roles, suspend, reinstate."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, InvalidInput
from common.pagination import Filter, filtered, newest_first
from svc_auth import audit, roles, sessions
from svc_auth.accounts import find_user, user_to_dict
from svc_auth.emails import lookup_form
from svc_auth.models import User, outbox

log = logging.getLogger(__name__)

STATUSES = ("active", "suspended", "deleted")


def admin_view(user: User) -> dict[str, Any]:
    return {
        **user_to_dict(user),
        "status": user.status,
        "suspended_at": isoformat(user.suspended_at),
        "suspension_reason": user.suspension_reason,
        "updated_at": isoformat(user.updated_at),
    }


def get_user(session: Session, user_id: str) -> dict[str, Any]:
    user = session.get(User, parse_id(user_id, "user_id"))
    if user is None:
        return admin_view(find_user(session, user_id))  # raises NotFound
    return admin_view(user)


USER_FILTERS = {
    "email": Filter(lambda email: User.email == email, normalize=lookup_form),
    "role": Filter(lambda role: User.roles.any(role), allowed=tuple(roles.ROLE_SCOPES)),
    "status": Filter(lambda status: User.status == status, allowed=STATUSES),
}


def list_users(
    session: Session,
    *,
    email: str | None = None,
    role: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Newest accounts first; ``email`` matches exactly (after normalisation)."""
    query, filters = filtered(
        select(User), {"email": email, "role": role, "status": status}, USER_FILTERS
    )
    return newest_first(
        session,
        query,
        User.created_at,
        User.id,
        filters=filters,
        cursor=cursor,
        limit=limit,
        to_dict=admin_view,
    )


def set_roles(
    session: Session, actor_id: str, user_id: str, new_roles: list[str]
) -> dict[str, Any]:
    unknown = sorted(set(new_roles) - set(roles.ROLE_SCOPES))
    if unknown or not new_roles:
        raise InvalidInput(f"roles: unknown or empty ({', '.join(unknown)}).", {"field": "roles"})
    user = find_user(session, user_id, for_update=True)
    wanted = sorted(set(new_roles))
    before = sorted(user.roles)
    if wanted == before:
        return admin_view(user)
    if roles.ADMIN in before and roles.ADMIN not in wanted:
        _keep_an_admin(session, user)
    user.roles = wanted
    session.flush()
    session.refresh(user)
    audit.record(
        session, "role.changed", subject_id=user.id, details={"from": before, "to": wanted}
    )
    # Tokens carry scopes: the old ones must not outlive the old roles (a refresh, or a
    # new login, gives tokens with the new ones).
    sessions.revoke_access(session, user.id)
    outbox.add(session, "user.roles_changed", {"user_id": str(user.id), "roles": wanted})
    log.info("roles changed", extra={"subject_id": str(user.id), "roles": wanted})
    return admin_view(user)


def _keep_an_admin(session: Session, leaving: User) -> None:
    # Serialise concurrent demotions/suspensions of admins so two cannot each leave one.
    session.execute(select(func.pg_advisory_xact_lock(0x5A17_0002)))
    others = session.scalar(
        select(func.count()).where(
            User.roles.any(roles.ADMIN), User.status == "active", User.id != leaving.id
        )
    )
    if not others:
        raise Conflict("This is the last active administrator; appoint another first.")


def suspend(session: Session, actor_id: str, user_id: str, reason: str) -> dict[str, Any]:
    user = find_user(session, user_id, for_update=True)
    if str(user.id) == actor_id:
        raise Conflict("Administrators cannot suspend themselves.")
    if user.status == "suspended":
        return admin_view(user)
    if roles.ADMIN in user.roles:
        _keep_an_admin(session, user)
    user.status = "suspended"
    user.suspended_at = utcnow()
    user.suspension_reason = reason
    revoked = sessions.revoke_all(session, user.id)
    session.flush()
    session.refresh(user)
    audit.record(
        session,
        "user.suspended",
        subject_id=user.id,
        details={"reason": reason, "revoked": revoked},
    )
    outbox.add(session, "user.suspended", {"user_id": str(user.id), "reason": reason})
    return admin_view(user)


def reinstate(session: Session, actor_id: str, user_id: str) -> dict[str, Any]:
    user = find_user(session, user_id, for_update=True)
    if user.status != "suspended":
        return admin_view(user)
    user.status = "active"
    user.suspended_at = None
    user.suspension_reason = None
    session.flush()
    session.refresh(user)
    audit.record(session, "user.reinstated", subject_id=user.id)
    outbox.add(session, "user.reinstated", {"user_id": str(user.id)})
    return admin_view(user)
