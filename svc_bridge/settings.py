"""The bridge service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from pydantic import Field

from common.config import AwsSettings, ServiceSettings


class Settings(ServiceSettings, AwsSettings):
    service = "bridge"

    event_bus: str = Field("bookstore", description="the EventBridge bus events go to")
    max_attempts: int = Field(
        5, ge=1, description="tries per entry EventBridge throttles or fails, then parked"
    )
    retry_base_seconds: float = Field(
        0.2, gt=0, description="the first retry's wait, doubling (docs/decisions/0041)"
    )
    batch_wait_seconds: float = Field(
        0.2, ge=0, description="a partly full batch waits this long for more events"
    )
