"""Every error the gateway answers is an RFC 9457 ``application/problem+json`` document.

Services raise typed errors (``common.errors``); this module is the one table that maps
them, connexion's own validation and security problems, routing errors and transport
failures to statuses. Each problem carries the request's ``correlation_id``. Nothing
unexpected leaks: an unhandled exception is logged with its traceback and answered with
a bare 500.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any

from connexion.apps.abstract import AbstractApp
from connexion.exceptions import BadRequestProblem, ProblemException
from connexion.http_facts import HTTP_STATUS_CODES
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from common import errors
from common.schemas import spec_document
from gateway.middleware import REQUEST_ID_HEADER
from gateway.rpc import ServiceTimeout, ServiceUnavailable
from gateway.settings import API_BASE_PATH

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Problem types are URNs: stable identifiers, documented in docs/problems.md and, each
#: as a schema with its URN, in openapi/bookstore.yaml.
TYPE_PREFIX = "urn:bookstore:problem:"
INVALID_REQUEST = "invalid-request"
RATE_LIMITED = "rate-limited"
SERVICE_UNAVAILABLE = "service-unavailable"
SERVICE_TIMEOUT = "service-timeout"
#: Only ``/ready`` (an operational route, not part of the API spec) answers with it.
NOT_READY = "not-ready"
WWW_AUTHENTICATE = 'Bearer realm="bookstore"'
RETRY_AFTER_SECONDS = 5

# Domain error class -> (status, problem type). Subclasses are looked up by their MRO.
DOMAIN_ERRORS: dict[type[errors.BookstoreError], tuple[int, str]] = {
    errors.NotFound: (404, "not-found"),
    errors.Conflict: (409, "conflict"),
    errors.InvalidInput: (422, "invalid-input"),
    errors.InvalidParameter: (400, "invalid-parameter"),
    errors.Unauthenticated: (401, "unauthenticated"),
    errors.Forbidden: (403, "forbidden"),
    errors.PreconditionFailed: (412, "precondition-failed"),
    errors.IdempotencyKeyReused: (422, "idempotency-key-reused"),
    errors.TooManyAttempts: (429, "too-many-attempts"),
    errors.PaymentDeclined: (402, "payment-declined"),
    errors.DependencyUnavailable: (503, SERVICE_UNAVAILABLE),
}

#: Every problem type an API operation can answer with besides ``about:blank`` (a route,
#: method, media type or size refused, a token refused, an unexpected failure). The spec
#: documents each as a schema whose ``type`` is its URN (tests/unit/test_problem_types.py).
API_PROBLEM_TYPES = frozenset(
    {problem_type for _status, problem_type in DOMAIN_ERRORS.values()}
    | {INVALID_REQUEST, RATE_LIMITED, SERVICE_UNAVAILABLE, SERVICE_TIMEOUT}
)


class NotReady(Exception):
    """``/ready`` found something not ready; ``checks`` says what, per dependency."""

    def __init__(self, checks: dict[str, str]) -> None:
        super().__init__(checks)
        self.checks = checks


def problem(
    request: ConnexionRequest | None,
    status: int,
    detail: str | None = None,
    *,
    problem_type: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> ConnexionResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + problem_type if problem_type else "about:blank",
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    # Extensions add members; they never replace the standard ones.
    body.update({key: value for key, value in (extensions or {}).items() if key not in body})
    if request is not None and (request_id := request.headers.get(REQUEST_ID_HEADER)):
        body["correlation_id"] = request_id
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=headers,
    )


def _domain_error(request: ConnexionRequest, error: errors.BookstoreError) -> ConnexionResponse:
    for cls in type(error).__mro__:
        if cls in DOMAIN_ERRORS:
            status, problem_type = DOMAIN_ERRORS[cls]
            headers = {}
            if isinstance(error, errors.TooManyAttempts):
                headers["Retry-After"] = str(error.retry_after)
            elif isinstance(error, errors.DependencyUnavailable):
                headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return problem(
                request,
                status,
                error.detail,
                problem_type=problem_type,
                headers=headers,
                extensions=error.extensions,
            )
    return _unexpected(request, error)


def _connexion_problem(request: ConnexionRequest, error: ProblemException) -> ConnexionResponse:
    headers = dict(error.headers or {})
    if error.status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE + ', error="invalid_token"'
    if error.status >= 500:
        log.error("%s: %s", error.title, error.detail)
    problem_type = getattr(error, "problem_type", None)
    extensions = error.ext
    if problem_type is None and isinstance(error, BadRequestProblem):
        # Refused by a validator of connexion's own (ours say where: gateway/openapi31.py).
        problem_type, extensions = INVALID_REQUEST, _whole_request(error.detail or error.title)
    return problem(
        request,
        error.status,
        error.detail,
        problem_type=problem_type,
        title=error.title,
        headers=headers,
        extensions=extensions,
    )


def _whole_request(detail: str) -> dict[str, Any]:
    """``invalid-request``'s extensions when no one field is to blame: the empty JSON
    pointer is the request as a whole."""
    return {"errors": [{"pointer": "", "detail": detail}]}


def _http_error(request: ConnexionRequest, error: HTTPException) -> ConnexionResponse:
    detail = error.detail if error.detail != HTTP_STATUS_CODES.get(error.status_code) else None
    headers = dict(error.headers or {})
    if error.status_code == 405 and (allowed := allowed_methods(request.url.path)):
        # Starlette answers with the methods of the first route that matched the path
        # only; the spec knows them all.
        headers["Allow"] = ", ".join(allowed)
    if error.status_code == 400:
        return problem(
            request,
            400,
            detail,
            problem_type=INVALID_REQUEST,
            headers=headers,
            extensions=_whole_request(detail or "The request is malformed."),
        )
    return problem(request, error.status_code, detail, headers=headers)


@functools.cache
def _operations_by_path() -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    table = []
    for template, item in spec_document()["paths"].items():
        methods = {method.upper() for method in item if method in HTTP_METHODS}
        if "GET" in methods:
            methods.add("HEAD")
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(API_BASE_PATH + template))
        table.append((re.compile(f"^{pattern}$"), tuple(sorted(methods))))
    return table


def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods the spec defines for ``path`` (empty if it defines none)."""
    for pattern, methods in _operations_by_path():
        if pattern.match(path):
            return methods
    return ()


def _service_unavailable(request: ConnexionRequest, error: ServiceUnavailable) -> ConnexionResponse:
    return problem(
        request,
        503,
        f"The {error.service} service is unavailable ({error.reason}). Try again shortly.",
        problem_type=SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extensions={"service": error.service},
    )


def _service_timeout(request: ConnexionRequest, error: ServiceTimeout) -> ConnexionResponse:
    return problem(
        request,
        504,
        f"The {error.service} service did not answer in time. "
        "Retrying with the same Idempotency-Key is safe.",
        problem_type=SERVICE_TIMEOUT,
        extensions={"service": error.service},
    )


def _not_ready(request: ConnexionRequest, error: NotReady) -> ConnexionResponse:
    waiting = ", ".join(
        f"{name} {outcome}" for name, outcome in error.checks.items() if outcome != "ok"
    )
    return problem(
        request,
        503,
        f"Not ready: {waiting}.",
        problem_type=NOT_READY,
        extensions={"checks": error.checks},
    )


def _unexpected(request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    log.error("unhandled error", exc_info=error)
    return problem(request, 500, "Something went wrong on our side. It has been logged.")


def register(app: AbstractApp) -> None:
    """Installs the handlers, most specific first (connexion looks them up by class)."""
    app.add_error_handler(errors.BookstoreError, _domain_error)
    app.add_error_handler(ServiceUnavailable, _service_unavailable)
    app.add_error_handler(ServiceTimeout, _service_timeout)
    app.add_error_handler(NotReady, _not_ready)
    app.add_error_handler(ProblemException, _connexion_problem)
    app.add_error_handler(HTTPException, _http_error)
    app.add_error_handler(Exception, _unexpected)
