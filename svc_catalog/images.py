"""Product image use cases: ask for an upload, confirm it, reorder, delete.

Nothing large passes through the gateway or this service's RPC: an administrator asks
for an upload and gets a presigned S3 POST form that lets the client write one key, of one
content type, up to a size. Confirming the upload makes this service read the object
back and check it (svc_catalog/image_rules.py) before it becomes a product's image.
A refused upload's object is deleted at once. Every change of a product's images bumps
its version and publishes ``product.updated`` with ``image_changes``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db import isoformat, new_id, parse_id, utcnow
from common.errors import Conflict, InvalidInput, NotFound
from svc_catalog import image_rules
from svc_catalog.image_objects import cancel_deletion, schedule_deletion
from svc_catalog.image_store import ImageStore
from svc_catalog.models import ImageUpload, Product, ProductImage, outbox
from svc_catalog.products import live_product, product_to_dict

log = logging.getLogger(__name__)

#: Images one product may have.
MAX_IMAGES = 12


def request_upload(
    session: Session, store: ImageStore, product_id: str, content_type: str
) -> dict[str, Any]:
    """A presigned POST form for one image of the product."""
    if content_type not in image_rules.CONTENT_TYPES:
        raise InvalidInput(
            f"content_type: must be one of {', '.join(image_rules.CONTENT_TYPES)}.",
            {"field": "content_type"},
        )
    product = live_product(session, product_id)
    upload_id = new_id()
    max_bytes = store.settings.max_bytes
    upload = ImageUpload(
        id=upload_id,
        product_id=product.id,
        key=image_rules.upload_key(product.id, upload_id),
        content_type=content_type,
        max_bytes=max_bytes,
        expires_at=utcnow() + timedelta(seconds=store.settings.upload_expiry_seconds),
    )
    session.add(upload)
    session.flush()
    form = store.upload_form(upload.key, content_type, max_bytes)
    return {
        "upload_id": str(upload_id),
        "key": upload.key,
        "url": form["url"],
        "fields": form["fields"],
        "content_type": content_type,
        "max_bytes": max_bytes,
        "expires_at": isoformat(upload.expires_at),
    }


def confirm_upload(
    session: Session, store: ImageStore, product_id: str, key: str
) -> dict[str, Any]:
    """Checks the uploaded object and attaches it, with its thumbnails, as the product's
    last image. Confirming the same upload again answers the same way (idempotent)."""
    product = live_product(session, product_id, for_update=True)
    named = image_rules.parse_upload_key(key, product.id)
    upload = session.scalars(
        select(ImageUpload).where(ImageUpload.id == named.upload_id).with_for_update()
    ).first()
    if upload is None or upload.product_id != product.id:
        raise image_rules.refused("unknown_upload", "key: no such upload was asked for.")
    if upload.image_id is not None:
        return product_to_dict(product)
    now = utcnow()
    if upload.expires_at <= now:
        store.delete(upload.key)
        raise image_rules.refused("upload_expired", "The upload form has expired; ask again.")
    if len(product.images) >= MAX_IMAGES:
        raise Conflict(
            f"The product already has {MAX_IMAGES} images; delete one first.",
            {"reason": "too_many_images", "max_images": MAX_IMAGES},
        )
    checked = _checked_upload(store, upload)
    # Before storing: a deletion of the same content-addressed objects may be under way
    # (this waits for it), and must not happen after this commit.
    cancel_deletion(session, checked.objects.values())
    for stored in (checked.original, *checked.thumbnails.values()):
        store.put(stored)
    image = ProductImage(
        id=new_id(),
        product_id=product.id,
        position=len(product.images),
        sha256=checked.sha256,
        content_type=checked.content_type,
        width=checked.width,
        height=checked.height,
        byte_size=len(checked.original.body),
        objects=checked.objects,
        object_keys=sorted(set(checked.objects.values())),
    )
    session.add(image)
    upload.image_id = image.id
    # The original now lives under its content-addressed key.
    schedule_deletion(session, [upload.key], now)
    log.info(
        "product image added", extra={"product_id": str(product.id), "image_id": str(image.id)}
    )
    return _images_changed(session, product, added=[image.id], removed=[])


def reorder_images(session: Session, product_id: str, image_ids: list[str]) -> dict[str, Any]:
    """Puts the product's images in this order (the first is the primary one); the list
    must name each image exactly once."""
    product = live_product(session, product_id, for_update=True)
    current = {image.id: image for image in product.images}
    wanted = [parse_id(image_id, "image_ids") for image_id in image_ids]
    if len(set(wanted)) != len(wanted) or set(wanted) != set(current):
        raise InvalidInput(
            "image_ids: must list each of the product's images exactly once.",
            {"field": "image_ids", "image_ids": sorted(str(image_id) for image_id in current)},
        )
    if wanted == [image.id for image in product.images]:
        return product_to_dict(product)
    for position, image_id in enumerate(wanted):
        current[image_id].position = position
    return _images_changed(session, product, added=[], removed=[])


def delete_image(
    session: Session, store: ImageStore, product_id: str, image_id: str
) -> dict[str, Any]:
    """Detaches the image; its objects are deleted after the commit (if no other image
    uses the same content). The next image becomes primary if this one was."""
    product = live_product(session, product_id, for_update=True)
    wanted = parse_id(image_id, "image_id")
    image = next((image for image in product.images if image.id == wanted), None)
    if image is None:
        raise NotFound("The product has no such image.", {"image_id": str(image_id)})
    remaining = [other for other in product.images if other.id != image.id]
    for position, other in enumerate(remaining):
        other.position = position
    session.delete(image)
    grace = timedelta(seconds=store.settings.delete_grace_seconds)
    schedule_deletion(session, image.object_keys, utcnow() + grace)
    log.info(
        "product image deleted", extra={"product_id": str(product.id), "image_id": str(image.id)}
    )
    return _images_changed(session, product, added=[], removed=[image.id])


def _checked_upload(store: ImageStore, upload: ImageUpload) -> image_rules.CheckedImage:
    """The upload's object, checked; a refused object is deleted before the refusal."""
    size = store.size(upload.key)
    if size is None:
        raise image_rules.refused(
            "not_uploaded", "Nothing was uploaded with this form yet (or it was refused)."
        )
    try:
        image_rules.check_size(size, upload.max_bytes)
        body = store.read(upload.key, upload.max_bytes)
        if body is None:
            raise image_rules.refused("not_uploaded", "Nothing was uploaded with this form yet.")
        return image_rules.check_image(body, upload.content_type, upload.max_bytes)
    except InvalidInput:
        store.delete(upload.key)
        raise


def _images_changed(
    session: Session, product: Product, added: list[uuid.UUID], removed: list[uuid.UUID]
) -> dict[str, Any]:
    """Bumps the product's version (its ETag changes with its images), reloads them and
    publishes ``product.updated`` saying which images changed."""
    primary_before = product.images[0].id if product.images else None
    product.updated_at = utcnow()
    session.flush()
    session.expire(product, ["images"])
    session.refresh(product)
    order = [image.id for image in product.images]
    primary_after = order[0] if order else None
    updated = product_to_dict(product)
    changed = ["images", "image_url"] if primary_before != primary_after else ["images"]
    outbox.add(
        session,
        "product.updated",
        {
            **updated,
            "changed_fields": changed,
            "image_changes": {
                "added": [str(image_id) for image_id in added],
                "removed": [str(image_id) for image_id in removed],
                "order": [str(image_id) for image_id in order],
            },
        },
    )
    return updated
