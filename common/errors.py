"""Typed domain errors that cross the RPC boundary intact.

Services raise these; nameko serialises the class path and ``args``, and because each
class is registered with ``deserialize_to_instance`` the caller (the gateway, or another
service) gets the same class back, not a generic ``RemoteError``. The gateway maps each
class to an HTTP status (``gateway/problems.py``); this module knows nothing of HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from nameko.exceptions import deserialize_to_instance


class BookstoreError(Exception):
    """Base of every error a service raises on purpose.

    ``detail`` is a sentence a client can show; ``extensions`` carries machine-readable
    specifics (which field, which items) and must be JSON-able.
    """

    def __init__(self, detail: str, extensions: dict[str, Any] | str | None = None) -> None:
        # nameko stringifies every non-container value in ``args`` (a count of 3 would
        # arrive as "3"), so extensions travel as one JSON string and are parsed back.
        if not isinstance(extensions, str):
            extensions = json.dumps(extensions or {}, sort_keys=True)
        super().__init__(detail, extensions)

    @property
    def detail(self) -> str:
        return self.args[0]

    @property
    def extensions(self) -> dict[str, Any]:
        return json.loads(self.args[1])

    def __str__(self) -> str:
        return self.detail


@deserialize_to_instance
class NotFound(BookstoreError):
    """The thing asked for does not exist (or is not visible to the caller)."""


@deserialize_to_instance
class Conflict(BookstoreError):
    """The request clashes with the current state (a duplicate, an illegal transition)."""


@deserialize_to_instance
class IllegalTransition(Conflict):
    """A state machine (an order's) does not allow this move: a 409 like any conflict,
    its own class so callers and tests can tell it from other clashes."""


@deserialize_to_instance
class InvalidInput(BookstoreError):
    """Well-formed input that breaks a business rule (a bad ISBN checksum, say)."""


@deserialize_to_instance
class InvalidParameter(BookstoreError):
    """A query parameter the caller sent cannot be used (a cursor from another query,
    a price range upside down)."""


@deserialize_to_instance
class Unauthenticated(BookstoreError):
    """Credentials are missing or wrong."""


@deserialize_to_instance
class Forbidden(BookstoreError):
    """The caller is known but may not do this."""


@deserialize_to_instance
class PreconditionFailed(BookstoreError):
    """A conditional request (``If-Match``) no longer matches the current version."""


@deserialize_to_instance
class IdempotencyKeyReused(BookstoreError):
    """An ``Idempotency-Key`` was replayed with a different request."""


@deserialize_to_instance
class TooManyAttempts(BookstoreError):
    """Too many failed attempts: the caller must wait ``retry_after`` seconds (an
    extension) before trying again."""

    @property
    def retry_after(self) -> int:
        return int(self.extensions.get("retry_after", 1))


@deserialize_to_instance
class PaymentDeclined(BookstoreError):
    """The payment provider declined; ``decline_code`` (an extension) says why."""


@deserialize_to_instance
class DependencyUnavailable(BookstoreError):
    """Another service this one needs did not answer (down, or too slow). Retrying the
    same request later is safe; the work converges meanwhile."""
