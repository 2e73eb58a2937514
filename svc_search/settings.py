"""The search service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service = "search"

    backend: Literal["postgres", "elasticsearch"] = Field(
        "postgres",
        description=(
            "`postgres` (full-text search in search's database); `elasticsearch` "
            "(`SEARCH_ELASTICSEARCH_URL` must be set; PostgreSQL stays the fallback)"
        ),
    )
    elasticsearch_url: str = Field("", description="the Elasticsearch cluster")
    elasticsearch_index: str = Field("bookstore-products", description="an alias")
    elasticsearch_timeout: float = Field(2.0, gt=0, description="seconds per Elasticsearch request")
    breaker_failures: int = Field(
        3, ge=1, description="Elasticsearch failures in a row that open the circuit"
    )
    breaker_reset_seconds: float = Field(
        30.0, gt=0, description="seconds the circuit stays open (PostgreSQL answers)"
    )
    exact_limit: int = Field(
        10_000,
        gt=0,
        description=(
            "matches beyond which PostgreSQL search ranks and counts over a sample "
            "(`exhaustive: false`)"
        ),
    )
    train_interval: float = Field(
        300.0,
        ge=0,
        description=(
            "seconds between recommender trainings (when there are new purchases); `0` "
            "trains only on demand (`train_recommender`)"
        ),
    )
    call_timeout: float = Field(5.0, gt=0, description="seconds per call to the catalog")
    reconcile_interval: float = Field(
        600.0,
        ge=0,
        description=(
            "seconds between comparisons of the index with the catalog and of the "
            "recommendation inputs with the paid orders, repairing drift (`0`: only "
            "`bookstore reconcile`)"
        ),
    )

    @model_validator(mode="after")
    def _elasticsearch_has_an_address(self) -> Self:
        if self.backend == "elasticsearch" and not self.elasticsearch_url:
            raise ValueError("SEARCH_BACKEND=elasticsearch needs SEARCH_ELASTICSEARCH_URL")
        return self
