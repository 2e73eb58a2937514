"""The Elasticsearch backend against the exact HTTP requests the official client sends.

No Elasticsearch server runs here. A local HTTP server stands in for one: it records
every request the real ``elasticsearch`` client makes (method, path, the content type
that negotiates the 8.x API, the JSON or NDJSON body) and answers with responses shaped
like Elasticsearch 8's. The recorded requests are compared with the files in
``tests/unit/recordings/elasticsearch/`` (``UPDATE_RECORDINGS=1`` rewrites them after a
deliberate change; review the diff). What a live cluster would do with these requests
(analysis, scoring) is not tested here: see docs/decisions/0051.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError

from common.pagination import decode_cursor
from svc_search.backends.elastic import (
    MAPPINGS,
    SETTINGS,
    ElasticBackend,
    ElasticUnavailable,
    make_client,
)
from svc_search.query import parse_search

RECORDINGS = Path(__file__).parent / "recordings" / "elasticsearch"
PRODUCT = "0b6c0f7e-5a43-4c1d-9a67-1f0a2b3c4d5e"
OTHER = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"


class FakeCluster:
    """Records requests; answers each with the next queued (status, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[tuple[int, Any]] = []
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def do_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                content_type = self.headers.get("Content-Type")
                if content_type and "x-ndjson" in content_type:
                    body: Any = [json.loads(line) for line in raw.splitlines() if line]
                else:
                    body = json.loads(raw) if raw else None
                cluster.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "content_type": content_type,
                        "accept": self.headers.get("Accept"),
                        "body": body,
                    }
                )
                status, reply = cluster.replies.pop(0) if cluster.replies else (200, {})
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/vnd.elasticsearch+json;compatible-with=8"
                )
                # The client refuses servers that do not say they are Elasticsearch.
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_request  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster():
    fake = FakeCluster()
    yield fake
    fake.close()


@pytest.fixture
def backend(cluster):
    return ElasticBackend(make_client(cluster.url, timeout=2), "books")


def matches_recording(name: str, requests: list[dict[str, Any]]) -> None:
    path = RECORDINGS / f"{name}.json"
    if os.environ.get("UPDATE_RECORDINGS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(requests, indent=2, sort_keys=True) + "\n")
    assert requests == json.loads(path.read_text()), f"requests differ from {path}"


def test_the_index_is_created_behind_its_alias_with_analyzers_and_a_strict_mapping(
    cluster, backend
):
    cluster.replies = [(404, {}), (200, {"acknowledged": True, "index": "books-x"})]
    backend.ensure_index()
    head, create = cluster.requests
    assert (head["method"], head["path"]) == ("HEAD", "/_alias/books")
    assert create["method"] == "PUT" and create["path"].startswith("/books-")
    assert create["content_type"] == "application/vnd.elasticsearch+json; compatible-with=8"
    body = create["body"]
    assert body == {"aliases": {"books": {}}, "mappings": MAPPINGS, "settings": SETTINGS}
    analyzers = body["settings"]["analysis"]["analyzer"]
    assert analyzers["book_text"]["filter"][-1] == "english_stemmer"
    assert body["mappings"]["properties"]["title"]["fields"]["prefix"]["analyzer"] == "autocomplete"
    create["path"] = "/books-<UTC time>"
    matches_recording("create_index", cluster.requests)


def search_reply(hits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "took": 3,
        "timed_out": False,
        "hits": {"total": {"value": 42, "relation": "eq"}, "max_score": None, "hits": hits},
        "aggregations": {
            "category": {
                "buckets": [
                    {
                        "key": OTHER,
                        "doc_count": 30,
                        "name": {"buckets": [{"key": "Crime", "doc_count": 30}]},
                    }
                ]
            },
            "author": {
                "buckets": [
                    {
                        "key": "umberto eco",
                        "doc_count": 2,
                        "name": {"buckets": [{"key": "Umberto Eco", "doc_count": 2}]},
                    }
                ]
            },
            "price": {
                "buckets": {
                    "0-1000": {"from": 0.0, "to": 1000.0, "doc_count": 5},
                    "1000-2000": {"from": 1000.0, "to": 2000.0, "doc_count": 20},
                    "2000-3000": {"from": 2000.0, "to": 3000.0, "doc_count": 10},
                    "3000-5000": {"from": 3000.0, "to": 5000.0, "doc_count": 6},
                    "5000-": {"from": 5000.0, "doc_count": 1},
                }
            },
            "rating": {
                "buckets": {
                    "4": {"doc_count": 3},
                    "3": {"doc_count": 7},
                    "2": {"doc_count": 8},
                    "1": {"doc_count": 9},
                }
            },
            "in_stock": {
                "buckets": [
                    {"key": 1, "key_as_string": "true", "doc_count": 40},
                    {"key": 0, "key_as_string": "false", "doc_count": 2},
                ]
            },
        },
    }


def hit(product_id: str, price: int) -> dict[str, Any]:
    return {
        "_index": "books-x",
        "_id": product_id,
        "_score": None,
        "_source": {
            "product_id": product_id,
            "isbn13": "9780000000002",
            "title": "The Name of the Rose",
            "authors": ["Umberto Eco"],
            "category_id": OTHER,
            "category_name": "Crime",
            "price_amount": price,
            "currency": "EUR",
            "publication_year": 1980,
            "rating_average": 4.5,
            "rating_count": 2,
            "in_stock": True,
        },
        "sort": [price, product_id],
    }


def test_a_search_with_filters_facets_and_a_page_after(cluster, backend):
    query = parse_search(
        '"name of the rose" -film',
        {
            "category_id": OTHER,
            "price_max": 3000,
            "rating_min": 4,
            "in_stock": True,
            "author": "Umberto  Eco",
        },
        "price",
        None,
        1,
    )
    cluster.replies = [(200, search_reply([hit(PRODUCT, 1299), hit(OTHER, 1500)]))]
    result = backend.search(query)
    (request,) = cluster.requests
    assert (request["method"], request["path"]) == ("POST", "/books/_search")
    body = request["body"]
    text_clause = body["query"]["bool"]["must"][0]["bool"]["should"]
    assert text_clause[0]["simple_query_string"]["query"] == '"name of the rose" -film'
    assert text_clause[1]["multi_match"]["fuzziness"] == "AUTO"
    assert {"term": {"author_keys": "umberto eco"}} in body["query"]["bool"]["filter"]
    assert body["size"] == 2 and body["track_total_hits"] is True
    assert set(body["aggs"]) == {"category", "author", "price", "rating", "in_stock"}
    matches_recording("search_first_page", cluster.requests)

    assert [item["id"] for item in result["items"]] == [PRODUCT]
    assert result["items"][0]["price"] == {"amount": 1299, "currency": "EUR"}
    assert result["total"] == 42 and result["backend"] == "elasticsearch"
    assert result["facets"]["category"] == [{"value": OTHER, "label": "Crime", "count": 30}]
    assert result["facets"]["in_stock"] == [
        {"value": True, "count": 40},
        {"value": False, "count": 2},
    ]
    assert [bucket["count"] for bucket in result["facets"]["price"]] == [5, 20, 10, 6, 1]
    assert decode_cursor(result["next_cursor"], query.identity(), 2) == [1299, PRODUCT]

    # The next page: search_after with the cursor's position, no aggregations.
    cluster.requests.clear()
    cluster.replies = [(200, search_reply([hit(OTHER, 1500)]))]
    following = parse_search(
        '"name of the rose" -film',
        {
            "category_id": OTHER,
            "price_max": 3000,
            "rating_min": 4,
            "in_stock": True,
            "author": "Umberto  Eco",
        },
        "price",
        result["next_cursor"],
        1,
    )
    second = backend.search(following)
    body = cluster.requests[0]["body"]
    assert body["search_after"] == [1299, PRODUCT]
    assert "aggs" not in body and body["track_total_hits"] is False
    assert second["facets"] is None and second["next_cursor"] is None


def test_an_isbn_is_a_term_query_and_no_text_matches_all(cluster, backend):
    cluster.replies = [(200, search_reply([])), (200, search_reply([]))]
    backend.search(parse_search("978-0-13-468599-1", None, None, None, None))
    backend.search(parse_search("", None, "newest", None, 5))
    first, second = (request["body"]["query"]["bool"]["must"][0] for request in cluster.requests)
    assert first == {"term": {"isbn13": "9780134685991"}}
    assert second == {"match_all": {}}
    assert cluster.requests[1]["body"]["sort"] == [{"created_at": "desc"}, {"product_id": "desc"}]
    matches_recording("search_isbn_and_browse", cluster.requests)


def test_bulk_indexes_live_books_and_deletes_withdrawn_ones(cluster, backend):
    document = {
        "product_id": PRODUCT,
        "isbn13": "9780000000002",
        "title": "The Name of the Rose",
        "authors": ["Umberto Eco"],
        "author_keys": ["umberto eco"],
        "description": "A murder in an abbey.",
        "category_id": OTHER,
        "category_path": [OTHER],
        "category_name": "Crime",
        "price_amount": 1299,
        "currency": "EUR",
        "publication_year": 1980,
        "created_at": "2026-11-22T03:00:00+00:00",
        "available": 3,
        "rating_average": 4.5,
        "rating_count": 2,
        "deleted": False,
    }
    cluster.replies = [
        (200, {"errors": True, "items": [{"index": {"status": 201}}, {"delete": {"status": 404}}]})
    ]
    assert backend.bulk([document, {**document, "product_id": OTHER, "deleted": True}]) == 2
    (request,) = cluster.requests
    assert (request["method"], request["path"]) == ("PUT", "/_bulk")
    assert request["content_type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    assert request["body"][0] == {"index": {"_index": "books", "_id": PRODUCT}}
    assert request["body"][1]["in_stock"] is True
    assert request["body"][2] == {"delete": {"_index": "books", "_id": OTHER}}
    matches_recording("bulk", cluster.requests)

    cluster.replies = [
        (
            200,
            {
                "errors": True,
                "items": [
                    {"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}
                ],
            },
        )
    ]
    with pytest.raises(ElasticUnavailable, match="1 bulk operations failed"):
        backend.bulk([document])


def test_suggest_and_alias_swap(cluster, backend):
    cluster.replies = [
        (
            200,
            {
                "hits": {
                    "total": {"value": 1, "relation": "eq"},
                    "hits": [
                        {
                            "_id": PRODUCT,
                            "_score": 3.2,
                            "_source": {
                                "product_id": PRODUCT,
                                "title": "The Name of the Rose",
                                "authors": ["Umberto Eco"],
                            },
                        }
                    ],
                }
            },
        ),
        (200, {"books-old": {"aliases": {"books": {}}}}),
        (200, {"acknowledged": True}),
        (200, {"acknowledged": True}),
    ]
    answer = backend.suggest("the nam", 5)
    assert answer["completions"] == ["name"]
    assert answer["products"] == [
        {"id": PRODUCT, "title": "The Name of the Rose", "authors": ["Umberto Eco"]}
    ]
    assert backend.swap_alias("books-new") == ["books-old"]
    suggest, _get_alias, update, delete = cluster.requests
    assert suggest["body"]["query"]["bool"]["must"][0]["multi_match"]["type"] == "bool_prefix"
    assert update["body"] == {
        "actions": [
            {"remove": {"index": "books-old", "alias": "books"}},
            {"add": {"index": "books-new", "alias": "books"}},
        ]
    }
    assert (delete["method"], delete["path"]) == ("DELETE", "/books-old")
    matches_recording("suggest_and_swap", cluster.requests)


def test_server_errors_and_unreachable_clusters_are_unavailable_client_errors_are_not(
    cluster, backend
):
    query = parse_search("rose", None, None, None, None)
    cluster.replies = [(503, {"error": "unavailable"})]
    with pytest.raises(ElasticUnavailable, match="503"):
        backend.search(query)
    cluster.replies = [(400, {"error": {"type": "parsing_exception"}})]
    with pytest.raises(ApiError):
        backend.search(query)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the probe closes
    unreachable = ElasticBackend(make_client(f"http://127.0.0.1:{closed}", timeout=1), "books")
    with pytest.raises(ElasticUnavailable, match="unreachable"):
        unreachable.search(query)
