"""What an acceptable product image is, in plain Python (Pillow, no S3, no database).

An upload is checked from its bytes, never from what the client said: the size, the
type by its magic bytes (which must be the type the upload was asked for), a decodable
image of sane dimensions. Then thumbnails are made, each stored under the sha256 of its
own bytes (content-addressed: the same image is one object, however often it is used).
docs/decisions/0160-product-images.md says why.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import InvalidInput

#: Content type -> the Pillow format that must decode it, and the stored extension.
CONTENT_TYPES: dict[str, tuple[str, str]] = {
    "image/jpeg": ("JPEG", "jpg"),
    "image/png": ("PNG", "png"),
    "image/webp": ("WEBP", "webp"),
}
#: Longest side of each thumbnail, in pixels (never enlarged past the original).
THUMBNAIL_SIZES = (160, 480, 1024)
THUMBNAIL_CONTENT_TYPE = "image/webp"
MIN_SIDE = 64
MAX_SIDE = 8000
#: Width times height: a small file can still declare a huge canvas (a decompression
#: bomb); Pillow is told to refuse it before it allocates anything.
MAX_PIXELS = 40_000_000
#: The bytes a type sniffer needs (WebP: "RIFF" + size + "WEBP").
SNIFF_BYTES = 12

_UPLOAD_KEY = re.compile(
    r"^uploads/(?P<product>[0-9a-f-]{36})/(?P<upload>[0-9a-f-]{36})$", re.IGNORECASE
)


@dataclass(frozen=True)
class UploadKey:
    product_id: uuid.UUID
    upload_id: uuid.UUID


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class CheckedImage:
    content_type: str
    width: int
    height: int
    sha256: str
    original: StoredObject
    #: Longest side (as a string, the JSON key) -> thumbnail.
    thumbnails: dict[str, StoredObject]

    @property
    def objects(self) -> dict[str, str]:
        return {"original": self.original.key} | {
            size: stored.key for size, stored in self.thumbnails.items()
        }


def refused(reason: str, detail: str, **extensions: object) -> InvalidInput:
    """The 422 an upload gets; ``reason`` is a stable word clients can act on."""
    return InvalidInput(detail, {"field": "key", "reason": reason, **extensions})


def upload_key(product_id: uuid.UUID, upload_id: uuid.UUID) -> str:
    """The one key a presigned form lets the client write."""
    return f"uploads/{product_id}/{upload_id}"


def parse_upload_key(key: str, product_id: uuid.UUID) -> UploadKey:
    """The upload a key names; a key of another product (or not an upload's) is refused."""
    match = _UPLOAD_KEY.match(key)
    if match is None:
        raise refused("not_an_upload_key", "key: not the key of an image upload.")
    try:
        named = UploadKey(uuid.UUID(match["product"]), uuid.UUID(match["upload"]))
    except ValueError:
        raise refused("not_an_upload_key", "key: not the key of an image upload.") from None
    if named.product_id != product_id:
        raise refused("other_product", "key: this upload belongs to another product.")
    return named


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise refused(
            "too_large",
            f"The image is {size} bytes; at most {max_bytes} are accepted.",
            max_bytes=max_bytes,
            size=size,
        )
    if size == 0:
        raise refused("empty", "The upload is empty.")


def sniff_content_type(head: bytes) -> str | None:
    """The image type the first bytes say, whatever the name or headers claimed."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_content_type(body: bytes, promised: str) -> str:
    sniffed = sniff_content_type(body[:SNIFF_BYTES])
    if sniffed is None:
        raise refused(
            "not_an_image",
            "The upload is not a JPEG, PNG or WebP image (its first bytes say so).",
            accepted=sorted(CONTENT_TYPES),
        )
    if sniffed != promised:
        raise refused(
            "wrong_type",
            f"The upload is {sniffed}, but {promised} was asked for.",
            detected=sniffed,
            expected=promised,
        )
    return sniffed


def check_dimensions(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise refused(
            "bad_dimensions",
            f"The image is {width}x{height} pixels; each side must be from {MIN_SIDE} "
            f"to {MAX_SIDE}.",
            width=width,
            height=height,
        )
    if width * height > MAX_PIXELS:
        raise refused(
            "bad_dimensions",
            f"The image has {width * height} pixels; at most {MAX_PIXELS} are accepted.",
            width=width,
            height=height,
        )


def content_key(body: bytes, extension: str) -> str:
    return f"images/{hashlib.sha256(body).hexdigest()}.{extension}"


def check_image(body: bytes, promised: str, max_bytes: int) -> CheckedImage:
    """Every check on an upload's bytes, then its thumbnails. Raises the 422 that names
    the first rule broken."""
    check_size(len(body), max_bytes)
    content_type = check_content_type(body, promised)
    image_format, extension = CONTENT_TYPES[content_type]
    image = _decode(body, image_format)
    check_dimensions(*image.size)
    return CheckedImage(
        content_type=content_type,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(body).hexdigest(),
        original=StoredObject(content_key(body, extension), body, content_type),
        thumbnails={str(size): _thumbnail(image, size) for size in THUMBNAIL_SIZES},
    )


def _decode(body: bytes, image_format: str) -> Image.Image:
    """The decoded image, upright (EXIF orientation applied). Truncated or corrupt
    data, or a canvas past MAX_PIXELS, is refused, never a 500."""
    not_decodable = refused("not_decodable", "The upload is not a decodable image.")
    try:
        with warnings.catch_warnings():
            # Past MAX_PIXELS Pillow warns, then (at twice that) raises: refuse at once.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body), formats=[image_format]) as probe:
                width, height = probe.size
                check_dimensions(width, height)
                probe.verify()
            image = Image.open(io.BytesIO(body), formats=[image_format])
            image.load()
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise not_decodable from error
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise refused("bad_dimensions", "The image has too many pixels.") from error
    return ImageOps.exif_transpose(image)


def _thumbnail(image: Image.Image, size: int) -> StoredObject:
    copy = image.copy()
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    if copy.mode not in ("RGB", "RGBA"):
        has_alpha = copy.mode in ("LA", "PA") or "transparency" in copy.info
        copy = copy.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    copy.save(buffer, "WEBP", quality=82, method=4)
    body = buffer.getvalue()
    return StoredObject(content_key(body, "webp"), body, THUMBNAIL_CONTENT_TYPE)
