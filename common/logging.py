"""JSON log lines that carry the correlation id and caller of the current call, and the
trace and span ids when the call is traced (common/tracing.py).

Used by every service (through the ``LOGGING`` section of its nameko config) and by the
gateway (:func:`configure`). One line per record, so log shippers need no parsing rules.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from datetime import UTC, datetime
from typing import Any

from common import context, tracing

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Values under these keys are replaced before a line is written: a careless ``extra=``
# must not leak a credential into the logs.
_SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "authorization",
        "totp",
        "code",
        "private_key",
    }
)
REDACTED = "[redacted]"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with the call context attached."""

    def __init__(self, service: str = "bookstore", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        call_context = context.current()
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": call_context.correlation_id,
            "user_id": call_context.user_id,
        }
        if (ids := tracing.current_ids()) is not None:
            line["trace_id"], line["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = REDACTED if key.lower() in _SECRET_KEYS else value
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str)


def logging_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """A ``dictConfig`` that sends every logger's records to stderr as JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure(service: str, level: str = "INFO") -> None:
    """For processes not run by ``nameko run`` (which applies the ``LOGGING`` section of
    the service config)."""
    logging.config.dictConfig(logging_config(service, level))
