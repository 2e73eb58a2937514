"""Typed errors for the generated client: every problem the API answers with is raised
as an exception of its own class.

Hand-written, copied into the package by ``bookstore sdk`` (ops/sdk.py). Make a client
with :func:`connect` (or :func:`connect_async`) and any generated call raises instead
of returning a problem::

    from bookstore_api_client.api.orders import place_order
    from bookstore_api_client.problems import PaymentDeclined, connect

    with connect(API_URL, token=token) as client:
        try:
            order = place_order.sync(client=client, body=checkout, idempotency_key=key)
        except PaymentDeclined as declined:
            print(declined.decline_code, declined.order_id)

Each error carries the problem as its typed model (``problem``: e.g. a
``PaymentDeclinedProblem``), the raw body, the status and the ``X-Request-ID``.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import httpx

from . import models
from .client import AuthenticatedClient, Client

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:bookstore:problem:"
_LITERAL = re.compile(r"Literal\[[\"'](.+)[\"']\]")


class ApiError(Exception):
    """A problem answered by the API. Subclasses are the problem types (``type_urn``);
    this class itself stands for ``about:blank`` problems (a refused token, a missing
    scope, an unknown route) and anything unforeseen."""

    type_urn: ClassVar[str | None] = None

    def __init_subclass__(cls, slug: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_urn = TYPE_PREFIX + slug if slug else None

    def __init__(self, response: httpx.Response, body: dict[str, Any]) -> None:
        self.status_code = response.status_code
        self.body = body
        self.headers = response.headers
        self.problem = _model(body)
        super().__init__(f"{self.status_code} {body.get('title', '')}: {self.detail}".strip())

    @property
    def type(self) -> str:
        return str(self.body.get("type", "about:blank"))

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", ""))

    @property
    def correlation_id(self) -> str | None:
        """The request's id (also the ``X-Request-ID`` response header): quote it."""
        return self.body.get("correlation_id") or self.headers.get("X-Request-ID")


class InvalidRequest(ApiError, slug="invalid-request"):
    """400: the request does not match the API. ``errors`` says where, per field."""

    @property
    def errors(self) -> list[tuple[str, str]]:
        """(JSON pointer into the request, what is wrong there), e.g.
        ``("/body/items/0/quantity", "...")`` or ``("/query/limit", "...")``."""
        return [(error["pointer"], error["detail"]) for error in self.body.get("errors", [])]


class InvalidParameter(ApiError, slug="invalid-parameter"):
    """400: a parameter that cannot be used (a cursor from another query, say)."""


class Unauthenticated(ApiError, slug="unauthenticated"):
    """401: wrong email, password or code, or a spent or revoked refresh token."""


class PaymentDeclined(ApiError, slug="payment-declined"):
    """402: the card was declined; the order is cancelled and the cart kept."""

    @property
    def decline_code(self) -> str:
        return str(self.body["decline_code"])

    @property
    def order_id(self) -> str | None:
        return self.body.get("order_id")


class Forbidden(ApiError, slug="forbidden"):
    """403: the account may not do this (e.g. it is suspended)."""


class NotFound(ApiError, slug="not-found"):
    """404: no such resource, or not the caller's."""


class Conflict(ApiError, slug="conflict"):
    """409: a duplicate, an illegal transition, not enough stock (see ``body``)."""


class PreconditionFailed(ApiError, slug="precondition-failed"):
    """412: ``If-Match`` no longer matches; read the resource again."""


class InvalidInput(ApiError, slug="invalid-input"):
    """422: well-formed but breaks a rule; ``field`` names it."""

    @property
    def field(self) -> str | None:
        return self.body.get("field")


class IdempotencyKeyReused(ApiError, slug="idempotency-key-reused"):
    """422: the ``Idempotency-Key`` was used for a different request."""


class _RetryLater(ApiError):
    @property
    def retry_after(self) -> int | None:
        """Seconds to wait (``Retry-After``), if the API said."""
        value = self.headers.get("Retry-After")
        return int(value) if value is not None and value.isdigit() else None


class TooManyAttempts(_RetryLater, slug="too-many-attempts"):
    """429: failed logins have slowed down or locked the account or address."""


class RateLimited(_RetryLater, slug="rate-limited"):
    """429: the caller's request budget is spent until ``retry_after``."""


class ServiceUnavailable(_RetryLater, slug="service-unavailable"):
    """503: a service is unavailable; retrying later is safe."""


class ServiceTimeout(ApiError, slug="service-timeout"):
    """504: a service did not answer in time; retry with the same ``Idempotency-Key``."""


#: The exception class of each problem type, by URN.
ERRORS: dict[str, type[ApiError]] = {
    cls.type_urn: cls
    for cls in ApiError.__subclasses__() + _RetryLater.__subclasses__()
    if cls.type_urn
}


def _problem_models() -> dict[str, type]:
    """The generated model of each problem type, by the URN its ``type_`` is fixed to
    (annotated ``Literal["urn:..."]``; postponed annotations are read as text)."""
    found = {}
    for name in dir(models):
        model = getattr(models, name)
        annotation = str(getattr(model, "__annotations__", {}).get("type_", ""))
        if name.endswith("Problem") and (match := _LITERAL.fullmatch(annotation)):
            found[match.group(1)] = model
    return found


_MODELS = _problem_models()


def _model(body: dict[str, Any]) -> Any:
    model = _MODELS.get(body.get("type", ""), models.Problem)
    try:
        return model.from_dict(body)
    except (TypeError, ValueError, KeyError):
        return None


def error_for(response: httpx.Response) -> ApiError | None:
    """The typed error for a problem response, or None for any other response."""
    if response.status_code < 400 or PROBLEM_JSON not in response.headers.get("Content-Type", ""):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ERRORS.get(str(body.get("type")), ApiError)(response, body)


def _raise_problem(response: httpx.Response) -> None:
    response.read()
    if (error := error_for(response)) is not None:
        raise error


async def _araise_problem(response: httpx.Response) -> None:
    await response.aread()
    if (error := error_for(response)) is not None:
        raise error


def connect(base_url: str, token: str | None = None, **kwargs: Any) -> Client | AuthenticatedClient:
    """A client (authenticated if ``token`` is given) whose calls raise typed errors.
    Other keyword arguments go to the generated ``Client``/``AuthenticatedClient``."""
    return _client(base_url, token, {"response": [_raise_problem]}, kwargs)


def connect_async(
    base_url: str, token: str | None = None, **kwargs: Any
) -> Client | AuthenticatedClient:
    """As :func:`connect`, for the generated ``asyncio`` calls."""
    return _client(base_url, token, {"response": [_araise_problem]}, kwargs)


def _client(
    base_url: str, token: str | None, hooks: dict[str, list[Any]], kwargs: dict[str, Any]
) -> Client | AuthenticatedClient:
    httpx_args = dict(kwargs.pop("httpx_args", {}))
    httpx_args["event_hooks"] = hooks
    if token is None:
        return Client(base_url=base_url, httpx_args=httpx_args, **kwargs)
    return AuthenticatedClient(base_url=base_url, token=token, httpx_args=httpx_args, **kwargs)
