"""localstripe (a fake Stripe API, run on loopback) for the tests, and a small proxy in
front of it.

localstripe is real software speaking Stripe's API, which the official SDK talks to
unchanged; it does not implement two things Stripe does, so the proxy adds them, and
the tests that rely on them say so:

- idempotency keys: Stripe answers a request repeated with the same ``Idempotency-Key``
  with the first answer; the proxy keeps first answers by key;
- a slow network: ``delay_next_answer`` makes the proxy forward a request (so the charge
  really happens at localstripe) and hold the answer back, as a timeout after the
  provider acted would look to our service.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.harness import free_port

WEBHOOK_SECRET = "whsec_bookstore_tests"
API_KEY = "sk_test_bookstore"


@contextmanager
def localstripe(log_path: Path) -> Iterator[str]:
    """localstripe on a free loopback port, from scratch; yields its base URL."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/v1/balance", auth=(API_KEY, ""), timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"localstripe did not start: {log_path.read_text()}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def register_webhook(localstripe_url: str, target_url: str) -> None:
    """Makes localstripe deliver its events, signed with WEBHOOK_SECRET, to ``target_url``."""
    response = requests.post(
        f"{localstripe_url}/_config/webhooks/bookstore",
        data={"url": target_url, "secret": WEBHOOK_SECRET},
        timeout=10,
    )
    response.raise_for_status()


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for ``payload``, as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class StripeProxy:
    """Forwards to localstripe; replays first answers by Idempotency-Key; can delay."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._answers: dict[tuple[str, str, str], tuple[int, bytes]] = {}
        self._lock = threading.Lock()
        self._delay_next: float = 0.0
        self.forwarded: list[str] = []
        #: The Idempotency-Key of every request that reached the proxy, answered or not.
        self.attempted_keys: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = self.headers.get("Idempotency-Key")
                status, answer = proxy.answer(
                    self.command, self.path, key, body, dict(self.headers)
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_DELETE = _relay  # noqa: N815 - http.server's names

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def delay_next_answer(self, seconds: float) -> None:
        self._delay_next = seconds

    def answer(
        self, method: str, path: str, key: str | None, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        cache_key = (method, path.split("?")[0], key) if key else None
        with self._lock:
            self.attempted_keys.append(key)
            if cache_key and cache_key in self._answers:
                return self._answers[cache_key]
        forward_headers = {
            name: value
            for name, value in headers.items()
            if name.lower() in ("authorization", "content-type", "stripe-version")
        }
        response = requests.request(
            method, f"{self.target}{path}", data=body, headers=forward_headers, timeout=30
        )
        self.forwarded.append(f"{method} {path.split('?')[0]}")
        answer = (response.status_code, response.content)
        if cache_key:
            with self._lock:
                self._answers.setdefault(cache_key, answer)
        if self._delay_next:
            delay, self._delay_next = self._delay_next, 0.0
            time.sleep(delay)
        return answer

    def close(self) -> None:
        self._server.shutdown()


def payment_intents(localstripe_url: str) -> list[dict]:
    response = requests.get(
        f"{localstripe_url}/v1/payment_intents",
        params={"limit": 100},
        auth=(API_KEY, ""),
        timeout=10,
    )
    response.raise_for_status()
    return json.loads(response.text)["data"]


def payment_method(localstripe_url: str, number: str) -> str:
    """A PaymentMethod made from a card number, as Stripe.js would make it in the
    customer's browser (card numbers never go through our API)."""
    response = requests.post(
        f"{localstripe_url}/v1/payment_methods",
        data={
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
        auth=(API_KEY, ""),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["id"]


def authenticate(localstripe_url: str, intent_id: str, client_secret: str, success: bool) -> None:
    """The customer completing (or failing) 3-D Secure in their browser."""
    response = requests.post(
        f"{localstripe_url}/v1/payment_intents/{intent_id}/_authenticate",
        params={"success": "true" if success else "false", "client_secret": client_secret},
        auth=(API_KEY, ""),
        timeout=10,
    )
    response.raise_for_status()
