"""The gateway's /metrics: counters by route template move with real traffic."""

from __future__ import annotations

import uuid

import requests

from gateway.metrics import operation_routes
from tests.deploy.prometheus import Samples, label_values, scrape, total
from tests.support import eventually

PRODUCT = "/api/v1/products/{product_id}"


def test_requests_are_counted_by_route_template_method_and_status(api):
    metrics_url = f"{api.platform.base_url}/metrics"
    before = scrape(metrics_url)
    assert requests.get(f"{api.platform.base_url}/health", timeout=10).status_code == 200
    assert requests.get(f"{api.platform.base_url}/ready", timeout=10).status_code == 200
    product = api.create_product()
    assert api.get(f"/products/{product['id']}").status_code == 200
    assert api.get(f"/products/{uuid.uuid4()}").status_code == 404
    assert api.get("/products/not-a-uuid").status_code == 400
    assert api.get("/no-such-route").status_code == 404

    def last_counted() -> Samples:
        # The middleware counts a request once its response has been sent, so a client
        # can see the answer a moment before the count: wait for the last request's.
        scraped = scrape(metrics_url)
        unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
        assert total(scraped, "bookstore_http_requests_total", **unmatched) > total(
            before, "bookstore_http_requests_total", **unmatched
        )
        return scraped

    after = eventually(last_counted, timeout=10)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    requests_total = "bookstore_http_requests_total"
    assert moved(requests_total, route="/api/v1/products", method="POST", status="201") == 1
    assert moved(requests_total, route=PRODUCT, method="GET", status="200") == 1
    assert moved(requests_total, route=PRODUCT, method="GET", status="404") == 1
    assert moved(requests_total, route=PRODUCT, method="GET", status="400") == 1
    assert moved(requests_total, route="unmatched", method="GET", status="404") >= 1
    # Probes are not traffic: never counted, never a route label.
    assert moved(requests_total, route="/health") == moved(requests_total, route="/ready") == 0
    assert moved("bookstore_http_request_duration_seconds_count", route=PRODUCT, method="GET") == 3
    # Only the request serving the scrape itself is in flight (and scrapes are not counted).
    assert total(after, "bookstore_http_requests_in_flight") == 0

    # No raw path (with an id in it) ever becomes a label: the series stay bounded.
    routes = label_values(after, requests_total, "route")
    assert routes <= {
        *operation_routes().values(),
        "unmatched",
        "/docs",
        "/",
        "/openapi.json",
        "/openapi.yaml",
    }
    assert not any(product["id"] in route for route in routes)
