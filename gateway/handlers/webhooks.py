"""Webhooks from payment providers: passed to svc_payment as received.

The signature covers the raw bytes, so the handler forwards the body exactly as it came
(not connexion's parsed copy) with the signature header; svc_payment, which holds the
endpoint secret, verifies and applies it. The gateway holds no provider secret.
"""

from __future__ import annotations

from typing import Any

from gateway.calls import Response, call, header, json_response, raw_body


async def receive_stripe_webhook(body: dict[str, Any]) -> Response:
    payload = raw_body().decode("utf-8")
    result = await call("payment", "handle_webhook", payload, header("Stripe-Signature"))
    return json_response({"received": True, "outcome": result["outcome"]})
