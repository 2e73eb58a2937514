"""Roles and the scopes they grant. Tokens carry scopes; the OpenAPI file says which
scope each operation needs, and the gateway enforces it."""

from __future__ import annotations

from collections.abc import Iterable

CUSTOMER = "customer"
ADMIN = "admin"

ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    CUSTOMER: ("read:orders", "write:orders"),
    ADMIN: ("admin:catalog", "admin:orders", "admin:users"),
}


def scopes_for(roles: Iterable[str]) -> list[str]:
    return sorted({scope for role in roles for scope in ROLE_SCOPES.get(role, ())})
