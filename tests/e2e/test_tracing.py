"""One trace follows a request through the gateway, the RPC call it makes and the event
that call publishes, across processes (every test process exports its spans to one
JSON-lines file, tests/harness.py)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.tracing import TRACES_FILE_ENV
from tests import harness
from tests.deploy.prometheus import scrape, total
from tests.support import assert_problem, book, eventually


@pytest.fixture
def event_consumer(api, tmp_path) -> Iterator[None]:
    """A consumer of catalog's product.created, traced like any service."""
    probe = harness.event_probe_process(
        "trace-probe", tmp_path, api.platform.env, tmp_path / "handled.ids"
    )
    probe.start()
    try:
        eventually(lambda: _assert_consuming(probe), timeout=60)
        yield
    finally:
        probe.stop()


def _assert_consuming(probe) -> None:
    assert probe.running, probe.log_tail()
    consumers = harness.queue_consumers(
        harness.VHOST, "evt-catalog-product.created--event_probe.record"
    )
    assert consumers == 1


def by_name(spans: list[dict]) -> dict[str, dict]:
    return {span["name"]: span for span in spans}


@pytest.mark.usefixtures("event_consumer")
def test_a_request_its_rpc_call_and_its_event_share_the_callers_trace(api):
    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    response = api.post(
        "/products",
        json=book(title="Traced"),
        token=api.admin,
        headers={"traceparent": f"00-{trace_id}-{caller_span_id}-01"},
    )
    assert response.status_code == 201, response.text
    expected = {
        "POST /api/v1/products",
        "catalog.create_product",
        "event_probe.record",
    }

    def whole_trace() -> dict[str, dict]:
        spans = by_name(api.platform.spans(trace_id))
        assert expected <= set(spans), sorted(spans)
        return spans

    spans = eventually(whole_trace)
    request = spans["POST /api/v1/products"]
    calls = [
        span
        for span in api.platform.spans(trace_id)
        if span["name"] == "catalog.create_product" and span["kind"] == "SpanKind.CLIENT"
    ]
    served = [
        span
        for span in api.platform.spans(trace_id)
        if span["name"] == "catalog.create_product" and span["kind"] == "SpanKind.SERVER"
    ]
    handled = spans["event_probe.record"]
    assert len(calls) == len(served) == 1
    (call,), (serve,) = calls, served

    # The gateway continues the caller's trace; each hop is the child of the one before.
    assert request["parent_id"] == f"0x{caller_span_id}"
    assert call["parent_id"] == request["context"]["span_id"]
    assert serve["parent_id"] == call["context"]["span_id"]
    assert handled["parent_id"] == serve["context"]["span_id"]
    assert handled["kind"] == "SpanKind.CONSUMER"
    # ...in three processes
    services = [span["resource"]["attributes"]["service.name"] for span in (call, serve, handled)]
    assert services == ["gateway", "catalog", "event_probe"]
    correlation_id = response.headers["X-Request-ID"]
    for span in (request, serve, handled):
        assert span["attributes"]["bookstore.correlation_id"] == correlation_id
    assert request["attributes"]["http.response.status_code"] == 201
    assert request["attributes"]["http.route"] == "/api/v1/products"

    # The libraries' client spans join in (docs/decisions/0097): catalog's SQL under its
    # worker's span, the gateway's Redis commands (rate limiting) under the request's.
    # (Other services' handlers of the event add their own SQL to the trace too.)
    def library_spans() -> tuple[list[dict], list[dict]]:
        trace = api.platform.spans(trace_id)
        sql = [
            span
            for span in trace
            if span["attributes"].get("db.system") == "postgresql"
            and span["resource"]["attributes"]["service.name"] == "catalog"
        ]
        redis = [span for span in trace if span["attributes"].get("db.system") == "redis"]
        assert any(span["name"].startswith("INSERT") for span in sql) and redis, sorted(
            (span["resource"]["attributes"]["service.name"], span["name"]) for span in trace
        )
        return sql, redis

    sql, redis = eventually(library_spans)
    # The product's INSERT is under the create_product worker (other catalog workers, for
    # the search service's calls, add theirs under their own spans).
    inserted = [span for span in sql if span["name"].startswith("INSERT")]
    assert serve["context"]["span_id"] in {span["parent_id"] for span in inserted}
    assert {span["resource"]["attributes"]["service.name"] for span in redis} == {"gateway"}
    assert request["context"]["span_id"] in {span["parent_id"] for span in redis}


def test_without_a_callers_trace_the_correlation_id_finds_the_trace(api):
    response = api.get("/products/00000000-0000-4000-8000-000000000000")
    assert_problem(response, 404)
    correlation_id = response.headers["X-Request-ID"]

    # The gateway's access-log line names the trace its request started...
    def access_log_line() -> dict:
        log = api.platform.processes["gateway"].log_path.read_text().splitlines()
        lines = [json.loads(line) for line in log if correlation_id in line]
        assert lines and "trace_id" in lines[-1], lines
        return lines[-1]

    trace_id = eventually(access_log_line)["trace_id"]

    def catalog_span() -> dict:
        served = [
            span
            for span in api.platform.spans(trace_id)
            if span["name"] == "catalog.get_product"
            and span["resource"]["attributes"]["service.name"] == "catalog"
        ]
        assert served
        return served[0]

    span = eventually(catalog_span)
    # A domain error the caller expects is an answer, not a failed span.
    assert span["status"]["status_code"] == "UNSET"
    assert span["attributes"]["error.type"] == "NotFound"
    assert span["attributes"]["bookstore.correlation_id"] == correlation_id


def test_the_gateways_revocation_polls_start_no_traces(api):
    """They run every second (gateway/revocations.py): their traces would drown the rest."""
    path = Path(api.platform.env[TRACES_FILE_ENV])
    polls = _revocation_polls(api)

    def polled_twice() -> None:
        assert _revocation_polls(api) >= polls + 2

    eventually(polled_twice)
    # A positive barrier: a traced request after those polls, through the gateway to auth.
    # Each process exports its spans in order, so once this request's spans from both
    # are in the file, whatever the polls made before it would be too.
    trace_id = secrets.token_hex(16)
    me = api.get(
        "/me", token=api.admin, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    assert me.status_code == 200, me.text
    eventually(lambda: _exported_by(api, trace_id, {"gateway", "auth"}))
    names = {json.loads(line)["name"] for line in path.read_text().splitlines()}
    assert "auth.access_revocations" not in names


def test_library_spans_only_join_a_trace_never_start_one(api):
    """The outbox relay polls, the readiness probe queries, the senders loop: none of
    them may start a trace of its own through the instrumented libraries."""
    path = Path(api.platform.env[TRACES_FILE_ENV])
    # A positive barrier: a traced product whose event catalog's relay polls out and
    # search handles, both writing SQL (library spans) under the trace. Once those are
    # exported, so is anything the libraries did before them in those processes.
    trace_id = secrets.token_hex(16)
    created = api.post(
        "/products",
        json=book(),
        token=api.admin,
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert created.status_code == 201, created.text

    def library_spans_exported() -> None:
        services = {
            span["resource"]["attributes"]["service.name"]
            for span in api.platform.spans(trace_id)
            if "db.system" in span["attributes"]
        }
        assert {"catalog", "search"} <= services, services

    eventually(library_spans_exported)
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    library = [span for span in spans if "db.system" in span["attributes"]]
    assert [span["name"] for span in library if span["parent_id"] is None] == []


def _revocation_polls(api) -> float:
    """How many times auth has answered the gateways' revocation polls (its /metrics)."""
    samples = scrape(f"http://127.0.0.1:{api.platform.metrics_ports['auth']}/metrics")
    return total(samples, "bookstore_rpc_calls_total", method="access_revocations")


def _exported_by(api, trace_id: str, services: set[str]) -> None:
    exported = {
        span["resource"]["attributes"]["service.name"] for span in api.platform.spans(trace_id)
    }
    assert services <= exported, exported
