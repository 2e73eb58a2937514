"""The bucket that holds product images (S3; moto in server mode in tests).

Settings are the catalog's (svc_catalog/settings.py: ``CATALOG_IMAGES_*``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``). The service makes the process-wide store at start
(:class:`ImageStorage`); tools (``bookstore images-orphans``) use the same settings.
Presigning (the upload form, private-bucket URLs) is computed locally: no request to S3.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from nameko.extensions import DependencyProvider

from common.errors import DependencyUnavailable
from svc_catalog.image_rules import StoredObject
from svc_catalog.settings import Settings

#: Content-addressed objects never change: caches may keep them for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Presigned GETs kept for reuse (per process). botocore takes a millisecond or more to
#: presign one, and a page of products shows dozens.
MAX_CACHED_URLS = 10_000


@dataclass(frozen=True)
class ImageSettings:
    bucket: str
    max_bytes: int
    upload_expiry_seconds: int
    #: A CDN (or the bucket's own public address) in front of the objects; empty for a
    #: private bucket, whose objects are shown through presigned GETs.
    public_base_url: str
    url_expiry_seconds: int
    #: How long an unreferenced object is kept before it is deleted (a confirmation in
    #: flight may be about to refer to the same content-addressed key again).
    delete_grace_seconds: int
    region: str | None
    endpoint_url: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageSettings:
        return cls(
            bucket=settings.images_bucket,
            max_bytes=settings.images_max_bytes,
            upload_expiry_seconds=settings.images_upload_expiry_seconds,
            public_base_url=settings.images_public_base_url.rstrip("/"),
            url_expiry_seconds=settings.images_url_expiry_seconds,
            delete_grace_seconds=settings.images_delete_grace_seconds,
            region=settings.aws_region or None,
            endpoint_url=settings.aws_endpoint_url or None,
        )


class ImageStore:
    """The few bucket operations images need, S3 failures turned into a 503."""

    def __init__(self, settings: ImageSettings, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client or boto3.client(
            "s3",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=BotoConfig(
                signature_version="s3v4",
                # Another endpoint (moto, MinIO) is addressed by path, not by subdomain.
                s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
                connect_timeout=5,
                read_timeout=15,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
        self._urls: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def upload_form(self, key: str, content_type: str, max_bytes: int) -> dict[str, Any]:
        """A presigned POST: the client may write exactly ``key``, with exactly this
        content type and at most ``max_bytes``, until the form expires."""
        return self.client.generate_presigned_post(
            Bucket=self.settings.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, max_bytes],
            ],
            ExpiresIn=self.settings.upload_expiry_seconds,
        )

    def url(self, key: str) -> str:
        """The public URL, or a presigned GET reused for the first half of its lifetime
        (so a URL handed out is valid for at least half of it, and browsers see the same
        URL, and cache the image, across reads)."""
        if self.settings.public_base_url:
            return f"{self.settings.public_base_url}/{key}"
        now = time.monotonic()
        cached = self._urls.get(key)
        if cached is not None and cached[1] > now:
            self._urls.move_to_end(key)
            return cached[0]
        url = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.settings.bucket, "Key": key},
            ExpiresIn=self.settings.url_expiry_seconds,
        )
        self._urls[key] = (url, now + self.settings.url_expiry_seconds / 2)
        self._urls.move_to_end(key)
        while len(self._urls) > MAX_CACHED_URLS:
            self._urls.popitem(last=False)
        return url

    def size(self, key: str) -> int | None:
        """The object's size, or None when there is no such object."""
        try:
            head = self._call(self.client.head_object, Bucket=self.settings.bucket, Key=key)
        except _Missing:
            return None
        return int(head["ContentLength"])

    def read(self, key: str, max_bytes: int) -> bytes | None:
        """At most ``max_bytes + 1`` bytes of the object (enough to tell it is too big
        without reading a huge one), or None when there is no such object."""
        try:
            answer = self._call(
                self.client.get_object,
                Bucket=self.settings.bucket,
                Key=key,
                Range=f"bytes=0-{max_bytes}",
            )
        except _Missing:
            return None
        return answer["Body"].read(max_bytes + 1)

    def put(self, stored: StoredObject) -> None:
        self._call(
            self.client.put_object,
            Bucket=self.settings.bucket,
            Key=stored.key,
            Body=stored.body,
            ContentType=stored.content_type,
            CacheControl=IMMUTABLE,
        )

    def delete(self, key: str) -> None:
        """Deletes ``key``; an object already gone is not an error (S3 agrees)."""
        self._call(self.client.delete_object, Bucket=self.settings.bucket, Key=key)

    def objects(self) -> Iterator[tuple[str, datetime]]:
        """Every object in the bucket: (key, last modified)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket):
                for item in page.get("Contents", ()):
                    yield item["Key"], item["LastModified"]
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable("The image store cannot be reached.") from error

    def _call(self, operation: Any, **kwargs: Any) -> Any:
        try:
            return operation(**kwargs)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise _Missing from error
            raise DependencyUnavailable("The image store refused the request.") from error
        except BotoCoreError as error:
            raise DependencyUnavailable("The image store cannot be reached.") from error


class _Missing(Exception):
    pass


_configured: ImageStore | None = None


def configure(settings: Settings) -> ImageStore:
    """Makes the process's store from the catalog's settings (the service's, at start)."""
    global _configured  # one store per process, like the boto3 client it holds
    _configured = ImageStore(ImageSettings.from_settings(settings))
    return _configured


def current() -> ImageStore:
    """The process's store: the service's, or (tools) one from the settings now."""
    return _configured or _from_settings()


@functools.cache
def _from_settings() -> ImageStore:
    return ImageStore(ImageSettings.from_settings(Settings.current()))


class ImageStorage(DependencyProvider):
    """Makes the store from the catalog's settings when the service starts."""

    def setup(self) -> None:
        self.store = configure(Settings.current())

    def get_dependency(self, worker_ctx: Any) -> ImageStore:
        return self.store
