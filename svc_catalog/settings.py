"""The catalog service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from pydantic import Field

from common.config import AwsSettings, ServiceSettings


class Settings(ServiceSettings, AwsSettings):
    service = "catalog"

    call_timeout: float = Field(
        5.0, gt=0, description="seconds per call to the order service (is the reviewer a buyer?)"
    )
    # Product images (docs/decisions/0160).
    images_bucket: str = Field(
        "bookstore-images",
        min_length=1,
        description="S3 bucket of product images (`bin/run` creates it in its moto)",
    )
    images_max_bytes: int = Field(5_242_880, gt=0, description="the largest upload accepted")
    images_upload_expiry_seconds: int = Field(
        900, gt=0, description="how long an upload form lasts"
    )
    images_public_base_url: str = Field(
        "",
        description=(
            "empty: a private bucket, images shown through presigned GETs lasting "
            "`CATALOG_IMAGES_URL_EXPIRY_SECONDS`; set it to a CDN in front of the bucket for "
            "plain URLs"
        ),
    )
    images_url_expiry_seconds: int = Field(
        3600, gt=0, description="how long a presigned image URL lasts"
    )
    images_delete_grace_seconds: int = Field(
        300,
        ge=0,
        description=(
            "an unused image object is deleted this long after it stopped being used "
            "(a confirmation in flight may be about to use it again)"
        ),
    )
