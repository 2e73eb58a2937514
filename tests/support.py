"""Helpers for tests that talk to the gateway over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from common.books import isbn13_check_digit
from common.config import REPO_ROOT
from common.pagination import MAX_LIMIT
from tests.harness import Platform

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


def nameko_shell(
    platform: Platform, commands: str, *, amqp_uri_set: bool = True, **env: str
) -> str:
    """Feeds ``commands`` to a real ``nameko shell`` started the way docs/operations.md
    says (``--config ops/shell.yaml``, the broker from ``AMQP_URI``), as an operator
    types them; returns what it printed. The shell stops at the first command that
    raises (nameko's console does when its input is not a terminal).
    ``amqp_uri_set=False``: with ``AMQP_URI`` unset, as on a developer's machine (the
    shell then uses ops/shell.yaml's local default)."""
    completed = subprocess.run(
        [sys.executable, "-m", "ops.nameko_cli", "shell", "--config", str(SHELL_CONFIG)],
        input=commands,
        env=(
            {**os.environ, "AMQP_URI": platform.amqp_uri, **env}
            if amqp_uri_set
            else {
                **{name: value for name, value in os.environ.items() if name != "AMQP_URI"},
                **env,
            }
        ),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout + completed.stderr


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
