"""The order service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from pydantic import Field

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service = "order"

    call_timeout: float = Field(5.0, gt=0, description="seconds per call to another service")
    checkout_window_seconds: int = Field(
        60, gt=0, description="an unfinished checkout is settled after this"
    )
    action_window_seconds: int = Field(
        900, gt=0, description="time to finish 3-D Secure before the order is given up"
    )
    cart_ttl_seconds: int = Field(
        604800, gt=0, description="a cart untouched this long (7 days) is emptied"
    )
    shipping_fee: int = Field(399, ge=0, description="minor units, below the free-shipping total")
    free_shipping_from: int = Field(3500, ge=0, description="minor units of subtotal")
