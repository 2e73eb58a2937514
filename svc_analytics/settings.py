"""The analytics service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from common.config import ServiceSettings
from svc_analytics import domain


class Settings(ServiceSettings):
    service = "analytics"

    # Few workers: every batch takes the clock row's lock, so more would mostly wait; and
    # a pool to match keeps the platform inside its PostgreSQL connection budget.
    max_workers: int = Field(
        4, gt=0, description="concurrent workers (every batch takes the clock row's lock)"
    )
    db_pool_size: int = Field(4, ge=0, description="PostgreSQL connections the workers' pool keeps")
    call_timeout: float = Field(
        30.0,
        gt=0,
        description=(
            "seconds per call to the order service while reconciling (a digest scans every order)"
        ),
    )
    allowed_lateness: float = Field(
        3600.0,
        ge=0,
        description=(
            "seconds after a window's end (in event time) during which a late event still "
            "corrects it; older ones are counted in the late tally (docs/decisions/0130)"
        ),
    )
    out_of_orderness: float = Field(
        10.0, ge=0, description="seconds the watermark trails the newest event time"
    )
    idle_seconds: float = Field(
        60.0,
        gt=0,
        description="seconds without events after which wall-clock time moves the watermark on",
    )
    reconcile_interval: float = Field(
        600.0,
        ge=0,
        description=(
            "seconds between comparisons of what analytics counted of each order with the "
            "order service's paid orders, counting what lost events missed (`0`: only "
            "`bookstore reconcile analytics-windows`; docs/decisions/0143)"
        ),
    )

    def windows(self) -> domain.Settings:
        """The window rules' own settings (svc_analytics/domain.py)."""
        return domain.Settings(
            allowed_lateness=timedelta(seconds=self.allowed_lateness),
            out_of_orderness=timedelta(seconds=self.out_of_orderness),
            idle=timedelta(seconds=self.idle_seconds),
        )
