"""Helpers shared by the tests: the gateway over HTTP, shoppers, stocked books, checkouts
and paid orders, events published as a service would, webhook receivers, EventBridge
routing, and freezing a process. Test modules import their helpers from here, never from
each other."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from PIL import Image

from common import tokens
from common.books import isbn13_check_digit
from common.config import REPO_ROOT
from common.events import EnvelopePublisher, make_envelope
from common.pagination import MAX_LIMIT
from ops.instance import INSTANCE_ENV
from ops.processes import ManagedProcess
from tests.harness import Platform, queue_messages

PROBLEM_JSON = "application/problem+json"
#: The operators' shell configuration (docs/operations.md).
SHELL_CONFIG = REPO_ROOT / "ops" / "shell.yaml"


class Api:
    """A thin requests wrapper: paths are relative to /api/v1, ``token=`` authenticates."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.http = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else f"{self.platform.api}{path}"
        return self.http.request(method, url, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    @property
    def admin(self) -> str:
        return self.platform.admin_token()

    def create_category(self, slug: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"slug": slug or f"cat-{uuid.uuid4().hex[:8]}", "name": "A category", **fields}
        response = self.post("/categories", json=body, token=self.admin)
        assert response.status_code == 201, response.text
        return response.json()

    def create_product(self, **fields: Any) -> dict[str, Any]:
        response = self.post("/products", json=book(**fields), token=self.admin)
        assert response.status_code == 201, response.text
        return response.json()

    def all_products(self, **params: Any) -> list[dict[str, Any]]:
        """Every product a listing returns, following cursors."""
        items: list[dict[str, Any]] = []
        params = {"limit": MAX_LIMIT, **params}
        while True:
            response = self.get("/products", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            if page["next_cursor"] is None:
                return items
            params["cursor"] = page["next_cursor"]


_isbn_counter = iter(range(10**8))


def unique_isbn() -> str:
    """A valid ISBN-13 no other test uses (979-... so it never meets the demo seed)."""
    body = f"9791{next(_isbn_counter):08d}"
    return body + isbn13_check_digit(body)


def book(**fields: Any) -> dict[str, Any]:
    """A valid ProductCreate body; keyword arguments override fields."""
    return {
        "isbn13": unique_isbn(),
        "title": "The Name of the Rose",
        "authors": ["Umberto Eco"],
        "description": "A murder mystery in a medieval abbey.",
        "price": {"amount": 1299, "currency": "EUR"},
        "publication_year": 1980,
        **fields,
    }


def eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    """Retries ``check`` until it stops raising AssertionError (for effects that happen
    asynchronously, like an outbox row being marked after its event went out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_until_quiet(platform: Platform, queue: str, timeout: float = 30) -> None:
    """Waits until ``queue`` holds no message, neither waiting nor
    being handled: every delivery so far has finished, so a check made now sees its
    whole effect, not the part written before the step a test watched."""
    vhost = unquote(platform.amqp_uri.rsplit("/", 1)[1])

    def quiet() -> None:
        assert queue_messages(vhost)[queue] == 0, f"{queue} still has messages"

    eventually(quiet, timeout=timeout)


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    assert body["correlation_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.text
    return body


def order_event_data(**changes: Any) -> dict[str, Any]:
    """The ``data`` of an ``order.*`` event for an order nobody placed, as the contract
    (openapi/asyncapi.yaml) wants it: for tests that publish such events themselves."""
    price = {"amount": 1000, "currency": "EUR"}
    return {
        "id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "status": "DELIVERED",
        "items": [{"product_id": str(uuid.uuid4()), "quantity": 1, "unit_price": price}],
        "shipping": {"amount": 0, "currency": "EUR"},
        "total": price,
        **changes,
    }


def outbox_events(platform: Platform, service: str, event_type: str) -> list[dict[str, Any]]:
    """The envelopes of ``event_type`` that ``service`` wrote to its outbox, oldest first
    (what it publishes; a test reads secrets such as a verification token from here the
    way the notifications service reads them from the event)."""
    from sqlalchemy import text

    with platform.engine(service).connect() as connection:
        return list(
            connection.scalars(
                text("SELECT envelope FROM outbox WHERE event_type = :type ORDER BY id"),
                {"type": event_type},
            )
        )


def event_data_for(platform: Platform, event_type: str, email: str) -> dict[str, Any]:
    """The data of the newest auth ``event_type`` about ``email``."""
    matching = [
        envelope["data"]
        for envelope in outbox_events(platform, "auth", event_type)
        if envelope["data"].get("email") == email.lower()
    ]
    assert matching, f"no {event_type} event for {email}"
    return matching[-1]


def age_current_signing_key(platform: Platform) -> None:
    """Pretends the current key was made long ago (rotation waits a token lifetime)."""
    from sqlalchemy import text

    with platform.engine("auth").begin() as connection:
        connection.execute(
            text(
                "UPDATE signing_keys SET created_at = created_at - interval '1 day' "
                "WHERE retired_at IS NULL"
            )
        )


def platform_instance(platform: Platform) -> str:
    """The instance name (ops/instance.py) of a test platform: its vhost is
    ``bookstore-<instance>`` and its databases ``bookstore_<instance>_<service>``."""
    vhost = unquote(platform.amqp_uri.rsplit("/", 1)[1])
    return vhost.removeprefix("bookstore-")


def signed_with_the_services_key(platform: Platform, **claims: Any) -> str:
    """A token signed with auth's real current key (decrypted from its database, as an
    attacker who stole it could not do without the passphrase): only the claims differ."""
    from sqlalchemy import text

    with platform.engine("auth").connect() as connection:
        kid, pem = connection.execute(
            text(
                "SELECT kid, private_key_pem FROM signing_keys WHERE retired_at IS NULL "
                "ORDER BY created_at DESC LIMIT 1"
            )
        ).one()
    key = serialization.load_pem_private_key(
        pem.encode(), password=platform.env["AUTH_KEY_PASSPHRASE"].encode()
    )
    now = int(time.time())
    payload = {
        "iss": tokens.issuer(),
        "aud": tokens.audience(),
        "sub": platform.admin.id,
        "iat": now,
        "exp": now + 300,
        "scope": "admin:catalog",
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def nameko_shell(
    platform: Platform, commands: str, *, amqp_uri_set: bool = True, **env: str
) -> str:
    """Feeds ``commands`` to a real ``nameko shell`` started the way docs/operations.md
    says (``--config ops/shell.yaml``, the broker from ``AMQP_URI``), as an operator
    types them; returns what it printed. The shell stops at the first command that
    raises (nameko's console does when its input is not a terminal).
    ``amqp_uri_set=False``: with ``AMQP_URI`` unset, as on a developer's machine, where
    ``ops.nameko_cli`` finds the platform by its instance (``BOOKSTORE_INSTANCE``, from
    ``.env.local`` after ``bin/run``; here the test platform's, which is named the same
    way: ops/instance.py) and otherwise uses ops/shell.yaml's local default."""
    environ = {name: value for name, value in os.environ.items() if name != "AMQP_URI"}
    if amqp_uri_set:
        environ["AMQP_URI"] = platform.amqp_uri
    else:
        environ[INSTANCE_ENV] = platform_instance(platform)
    completed = subprocess.run(
        [sys.executable, "-m", "ops.nameko_cli", "shell", "--config", str(SHELL_CONFIG)],
        input=commands,
        env={**environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout + completed.stderr


# -- shopping and paying ------------------------------------------------------------


@contextmanager
def frozen(process: ManagedProcess) -> Iterator[None]:
    """SIGSTOP: the process keeps its connections but answers nothing, like a hung host."""
    os.kill(process.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.process.pid, signal.SIGCONT)


#: The secret the tests' webhook subscriptions sign with.
WEBHOOK_SECRET = "whsec_a-test-secret-of-some-length"


class Receiver:
    """A webhook endpoint on loopback. ``answers`` scripts the replies in turn
    (``200``, ``500``, ``"redirect"``, ``"hang"``); then it answers 200."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.answers: list[int | str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.calls.append({"headers": dict(self.headers), "body": body})
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == "hang":
                    time.sleep(2.5)  # longer than NOTIFY_WEBHOOK_TIMEOUT (1 s) in tests
                    answer = 200
                if answer == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                else:
                    self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_webhook(
    api: Api, url: str, event_types: Sequence[str] = ("order.paid",), secret: str = WEBHOOK_SECRET
) -> dict[str, Any]:
    """Subscribes ``url`` to ``event_types`` through the admin API."""
    response = api.post(
        "/admin/webhooks",
        json={"url": url, "event_types": list(event_types), "secret": secret},
        token=api.admin,
    )
    assert response.status_code == 201, response.text
    return response.json()


@contextmanager
def routed_queue(platform: Platform, pattern: dict) -> Iterator[str]:
    """An SQS queue that an EventBridge rule on the bridge's bus routes ``pattern`` to,
    with the queue policy AWS requires for EventBridge to deliver; yields its URL."""
    name = f"consumer-{uuid.uuid4().hex[:10]}"
    sqs, events = platform.aws("sqs"), platform.aws("events")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    bus = platform.env["BRIDGE_EVENT_BUS"]
    rule_arn = events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))[
        "RuleArn"
    ]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    try:
        yield queue_url
    finally:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=["queue"])
        events.delete_rule(Name=name, EventBusName=bus)
        sqs.delete_queue(QueueUrl=queue_url)


def received(platform: Platform, queue_url: str, count: int = 1, timeout: float = 20) -> list[dict]:
    """The EventBridge events that reached the queue (waits for ``count``)."""
    sqs = platform.aws("sqs")
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        events += [json.loads(message["Body"]) for message in answer.get("Messages", [])]
    return events


def publish(platform: Platform, source: str, event_type: str, data: dict) -> dict:
    """An event as ``source``'s outbox relay would publish it."""
    envelope = make_envelope(source, event_type, data)
    EnvelopePublisher(platform.amqp_uri, source, {})(envelope)
    return envelope


def paid_order(
    api: Api, amount: int = 2000, quantity: int = 1, on_hand: int = 5
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A new customer's PAID order of ``quantity`` copies of a new book; returns (book,
    the customer's token, the order)."""
    book = stocked_book(api, on_hand=on_hand, amount=amount)
    token, address_id = shopper(api)
    fill(api, token, book, quantity)
    order = checkout(api, token, address_id).json()
    assert order["status"] == "PAID", order
    return book, token, order


def refund(api: Api, order_id: str, **body: Any) -> requests.Response:
    """An administrator's refund (``POST /admin/orders/{id}/refunds``)."""
    return api.post(
        f"/admin/orders/{order_id}/refunds", json={"reason": "goodwill", **body}, token=api.admin
    )


#: The mock provider's (and Stripe's) test card that is always authorized.
VISA = "pm_card_visa"


def stocked_book(api: Api, on_hand: int = 10, amount: int = 1500) -> dict[str, Any]:
    """A new book (EUR ``amount``) with ``on_hand`` copies in stock."""
    product = api.create_product(price={"amount": amount, "currency": "EUR"})
    api.request(
        "PUT", f"/products/{product['id']}/stock", json={"on_hand": on_hand}, token=api.admin
    )
    return product


def shopper(api: Api) -> tuple[str, str]:
    """A new customer with an address; returns (token, address id)."""
    _, token = api.platform.new_customer()
    address = api.post(
        "/me/addresses",
        json={
            "recipient": "Ada",
            "line1": "1 Road",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
        },
        token=token,
    ).json()
    return token, address["id"]


def fill(api: Api, token: str, product: dict[str, Any], quantity: int = 1) -> None:
    """Puts ``quantity`` of ``product`` in the customer's cart."""
    response = api.request(
        "PUT", f"/cart/items/{product['id']}", json={"quantity": quantity}, token=token
    )
    assert response.status_code == 200, response.text


def checkout(
    api: Api, token: str, address_id: str, payment_method: str = VISA, key: str | None = None
) -> requests.Response:
    """Places the cart as an order (``POST /orders``, a fresh Idempotency-Key unless
    ``key``)."""
    return api.post(
        "/orders",
        json={"shipping_address_id": address_id, "payment_method": payment_method},
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
        token=token,
    )


def stock(api: Api, product: dict[str, Any]) -> dict[str, Any]:
    return api.get(f"/products/{product['id']}/stock", token=api.admin).json()


def picture(
    image_format: str = "PNG", size: tuple[int, int] = (1200, 900), colour: str = "teal"
) -> bytes:
    """An image of one colour, encoded as ``image_format``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, image_format)
    return buffer.getvalue()


def ask_for_upload(api: Api, product_id: str, content_type: str = "image/png", token=None):
    response = api.post(
        f"/products/{product_id}/images/uploads",
        json={"content_type": content_type},
        token=token or api.admin,
    )
    assert response.status_code == 201, response.text
    return response.json()


def upload(form: dict, body: bytes, content_type: str | None = None) -> requests.Response:
    """What a browser does with the form: its fields, then the file, straight to S3."""
    response = requests.post(
        form["url"],
        data=form["fields"],
        files={"file": ("cover", body, content_type or form["content_type"])},
        timeout=30,
    )
    assert response.status_code == 204, response.text
    return response


def confirm(api, product_id: str, key: str, token=None) -> requests.Response:
    return api.post(f"/products/{product_id}/images", json={"key": key}, token=token or api.admin)


def add_image(api, product_id: str, body: bytes, content_type: str = "image/png") -> dict:
    form = ask_for_upload(api, product_id, content_type)
    upload(form, body)
    response = confirm(api, product_id, form["key"])
    assert response.status_code == 200, response.text
    return response.json()


def bookstore_cli(
    platform: Platform, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Runs ``bookstore <args>`` (ops/cli.py) against the test platform, as an operator
    would; the caller checks the exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        env={**os.environ, **platform.env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
