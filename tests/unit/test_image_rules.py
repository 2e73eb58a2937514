"""The rules an uploaded image must pass (svc_catalog/image_rules.py), on real images made
with Pillow here: no S3, no database. The upload form's policy is checked too: boto3
presigns locally, so no request leaves the process."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid

import pytest
from PIL import Image

from common.errors import InvalidInput
from svc_catalog import image_rules, image_store
from svc_catalog.image_store import ImageSettings, ImageStore
from tests.outside import AWS_TEST_ENV

MAX = 5 * 1024 * 1024


def picture(
    image_format: str, size: tuple[int, int] = (800, 600), mode: str = "RGB", colour=None
) -> bytes:
    image = Image.new(mode, size, colour if colour is not None else "teal")
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def reason(error: pytest.ExceptionInfo[InvalidInput]) -> str:
    return error.value.extensions["reason"]


@pytest.mark.parametrize(
    ("image_format", "content_type", "extension"),
    [("JPEG", "image/jpeg", "jpg"), ("PNG", "image/png", "png"), ("WEBP", "image/webp", "webp")],
)
def test_each_accepted_type_gets_webp_thumbnails_under_content_addressed_keys(
    image_format, content_type, extension
):
    body = picture(image_format, (2000, 1000))
    checked = image_rules.check_image(body, content_type, MAX)
    assert (checked.content_type, checked.width, checked.height) == (content_type, 2000, 1000)
    assert checked.sha256 == hashlib.sha256(body).hexdigest()
    assert checked.original.key == f"images/{checked.sha256}.{extension}"
    assert set(checked.thumbnails) == {"160", "480", "1024"}
    for size, stored in checked.thumbnails.items():
        assert stored.content_type == "image/webp"
        assert stored.key == f"images/{hashlib.sha256(stored.body).hexdigest()}.webp"
        with Image.open(io.BytesIO(stored.body)) as thumbnail:
            assert thumbnail.format == "WEBP"
            assert thumbnail.size == (int(size), int(size) // 2)


def test_a_small_image_is_not_enlarged():
    checked = image_rules.check_image(picture("PNG", (300, 200)), "image/png", MAX)
    with Image.open(io.BytesIO(checked.thumbnails["1024"].body)) as largest:
        assert largest.size == (300, 200)


def test_palette_and_transparent_images_are_converted():
    checked = image_rules.check_image(picture("PNG", (200, 200), "P", 3), "image/png", MAX)
    assert len(checked.thumbnails) == 3
    half_transparent = picture("PNG", (200, 200), "LA", (90, 128))
    checked = image_rules.check_image(half_transparent, "image/png", MAX)
    with Image.open(io.BytesIO(checked.thumbnails["160"].body)) as thumbnail:
        assert thumbnail.mode == "RGBA"


def test_the_same_content_gets_the_same_keys():
    body = picture("JPEG")
    first = image_rules.check_image(body, "image/jpeg", MAX)
    again = image_rules.check_image(body, "image/jpeg", MAX)
    assert first.objects == again.objects


def test_text_sent_as_png_is_not_an_image():
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(b"just some text, honest\n" * 10, "image/png", MAX)
    assert reason(error) == "not_an_image"
    assert error.value.extensions["field"] == "key"


def test_a_png_sent_as_jpeg_is_the_wrong_type():
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(picture("PNG"), "image/jpeg", MAX)
    assert reason(error) == "wrong_type"
    assert error.value.extensions["detected"] == "image/png"


def test_other_image_types_are_refused_by_their_bytes():
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(picture("GIF"), "image/png", MAX)
    assert reason(error) == "not_an_image"


def test_too_large_and_empty_uploads_are_refused_before_decoding():
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(picture("PNG"), "image/png", 100)
    assert reason(error) == "too_large"
    assert error.value.extensions["max_bytes"] == 100
    with pytest.raises(InvalidInput) as error:
        image_rules.check_size(0, MAX)
    assert reason(error) == "empty"


def test_right_magic_bytes_on_a_broken_body_are_not_decodable():
    body = picture("PNG")
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(body[: len(body) // 2], "image/png", MAX)
    assert reason(error) == "not_decodable"
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(b"\xff\xd8\xff" + b"\x00" * 500, "image/jpeg", MAX)
    assert reason(error) == "not_decodable"


@pytest.mark.parametrize("size", [(20, 400), (400, 20), (9000, 100)])
def test_dimensions_out_of_range_are_refused(size):
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(picture("PNG", size, "L", 0), "image/png", MAX)
    assert reason(error) == "bad_dimensions"


def test_a_huge_canvas_in_a_small_file_is_refused_before_it_is_decoded():
    # 7000 x 7000 = 49 million pixels, a few kilobytes as a PNG of one colour.
    body = picture("PNG", (7000, 7000), "1", 0)
    assert len(body) < 100_000
    with pytest.raises(InvalidInput) as error:
        image_rules.check_image(body, "image/png", MAX)
    assert reason(error) == "bad_dimensions"


def test_upload_keys_name_their_product_and_upload():
    product, upload = uuid.uuid4(), uuid.uuid4()
    key = image_rules.upload_key(product, upload)
    assert image_rules.parse_upload_key(key, product) == image_rules.UploadKey(product, upload)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("images/abc.webp", "not_an_upload_key"),
        ("uploads/../../etc/passwd", "not_an_upload_key"),
        (f"uploads/{uuid.uuid4()}/{uuid.uuid4()}/more", "not_an_upload_key"),
        (f"uploads/{uuid.uuid4()}/{uuid.uuid4()}", "other_product"),
    ],
)
def test_keys_of_other_products_or_not_of_uploads_are_refused(key, expected):
    with pytest.raises(InvalidInput) as error:
        image_rules.parse_upload_key(key, uuid.uuid4())
    assert reason(error) == expected


@pytest.fixture
def test_credentials(monkeypatch):
    """Presigning needs credentials, never real ones."""
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)


def settings(**changes) -> ImageSettings:
    values = {
        "bucket": "images",
        "max_bytes": MAX,
        "upload_expiry_seconds": 900,
        "public_base_url": "",
        "url_expiry_seconds": 3600,
        "delete_grace_seconds": 300,
        "region": "us-east-1",
        "endpoint_url": "http://127.0.0.1:9",  # never contacted: presigning is local
        **changes,
    }
    return ImageSettings(**values)


def test_the_upload_form_limits_the_key_the_type_and_the_size(test_credentials):
    store = ImageStore(settings())
    form = store.upload_form("uploads/p/u", "image/webp", 1234)
    assert form["url"] == "http://127.0.0.1:9/images"
    assert form["fields"]["key"] == "uploads/p/u"
    assert form["fields"]["Content-Type"] == "image/webp"
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": "images"} in conditions
    assert {"key": "uploads/p/u"} in conditions
    assert {"Content-Type": "image/webp"} in conditions
    assert ["content-length-range", 1, 1234] in conditions


def test_urls_come_from_the_public_base_or_are_presigned(test_credentials):
    public = ImageStore(settings(public_base_url="https://cdn.example.com/books"))
    assert public.url("images/a.webp") == "https://cdn.example.com/books/images/a.webp"
    private = ImageStore(settings())
    url = private.url("images/a.webp")
    assert url.startswith("http://127.0.0.1:9/images/images/a.webp?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    # Reused while it has more than half its life left, so pages of products stay cheap.
    assert private.url("images/a.webp") == url
    assert private.url("images/b.webp") != url


def test_presigned_urls_are_renewed_after_half_their_life(test_credentials, monkeypatch):
    store = ImageStore(settings(url_expiry_seconds=60))
    clock = [1000.0]
    monkeypatch.setattr(image_store.time, "monotonic", lambda: clock[0])
    presign = store.client.generate_presigned_url
    presigned = []
    monkeypatch.setattr(
        store.client,
        "generate_presigned_url",
        lambda *args, **kwargs: presigned.append(args) or presign(*args, **kwargs),
    )
    store.url("images/a.webp")
    clock[0] += 29
    store.url("images/a.webp")
    assert len(presigned) == 1
    clock[0] += 2
    store.url("images/a.webp")
    assert len(presigned) == 2
