import json
import logging

from common import context
from common.logging import REDACTED, JsonFormatter


def _record(message="hello", **extra):
    record = logging.LogRecord("svc_catalog.products", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_each_line_is_json_with_the_call_context():
    token = context.bind(context.CallContext(correlation_id="req-1", user_id="u-1"))
    try:
        line = json.loads(JsonFormatter(service="catalog").format(_record(product_id="p-1")))
    finally:
        context.unbind(token)
    assert line["message"] == "hello"
    assert line["service"] == "catalog"
    assert line["level"] == "INFO"
    assert line["correlation_id"] == "req-1"
    assert line["user_id"] == "u-1"
    assert line["product_id"] == "p-1"
    assert line["time"].endswith("+00:00")


def test_secrets_passed_as_extra_are_redacted():
    line = json.loads(JsonFormatter().format(_record(password="hunter2", access_token="eyJ")))
    assert line["password"] == REDACTED
    assert line["access_token"] == REDACTED
    assert "hunter2" not in json.dumps(line)


def test_exceptions_are_kept_in_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record()
        record.exc_info = sys.exc_info()
    formatted = JsonFormatter().format(record)
    assert "\n" not in formatted
    assert "ValueError: boom" in json.loads(formatted)["exception"]
