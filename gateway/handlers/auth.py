"""Accounts and tokens: svc_auth behind ``/auth``, ``/me`` and ``/admin``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response as StarletteResponse

from gateway.calls import Response, call, empty_response, header, json_response
from gateway.settings import API_BASE_PATH

# Tokens and secrets must never sit in a shared cache (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def register(body: dict[str, Any]) -> Response:
    accepted = await call("auth", "register", body, idempotency_key=header("Idempotency-Key"))
    return json_response(accepted, 202)


async def verify_email(body: dict[str, Any]) -> StarletteResponse:
    await call("auth", "verify_email", body["token"])
    return empty_response(204)


async def resend_verification(body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "resend_verification", body["email"]), 202)


async def login(body: dict[str, Any]) -> Response:
    return json_response(
        await call("auth", "login", body["email"], body["password"]), 200, NO_STORE
    )


async def login_mfa(body: dict[str, Any]) -> Response:
    tokens = await call("auth", "login_mfa", body["mfa_token"], body["code"])
    return json_response(tokens, 200, NO_STORE)


async def refresh_tokens(body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "refresh", body["refresh_token"]), 200, NO_STORE)


async def logout(body: dict[str, Any]) -> StarletteResponse:
    await call("auth", "logout", body["refresh_token"])
    return empty_response(204)


async def request_password_reset(body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "request_password_reset", body["email"]), 202)


async def reset_password(body: dict[str, Any]) -> StarletteResponse:
    await call("auth", "reset_password", body["token"], body["new_password"])
    return empty_response(204)


async def get_jwks() -> Response:
    return json_response(
        await call("auth", "get_jwks"), 200, {"Cache-Control": "public, max-age=300"}
    )


async def get_me(user: str) -> Response:
    return json_response(await call("auth", "get_user", user))


async def update_me(user: str, body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "update_profile", user, body))


async def change_password(user: str, body: dict[str, Any]) -> StarletteResponse:
    await call("auth", "change_password", user, body["current_password"], body["new_password"])
    return empty_response(204)


async def delete_me(user: str, body: dict[str, Any]) -> StarletteResponse:
    await call("auth", "delete_account", user, body["password"])
    return empty_response(204)


async def start_totp_enrolment(user: str) -> Response:
    return json_response(await call("auth", "start_mfa_enrolment", user), 201, NO_STORE)


async def confirm_totp_enrolment(user: str, body: dict[str, Any]) -> Response:
    return json_response(
        await call("auth", "confirm_mfa_enrolment", user, body["code"]), 200, NO_STORE
    )


async def disable_totp(user: str, body: dict[str, Any]) -> StarletteResponse:
    await call("auth", "disable_mfa", user, body["password"])
    return empty_response(204)


async def regenerate_recovery_codes(user: str, body: dict[str, Any]) -> Response:
    codes = await call("auth", "regenerate_recovery_codes", user, body["password"])
    return json_response(codes, 200, NO_STORE)


async def list_addresses(user: str) -> Response:
    return json_response(await call("auth", "list_addresses", user))


async def add_address(user: str, body: dict[str, Any]) -> Response:
    address = await call(
        "auth", "add_address", user, body, idempotency_key=header("Idempotency-Key")
    )
    return json_response(
        address, 201, {"Location": f"{API_BASE_PATH}/me/addresses/{address['id']}"}
    )


async def get_address(user: str, address_id: str) -> Response:
    return json_response(await call("auth", "get_address", user, address_id))


async def update_address(user: str, address_id: str, body: dict[str, Any]) -> Response:
    return json_response(await call("auth", "update_address", user, address_id, body))


async def delete_address(user: str, address_id: str) -> StarletteResponse:
    await call("auth", "delete_address", user, address_id)
    return empty_response(204)
