"""The payment service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.config import ENVIRONMENT_ENV, ServiceSettings


class Settings(ServiceSettings):
    service = "payment"

    provider: Literal["mock", "stripe"] = Field(
        "mock",
        validation_alias="PAYMENT_PROVIDER",
        description=(
            "`mock` (built in: Stripe's test cards and payment methods, offline) or `stripe`"
        ),
    )
    stripe_api_key: SecretStr = Field(
        SecretStr(""), validation_alias="STRIPE_API_KEY", description="required with `stripe`"
    )
    stripe_webhook_secret: SecretStr = Field(
        SecretStr(""),
        validation_alias="STRIPE_WEBHOOK_SECRET",
        description="required with `stripe`",
    )
    stripe_api_base: str = Field(
        "", validation_alias="STRIPE_API_BASE", description="empty: Stripe's own address"
    )
    stripe_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias="STRIPE_TIMEOUT_SECONDS", description="per Stripe request"
    )
    breaker_failures: int = Field(
        5, ge=1, description="consecutive provider failures that open the circuit"
    )
    breaker_reset_seconds: float = Field(
        30.0, gt=0, description="seconds the circuit stays open before a trial call"
    )

    @model_validator(mode="after")
    def _safe_provider(self) -> Self:
        if self.provider == "mock" and self.is_production:
            # A deployment left on a default would mark orders PAID without charging
            # anyone: in production the mock must never be what runs.
            raise ValueError(
                f"PAYMENT_PROVIDER=mock takes no real payments and is refused when "
                f"{ENVIRONMENT_ENV}=production: set PAYMENT_PROVIDER=stripe (with "
                f"STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET), or run outside production"
            )
        if self.provider == "stripe":
            for variable, value in (
                ("STRIPE_API_KEY", self.stripe_api_key),
                ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
            ):
                if not value.get_secret_value():
                    raise ValueError(f"{variable} is not set: PAYMENT_PROVIDER=stripe needs it")
        return self
