"""Accounts and tokens: svc_auth behind ``/auth``, ``/me`` and ``/admin``."""

from __future__ import annotations

from typing import Any

from flask import Response as FlaskResponse

from gateway.calls import Response, call, empty_response, header, json_response
from gateway.settings import API_BASE_PATH

# Tokens and secrets must never sit in a shared cache (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def register(body: dict[str, Any]) -> Response:
    accepted = call("auth", "register", body, idempotency_key=header("Idempotency-Key"))
    return json_response(accepted, 202)


def verify_email(body: dict[str, Any]) -> FlaskResponse:
    call("auth", "verify_email", body["token"])
    return empty_response(204)


def resend_verification(body: dict[str, Any]) -> Response:
    return json_response(call("auth", "resend_verification", body["email"]), 202)


def login(body: dict[str, Any]) -> Response:
    return json_response(call("auth", "login", body["email"], body["password"]), 200, NO_STORE)


def login_mfa(body: dict[str, Any]) -> Response:
    tokens = call("auth", "login_mfa", body["mfa_token"], body["code"])
    return json_response(tokens, 200, NO_STORE)


def refresh_tokens(body: dict[str, Any]) -> Response:
    return json_response(call("auth", "refresh", body["refresh_token"]), 200, NO_STORE)


def logout(body: dict[str, Any]) -> FlaskResponse:
    call("auth", "logout", body["refresh_token"])
    return empty_response(204)


def request_password_reset(body: dict[str, Any]) -> Response:
    return json_response(call("auth", "request_password_reset", body["email"]), 202)


def reset_password(body: dict[str, Any]) -> FlaskResponse:
    call("auth", "reset_password", body["token"], body["new_password"])
    return empty_response(204)


def get_jwks() -> Response:
    return json_response(call("auth", "get_jwks"), 200, {"Cache-Control": "public, max-age=300"})


def get_me(user: str) -> Response:
    return json_response(call("auth", "get_user", user))


def update_me(user: str, body: dict[str, Any]) -> Response:
    return json_response(call("auth", "update_profile", user, body))


def change_password(user: str, body: dict[str, Any]) -> FlaskResponse:
    call("auth", "change_password", user, body["current_password"], body["new_password"])
    return empty_response(204)


def delete_me(user: str, body: dict[str, Any]) -> FlaskResponse:
    call("auth", "delete_account", user, body["password"])
    return empty_response(204)


def start_totp_enrolment(user: str) -> Response:
    return json_response(call("auth", "start_mfa_enrolment", user), 201, NO_STORE)


def confirm_totp_enrolment(user: str, body: dict[str, Any]) -> Response:
    return json_response(call("auth", "confirm_mfa_enrolment", user, body["code"]), 200, NO_STORE)


def disable_totp(user: str, body: dict[str, Any]) -> FlaskResponse:
    call("auth", "disable_mfa", user, body["password"])
    return empty_response(204)


def regenerate_recovery_codes(user: str, body: dict[str, Any]) -> Response:
    codes = call("auth", "regenerate_recovery_codes", user, body["password"])
    return json_response(codes, 200, NO_STORE)


def list_addresses(user: str) -> Response:
    return json_response(call("auth", "list_addresses", user))


def add_address(user: str, body: dict[str, Any]) -> Response:
    address = call("auth", "add_address", user, body, idempotency_key=header("Idempotency-Key"))
    return json_response(
        address, 201, {"Location": f"{API_BASE_PATH}/me/addresses/{address['id']}"}
    )


def get_address(user: str, address_id: str) -> Response:
    return json_response(call("auth", "get_address", user, address_id))


def update_address(user: str, address_id: str, body: dict[str, Any]) -> Response:
    return json_response(call("auth", "update_address", user, address_id, body))


def delete_address(user: str, address_id: str) -> FlaskResponse:
    call("auth", "delete_address", user, address_id)
    return empty_response(204)
