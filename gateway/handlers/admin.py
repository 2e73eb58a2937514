"""Account administration and the audit trail (``admin:users``): svc_auth behind ``/admin``.

The acting administrator travels in the call context (``user_id``), so svc_auth can
audit who did it and refuse an admin suspending themselves.
"""

from __future__ import annotations

from typing import Any

from gateway.calls import Response, call, json_response


async def list_users(
    limit: int,
    cursor: str | None = None,
    email: str | None = None,
    role: str | None = None,
    status: str | None = None,
) -> Response:
    return json_response(
        await call(
            "auth",
            "list_users",
            email=email,
            role=role,
            status=status,
            cursor=cursor,
            limit=limit,
        )
    )


async def admin_get_user(user_id: str) -> Response:
    return json_response(await call("auth", "admin_get_user", user_id))


async def set_user_roles(user_id: str, body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "set_roles", user_id, body["roles"]))


async def suspend_user(user_id: str, body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "suspend_user", user_id, body["reason"]))


async def reinstate_user(user_id: str) -> Response:
    return json_response(await call("auth", "reinstate_user", user_id))


async def list_audit_events(
    limit: int,
    cursor: str | None = None,
    user_id: str | None = None,
    action: str | None = None,
) -> Response:
    return json_response(
        await call(
            "auth",
            "list_audit_events",
            subject_id=user_id,
            action=action,
            cursor=cursor,
            limit=limit,
        )
    )
