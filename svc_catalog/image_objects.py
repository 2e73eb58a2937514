"""Which bucket objects the catalog still uses, and getting rid of the rest.

An object stops being used in a transaction (an image deleted or replaced, a product
withdrawn); that transaction writes the object's key to ``image_object_deletions``. A
timer deletes due keys from the bucket and only then their rows, so a crash or an
unreachable S3 delays a deletion but never forgets it, and nothing is deleted for a
transaction that rolled back. Keys are content-addressed, so one object may serve several
images: a key still referenced when its deletion is due is kept.
``bookstore images-orphans`` finds what slipped through anyway (a confirmation that
stored its thumbnails and then failed to commit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from svc_catalog.image_store import ImageStore
from svc_catalog.models import ImageObjectDeletion, ImageUpload, Product, ProductImage

log = logging.getLogger(__name__)

#: The thumbnail a product's ``image_url`` shows (THUMBNAIL_SIZES in image_rules).
LISTING_SIZE = "480"


def image_to_dict(image: ProductImage, store: ImageStore) -> dict[str, Any]:
    return {
        "id": str(image.id),
        "primary": image.position == 0,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "url": store.url(image.objects["original"]),
        "thumbnails": {
            size: store.url(key) for size, key in image.objects.items() if size != "original"
        },
    }


def images_of(product: Product, store: ImageStore) -> tuple[list[dict[str, Any]], str | None]:
    """A product's images as the API shows them, and the URL of its primary one."""
    images = [image_to_dict(image, store) for image in product.images]
    return images, images[0]["thumbnails"][LISTING_SIZE] if images else None


def schedule_deletion(session: Session, keys: Iterable[str], due_at: datetime) -> None:
    """These objects are to go at ``due_at`` (if nothing refers to them by then)."""
    rows = [{"key": key, "due_at": due_at} for key in sorted(set(keys))]
    if rows:
        session.execute(
            insert(ImageObjectDeletion).values(rows).on_conflict_do_nothing(index_elements=["key"])
        )


def cancel_deletion(session: Session, keys: Iterable[str]) -> None:
    """These objects are about to be used (again): waits for a deletion in progress."""
    session.execute(delete(ImageObjectDeletion).where(ImageObjectDeletion.key.in_(list(keys))))


def discard_product_images(session: Session, product: Product, now: datetime, grace: int) -> None:
    """A withdrawn product's images and unconfirmed uploads go (after the commit)."""
    images = session.scalars(select(ProductImage).where(ProductImage.product_id == product.id))
    keys = [key for image in images for key in image.object_keys]
    session.execute(delete(ProductImage).where(ProductImage.product_id == product.id))
    pending = session.scalars(
        select(ImageUpload).where(
            ImageUpload.product_id == product.id, ImageUpload.image_id.is_(None)
        )
    ).all()
    for upload in pending:
        upload.expires_at = min(upload.expires_at, now)
    schedule_deletion(session, keys, now + timedelta(seconds=grace))
    schedule_deletion(session, [upload.key for upload in pending], now)


def referenced(session: Session, keys: list[str], now: datetime) -> set[str]:
    """Those of ``keys`` an image or an upload still open refers to."""
    used = {
        key
        for image_keys in session.scalars(
            select(ProductImage.object_keys).where(ProductImage.object_keys.overlap(keys))
        )
        for key in image_keys
    }
    used |= set(
        session.scalars(
            select(ImageUpload.key).where(
                ImageUpload.key.in_(keys),
                ImageUpload.image_id.is_(None),
                ImageUpload.expires_at > now,
            )
        )
    )
    return used & set(keys)


def delete_unused_objects(
    session: Session, store: ImageStore, now: datetime, limit: int = 100
) -> int:
    """Deletes up to ``limit`` due objects nothing refers to; returns how many. Rows are
    locked (skipping those another instance is working on) until the commit."""
    due = session.scalars(
        select(ImageObjectDeletion)
        .where(ImageObjectDeletion.due_at <= now)
        .order_by(ImageObjectDeletion.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0
    still_used = referenced(session, [row.key for row in due], now)
    deleted = 0
    for row in due:
        if row.key not in still_used:
            store.delete(row.key)
            deleted += 1
        session.delete(row)
    log.info("unused image objects deleted", extra={"deleted": deleted, "kept": len(still_used)})
    return deleted


#: How long a confirmed upload is remembered after its form expired (a confirmation
#: repeated meanwhile, after a timeout say, answers with the image it made).
CONFIRMED_UPLOADS_KEPT = timedelta(days=1)


def expired_uploads(session: Session, now: datetime, limit: int = 100) -> int:
    """Uploads never confirmed: their objects are scheduled for deletion, rows dropped.
    Confirmed uploads are forgotten a day after their form expired."""
    session.execute(
        delete(ImageUpload).where(
            ImageUpload.image_id.is_not(None),
            ImageUpload.expires_at <= now - CONFIRMED_UPLOADS_KEPT,
        )
    )
    stale = session.scalars(
        select(ImageUpload)
        .where(ImageUpload.image_id.is_(None), ImageUpload.expires_at <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    schedule_deletion(session, [upload.key for upload in stale], now)
    for upload in stale:
        session.delete(upload)
    return len(stale)


def orphans(session: Session, store: ImageStore, now: datetime) -> Iterator[str]:
    """Objects in the bucket nothing refers to or is about to: older than the grace period
    (a confirmation may be storing them right now), not referenced, not scheduled."""
    older_than = now - timedelta(seconds=store.settings.delete_grace_seconds)
    candidates = (key for key, modified in store.objects() if modified <= older_than)
    while keys := list(islice(candidates, 500)):
        scheduled = set(
            session.scalars(
                select(ImageObjectDeletion.key).where(ImageObjectDeletion.key.in_(keys))
            )
        )
        kept = referenced(session, keys, now) | scheduled
        yield from (key for key in keys if key not in kept)
