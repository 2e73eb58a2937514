"""Payment providers, chosen by ``PAYMENT_PROVIDER`` (see :func:`provider_named`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from svc_payment.providers.base import PaymentProvider
from svc_payment.providers.mock import MockProvider
from svc_payment.providers.stripe_provider import StripeProvider

PROVIDER_NAMES = (MockProvider.name, StripeProvider.name)


def provider_named(name: str, config: Mapping[str, Any] | None = None) -> PaymentProvider:
    """The configured provider; an unknown name or a missing Stripe setting stops the
    service at start-up rather than at the first payment."""
    config = config or {}
    if name == MockProvider.name:
        return MockProvider()
    if name == StripeProvider.name:
        return StripeProvider(
            api_key=str(config.get("STRIPE_API_KEY") or ""),
            webhook_secret=str(config.get("STRIPE_WEBHOOK_SECRET") or ""),
            api_base=str(config.get("STRIPE_API_BASE") or "") or None,
            timeout_seconds=float(config.get("STRIPE_TIMEOUT_SECONDS") or 10),
        )
    raise ValueError(f"PAYMENT_PROVIDER={name!r} is not one of {', '.join(PROVIDER_NAMES)}")
