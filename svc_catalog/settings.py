"""The catalog service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from pydantic import Field

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service = "catalog"

    call_timeout: float = Field(
        5.0, gt=0, description="seconds per call to the order service (is the reviewer a buyer?)"
    )
