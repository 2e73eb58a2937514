"""The Grafana dashboard queries only metrics that a real scrape shows, with their labels."""

from __future__ import annotations

import json
import re

from nameko.standalone.rpc import ClusterRpcProxy

from common.config import REPO_ROOT
from tests.deploy.prometheus import Samples, scrape, total
from tests.support import book, eventually

DASHBOARD = REPO_ROOT / "charts" / "bookstore" / "dashboards" / "bookstore.json"
METRIC = re.compile(r"\b(bookstore_[a-z0-9_]+)\b")
# Labels a query groups by or matches on: `by (a, b)` and `{a="..."}`.
GROUPED = re.compile(r"\bby\s*\(([^)]*)\)")
MATCHED = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")


def _expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _labels_by_metric(*scrapes: Samples) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for samples in scrapes:
        for name, sample_labels in samples:
            labels.setdefault(name, set()).update(label for label, _value in sample_labels)
    return labels


def test_every_query_uses_emitted_metric_names_and_labels(api, cluster):
    assert api.get("/products?limit=1").status_code == 200
    with ClusterRpcProxy({"AMQP_URI": cluster.amqp_uri}, timeout=10) as rpc:
        rpc.catalog.create_product(book())
    probe_ports = [port for port, _log in cluster.probes.values()]

    def an_event_was_handled() -> list[Samples]:
        scrapes = [cluster.scrape(port) for port in probe_ports]
        assert sum(total(s, "bookstore_events_handled_total") for s in scrapes) > 0
        return scrapes

    scrapes = [
        scrape(f"{api.platform.base_url}/metrics"),
        *[cluster.scrape(port) for port in cluster.catalogs.values()],
        *eventually(an_event_was_handled),
        # Every service of the platform: breakers (payment, search), parking (notify,
        # bridge and every reliable handler) show there from the start, at 0.
        *[
            scrape(f"http://127.0.0.1:{port}/metrics")
            for port in api.platform.metrics_ports.values()
        ],
    ]
    emitted = _labels_by_metric(*scrapes)

    expressions = _expressions()
    assert len(expressions) >= 8
    used: set[str] = set()
    for expression in expressions:
        metrics = set(METRIC.findall(expression))
        assert metrics, f"no bookstore metric in {expression!r}"
        assert metrics <= set(emitted), f"not in any scrape: {metrics - set(emitted)}"
        used |= metrics
        labels = {
            label.strip()
            for group in GROUPED.findall(expression)
            for label in group.split(",")
            if label.strip()
        } | set(MATCHED.findall(expression))
        available = set().union(*(emitted[metric] for metric in metrics))
        assert labels <= available, f"{expression!r} uses labels {labels - available}"
    # Every family we emit is on the dashboard (its _bucket series stands for a histogram).
    families = {
        "bookstore_http_requests_total",
        "bookstore_http_request_duration_seconds_bucket",
        "bookstore_http_requests_in_flight",
        "bookstore_rpc_calls_total",
        "bookstore_rpc_duration_seconds_bucket",
        "bookstore_events_handled_total",
        "bookstore_outbox_backlog",
        "bookstore_dead_letters_total",
        "bookstore_deliveries_parked_total",
        "bookstore_circuit_breaker_state",
        "bookstore_circuit_breaker_opened_total",
    }
    assert used == families


def test_the_dashboard_filters_service_panels_by_a_service_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert "label_values(bookstore_rpc_calls_total, service)" in str(variables["service"]["query"])
    for expression in _expressions():
        if "by (service" in expression:
            assert 'service=~"$service"' in expression, expression
