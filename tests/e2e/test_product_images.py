"""Product images end to end: an administrator asks the gateway for an upload form, the
test uploads the file straight to S3 (moto in server mode) with it, confirms through the
gateway, and the product shows thumbnails that can be fetched. Forged uploads are refused
with a precise problem and leave nothing in the bucket. (moto does not enforce a POST
policy's size and type conditions, which is why the catalog's own checks are what these
tests meet; the policy itself is checked in tests/unit/test_image_rules.py.)"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest
import requests
from PIL import Image
from sqlalchemy import text

from tests.support import (
    add_image,
    ask_for_upload,
    assert_problem,
    confirm,
    eventually,
    outbox_events,
    picture,
    upload,
)


class Bucket:
    """The catalog's image bucket in moto, emptied before each test."""

    def __init__(self, platform) -> None:
        self.s3 = platform.aws("s3")
        self.name = platform.env["CATALOG_IMAGES_BUCKET"]

    def object_keys(self) -> set[str]:
        listing = self.s3.list_objects_v2(Bucket=self.name)
        return {item["Key"] for item in listing.get("Contents", ())}

    def empty(self) -> None:
        for key in self.object_keys():
            self.s3.delete_object(Bucket=self.name, Key=key)

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.name, Key=key, Body=body)


@pytest.fixture
def bucket(api) -> Bucket:
    bucket = Bucket(api.platform)
    bucket.empty()
    return bucket


def test_an_uploaded_image_becomes_the_products_thumbnails(api, bucket):
    product = api.create_product()
    form = ask_for_upload(api, product["id"])
    assert form["key"] == f"uploads/{product['id']}/{form['upload_id']}"
    assert form["max_bytes"] == 5 * 1024 * 1024
    upload(form, picture("PNG", (1200, 900)))

    response = confirm(api, product["id"], form["key"])
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["version"] == product["version"] + 1
    assert response.headers["ETag"] == f'"{shown["version"]}"'
    [image] = shown["images"]
    assert image["primary"] is True
    assert (image["content_type"], image["width"], image["height"]) == ("image/png", 1200, 900)
    assert shown["image_url"] == image["thumbnails"]["480"]
    assert api.get(f"/products/{product['id']}").json()["images"][0]["id"] == image["id"]

    for size, url in image["thumbnails"].items():
        fetched = requests.get(url, timeout=10)
        assert fetched.status_code == 200, url
        with Image.open(io.BytesIO(fetched.content)) as thumbnail:
            assert thumbnail.format == "WEBP"
            assert max(thumbnail.size) == int(size)
    assert requests.get(image["url"], timeout=10).content == picture("PNG", (1200, 900))

    [event] = [
        envelope["data"]
        for envelope in outbox_events(api.platform, "catalog", "product.updated")
        if envelope["data"]["id"] == product["id"]
    ]
    assert event["changed_fields"] == ["images", "image_url"]
    assert event["image_changes"] == {"added": [image["id"]], "removed": [], "order": [image["id"]]}
    # The upload itself goes once the image is stored under its content-addressed keys.
    eventually(lambda: _assert_no_uploads(bucket))
    assert all(key.startswith("images/") for key in bucket.object_keys())
    assert len(bucket.object_keys()) == 4  # the original and three thumbnails

    # Confirming again is harmless: the same product, no second image.
    again = confirm(api, product["id"], form["key"])
    assert again.status_code == 200
    assert [item["id"] for item in again.json()["images"]] == [image["id"]]


def _assert_no_uploads(bucket: Bucket) -> None:
    assert not [key for key in bucket.object_keys() if key.startswith("uploads/")]


def test_images_are_reordered_and_deleted_and_their_objects_go(api, bucket):
    product = api.create_product()
    first = add_image(api, product["id"], picture("PNG", colour="red"))["images"][0]
    two = add_image(api, product["id"], picture("JPEG", colour="blue"), "image/jpeg")
    second = two["images"][1]
    assert [image["primary"] for image in two["images"]] == [True, False]

    reordered = api.request(
        "PUT",
        f"/products/{product['id']}/images",
        json={"image_ids": [second["id"], first["id"]]},
        token=api.admin,
    )
    assert reordered.status_code == 200, reordered.text
    assert [image["id"] for image in reordered.json()["images"]] == [second["id"], first["id"]]
    assert reordered.json()["images"][0]["primary"] is True

    wrong = api.request(
        "PUT",
        f"/products/{product['id']}/images",
        json={"image_ids": [second["id"]]},
        token=api.admin,
    )
    assert assert_problem(wrong, 422)["field"] == "image_ids"

    eventually(lambda: _assert_no_uploads(bucket))
    before = bucket.object_keys()
    deleted = api.delete(f"/products/{product['id']}/images/{second['id']}", token=api.admin)
    assert deleted.status_code == 200, deleted.text
    assert [image["id"] for image in deleted.json()["images"]] == [first["id"]]
    assert deleted.json()["images"][0]["primary"] is True
    gone = {_key(url) for url in [second["url"], *second["thumbnails"].values()]}
    assert gone <= before
    eventually(lambda: _assert_keys(bucket, before - gone))

    changes = [
        envelope["data"]["image_changes"]
        for envelope in outbox_events(api.platform, "catalog", "product.updated")
    ]
    assert changes[-1] == {"added": [], "removed": [second["id"]], "order": [first["id"]]}
    assert changes[-2] == {"added": [], "removed": [], "order": [second["id"], first["id"]]}

    missing = api.delete(f"/products/{product['id']}/images/{second['id']}", token=api.admin)
    assert_problem(missing, 404)


def _key(url: str) -> str:
    """The object key of a presigned URL (path style: /<bucket>/<key>?...)."""
    return url.split("?", 1)[0].split("/", 4)[4]


def _assert_keys(bucket: Bucket, expected: set[str]) -> None:
    assert bucket.object_keys() == expected


def test_withdrawing_a_product_removes_its_images_and_open_uploads(api, bucket):
    product = api.create_product()
    add_image(api, product["id"], picture())
    pending = ask_for_upload(api, product["id"])
    upload(pending, picture("PNG", colour="green"))
    assert api.delete(f"/products/{product['id']}", token=api.admin).status_code == 204
    eventually(lambda: _assert_keys(bucket, set()))
    deleted = outbox_events(api.platform, "catalog", "product.deleted")[-1]["data"]
    assert deleted["images"] == []


def test_the_same_picture_on_two_products_is_stored_once_and_kept_while_used(api, bucket):
    body = picture()
    one, two = api.create_product(), api.create_product()
    image = add_image(api, one["id"], body)["images"][0]
    add_image(api, two["id"], body)
    eventually(lambda: _assert_no_uploads(bucket))
    assert len(bucket.object_keys()) == 4
    api.delete(f"/products/{one['id']}/images/{image['id']}", token=api.admin)
    # Once the sweep has handled the deletion, what the other product uses is still there.
    eventually(lambda: _assert_no_deletions_pending(api.platform))
    assert len(bucket.object_keys()) == 4


def _assert_no_deletions_pending(platform) -> None:
    with platform.engine("catalog").connect() as connection:
        pending = connection.scalar(text("SELECT count(*) FROM image_object_deletions"))
    assert pending == 0


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("image/png", b"This is a text file, not a picture.\n" * 20, "not_an_image"),
        ("image/png", picture("JPEG"), "wrong_type"),
        ("image/webp", picture("GIF"), "not_an_image"),
        ("image/png", picture("PNG")[:300], "not_decodable"),
        ("image/png", picture("PNG", (30, 30)), "bad_dimensions"),
    ],
)
def test_a_forged_upload_is_refused_and_deleted(api, bucket, content_type, body, reason):
    product = api.create_product()
    form = ask_for_upload(api, product["id"], content_type)
    upload(form, body, content_type)
    assert bucket.object_keys() == {form["key"]}
    problem = assert_problem(confirm(api, product["id"], form["key"]), 422)
    assert problem["reason"] == reason
    assert problem["field"] == "key"
    assert bucket.object_keys() == set()
    assert api.get(f"/products/{product['id']}").json()["images"] == []
    # The refused upload cannot be confirmed later either.
    again = assert_problem(confirm(api, product["id"], form["key"]), 422)
    assert again["reason"] == "not_uploaded"


def test_an_upload_past_the_size_limit_is_refused_without_being_read(api, bucket):
    product = api.create_product()
    form = ask_for_upload(api, product["id"])
    too_big = picture() + os.urandom(form["max_bytes"])
    upload(form, too_big)  # moto does not enforce the form's content-length-range
    problem = assert_problem(confirm(api, product["id"], form["key"]), 422)
    assert (problem["reason"], problem["size"]) == ("too_large", len(too_big))
    assert bucket.object_keys() == set()


def test_another_products_upload_or_an_unknown_one_is_refused_and_left_alone(api, bucket):
    mine, theirs = api.create_product(), api.create_product()
    their_form = ask_for_upload(api, theirs["id"])
    upload(their_form, picture())
    problem = assert_problem(confirm(api, mine["id"], their_form["key"]), 422)
    assert problem["reason"] == "other_product"
    # Forged as if it were mine: the upload id is theirs, not one asked for this product.
    forged = f"uploads/{mine['id']}/{their_form['upload_id']}"
    assert assert_problem(confirm(api, mine["id"], forged), 422)["reason"] == "unknown_upload"
    unknown = f"uploads/{mine['id']}/{uuid.uuid4()}"
    assert assert_problem(confirm(api, mine["id"], unknown), 422)["reason"] == "unknown_upload"
    not_a_key = assert_problem(confirm(api, mine["id"], "images/../secrets"), 422)
    assert not_a_key["reason"] == "not_an_upload_key"
    # Their upload is untouched and still theirs to confirm; nothing else was stored.
    assert bucket.object_keys() == {their_form["key"]}
    assert api.get(f"/products/{mine['id']}").json()["images"] == []
    assert confirm(api, theirs["id"], their_form["key"]).status_code == 200


def test_a_form_asked_for_but_not_used_cannot_be_confirmed(api, bucket):
    product = api.create_product()
    form = ask_for_upload(api, product["id"])
    problem = assert_problem(confirm(api, product["id"], form["key"]), 422)
    assert problem["reason"] == "not_uploaded"


def test_upload_requests_are_checked_by_the_spec(api):
    product = api.create_product()
    response = api.post(
        f"/products/{product['id']}/images/uploads",
        json={"content_type": "image/gif"},
        token=api.admin,
    )
    assert_problem(response, 400)
    missing = api.post(
        f"/products/{uuid.uuid4()}/images/uploads",
        json={"content_type": "image/png"},
        token=api.admin,
    )
    assert_problem(missing, 404)


def test_customers_and_strangers_cannot_touch_images(api):
    product = api.create_product()
    _, customer = api.platform.new_customer()
    image_id = str(uuid.uuid4())
    calls = [
        ("POST", f"/products/{product['id']}/images/uploads", {"content_type": "image/png"}),
        ("POST", f"/products/{product['id']}/images", {"key": f"uploads/{product['id']}/x"}),
        ("PUT", f"/products/{product['id']}/images", {"image_ids": []}),
        ("DELETE", f"/products/{product['id']}/images/{image_id}", None),
    ]
    for method, path, body in calls:
        assert_problem(api.request(method, path, json=body, token=customer), 403)
        assert_problem(api.request(method, path, json=body), 401)


def test_orphans_are_listed_then_deleted(api, bucket):
    product = api.create_product()
    add_image(api, product["id"], picture())
    eventually(lambda: _assert_no_uploads(bucket))
    used = bucket.object_keys()
    bucket.put("images/left-by-a-failed-confirmation.webp", b"stray")
    env = {**os.environ, **api.platform.env}

    def orphans(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", "images-orphans", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = orphans()
    assert listed.returncode == 0, listed.stderr
    assert "orphan: images/left-by-a-failed-confirmation.webp" in listed.stdout
    assert "1 orphaned objects found" in listed.stdout
    assert bucket.object_keys() == used | {"images/left-by-a-failed-confirmation.webp"}
    deleted = orphans("--delete")
    assert deleted.returncode == 0, deleted.stderr
    assert bucket.object_keys() == used
