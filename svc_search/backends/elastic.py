"""The Elasticsearch backend, through the official client (``elasticsearch`` 8.x, for
Elasticsearch 8 servers; docs/decisions/0051).

PostgreSQL stays the source of truth: ``search_documents`` rows marked ``es_dirty`` are
pushed here in bulk by a timer (:func:`push_dirty`), so a cluster that was away catches
up by itself. Queries are built here from the same :class:`SearchQuery` the PostgreSQL
backend gets, and answered in the same shape.

- **Index**: an alias (``SEARCH_ELASTICSEARCH_INDEX``) over a concrete index
  ``<alias>-<UTC time>``; a rebuild fills a new index and swaps the alias atomically,
  so queries never see a half-built index.
- **Analysis**: ``book_text`` (standard tokenizer, lower case, ASCII folding, English
  stop words and stemmer) for title, authors and description; ``autocomplete`` (edge
  n-grams of 2 to 20) on ``title.prefix`` for the search box; author keys are keywords.
- **Matching**: ``simple_query_string`` (never raises on any input; quotes, ``-``, ``|``
  work) OR a ``multi_match`` with ``fuzziness: AUTO`` (typos), title and ISBN boosted.
- **Facets**: terms, range and filters aggregations, first page only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from common.money import money
from svc_search.backends.postgres import HIT_COLUMNS
from svc_search.query import (
    AUTHOR_FACET_SIZE,
    PRICE_BUCKETS,
    RATING_STEPS,
    SearchQuery,
    position_fields,
    price_bucket_key,
)

log = logging.getLogger(__name__)

NAME = "elasticsearch"
BULK_SIZE = 500

SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "analysis": {
        "filter": {
            "english_stop": {"type": "stop", "stopwords": "_english_"},
            "english_stemmer": {"type": "stemmer", "language": "english"},
            "english_possessive": {"type": "stemmer", "language": "possessive_english"},
            "prefixes": {"type": "edge_ngram", "min_gram": 2, "max_gram": 20},
        },
        "analyzer": {
            "book_text": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": [
                    "english_possessive",
                    "lowercase",
                    "asciifolding",
                    "english_stop",
                    "english_stemmer",
                ],
            },
            "autocomplete": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding", "prefixes"],
            },
            "autocomplete_search": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding"],
            },
        },
    },
}

MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "product_id": {"type": "keyword"},
        "isbn13": {"type": "keyword"},
        "title": {
            "type": "text",
            "analyzer": "book_text",
            "fields": {
                "prefix": {
                    "type": "text",
                    "analyzer": "autocomplete",
                    "search_analyzer": "autocomplete_search",
                },
                "raw": {"type": "keyword", "ignore_above": 512},
            },
        },
        "authors": {
            "type": "text",
            "analyzer": "book_text",
            "fields": {"raw": {"type": "keyword", "ignore_above": 256}},
        },
        "author_keys": {"type": "keyword"},
        "description": {"type": "text", "analyzer": "book_text"},
        "category_id": {"type": "keyword"},
        "category_path": {"type": "keyword"},
        "category_name": {"type": "keyword"},
        "price_amount": {"type": "long"},
        "currency": {"type": "keyword"},
        "publication_year": {"type": "short"},
        "created_at": {"type": "date"},
        "available": {"type": "integer"},
        "in_stock": {"type": "boolean"},
        "rating_average": {"type": "float"},
        "rating_count": {"type": "integer"},
    },
}

_SORTS: dict[str, list[dict[str, Any]]] = {
    "relevance": [{"_score": "desc"}, {"product_id": "desc"}],
    "price": [{"price_amount": "asc"}, {"product_id": "asc"}],
    "-price": [{"price_amount": "desc"}, {"product_id": "desc"}],
    "newest": [{"created_at": "desc"}, {"product_id": "desc"}],
    "rating": [{"rating_average": "desc"}, {"rating_count": "desc"}, {"product_id": "desc"}],
}
# What a hit shows, as the PostgreSQL backend reads it (the documents have the same
# fields); the time added is only needed there, for its cursors.
_SOURCE = [name for name in HIT_COLUMNS if name != "created_at"]


class ElasticUnavailable(Exception):
    """The cluster did not answer (connection refused, timeout, 5xx)."""


def make_client(url: str, timeout: float) -> Elasticsearch:
    # No retries inside the client: the circuit breaker decides when to try again, and a
    # retry would double the time a request waits before falling back.
    return Elasticsearch(url, request_timeout=timeout, max_retries=0, retry_on_timeout=False)


class ElasticBackend:
    def __init__(self, client: Elasticsearch, alias: str) -> None:
        self.client = client
        self.alias = alias

    # -- index management ------------------------------------------------------------

    def ensure_index(self) -> None:
        """Creates the first concrete index behind the alias if there is none."""
        with unavailable_on_failure():
            if not self.client.indices.exists_alias(name=self.alias):
                self.create_index(self.new_index_name(), alias=True)

    def new_index_name(self, now: datetime | None = None) -> str:
        return f"{self.alias}-{(now or datetime.now(UTC)).strftime('%Y%m%d%H%M%S%f')}"

    def create_index(self, name: str, *, alias: bool = False) -> None:
        with unavailable_on_failure():
            self.client.indices.create(
                index=name,
                settings=SETTINGS,
                mappings=MAPPINGS,
                aliases={self.alias: {}} if alias else None,
            )

    def swap_alias(self, new_index: str) -> list[str]:
        """Points the alias at ``new_index`` in one step; deletes and returns the old."""
        with unavailable_on_failure():
            old = list(self.client.indices.get_alias(name=self.alias).keys())
            actions: list[dict[str, Any]] = [
                {"remove": {"index": index, "alias": self.alias}} for index in old
            ]
            actions.append({"add": {"index": new_index, "alias": self.alias}})
            self.client.indices.update_aliases(actions=actions)
            for index in old:
                self.client.indices.delete(index=index)
            return old

    def bulk(self, documents: Iterable[dict[str, Any]], index: str | None = None) -> int:
        """Indexes live documents and deletes withdrawn ones; returns how many were sent.
        Raises :class:`ElasticUnavailable` if the cluster refused any of them."""
        operations: list[dict[str, Any]] = []
        count = 0
        for document in documents:
            target = {"_index": index or self.alias, "_id": str(document["product_id"])}
            if document.get("deleted"):
                operations.append({"delete": target})
            else:
                operations.append({"index": target})
                operations.append(es_source(document))
            count += 1
        if not operations:
            return 0
        with unavailable_on_failure():
            response = self.client.bulk(operations=operations)
        if response.get("errors"):
            failed = [
                item
                for item in response["items"]
                for action, outcome in item.items()
                # Deleting what the index never had is fine.
                if outcome.get("status", 200) >= 300
                and not (action == "delete" and outcome.get("status") == 404)
            ]
            if failed:
                raise ElasticUnavailable(f"{len(failed)} bulk operations failed: {failed[0]}")
        return count

    # -- queries -----------------------------------------------------------------------

    def search_request(self, query: SearchQuery) -> dict[str, Any]:
        """The search API's arguments for ``query`` (kept separate for the tests that
        check what is sent)."""
        request: dict[str, Any] = {
            "index": self.alias,
            "query": {"bool": {"must": [self._text_clause(query)], "filter": _filters(query)}},
            "sort": _SORTS[query.sort],
            "size": query.limit + 1,
            "source": _SOURCE,
            "track_total_hits": query.with_facets,
        }
        if query.after is not None:
            after = list(query.after)
            if query.sort == "newest":
                # Cursors carry ISO times (both backends share them); ES sorts dates as
                # epoch milliseconds.
                after[0] = int(datetime.fromisoformat(after[0]).timestamp() * 1000)
            request["search_after"] = after
        if query.with_facets:
            request["aggs"] = _aggregations()
        return request

    def search(self, query: SearchQuery) -> dict[str, Any]:
        with unavailable_on_failure():
            response = self.client.search(**self.search_request(query))
        hits = response["hits"]["hits"]
        items = hits[: query.limit]
        next_cursor = None
        if len(hits) > query.limit:
            next_cursor = query.cursor_for(_position(query.sort, items[-1]))
        facets = _facets(response["aggregations"]) if query.with_facets else None
        return {
            "items": [_hit_to_dict(hit) for hit in items],
            "next_cursor": next_cursor,
            "total": response["hits"]["total"]["value"] if query.with_facets else None,
            # track_total_hits: every match is counted and aggregated.
            "exhaustive": True,
            "facets": facets,
            "did_you_mean": None,
            "backend": NAME,
        }

    def suggest_request(self, prefix: str, limit: int) -> dict[str, Any]:
        return {
            "index": self.alias,
            "query": {
                "bool": {
                    "must": [
                        {
                            "multi_match": {
                                "query": prefix,
                                "type": "bool_prefix",
                                "fields": ["title.prefix", "title"],
                                "fuzziness": "AUTO",
                                "operator": "and",
                            }
                        }
                    ],
                    "filter": [],
                }
            },
            "sort": [{"_score": "desc"}, {"rating_count": "desc"}, {"product_id": "asc"}],
            "size": limit,
            "source": ["product_id", "title", "authors"],
        }

    def suggest(self, prefix: str, limit: int) -> dict[str, Any]:
        if not prefix:
            return {"query": prefix, "completions": [], "products": [], "backend": NAME}
        with unavailable_on_failure():
            response = self.client.search(**self.suggest_request(prefix, limit))
        products = [hit["_source"] for hit in response["hits"]["hits"]]
        last_word = prefix.lower().split()[-1]
        completions: list[str] = []
        for product in products:
            for word in product["title"].lower().split():
                word = word.strip(".,:;!?'\"()")
                if word.startswith(last_word) and word not in completions:
                    completions.append(word)
        return {
            "query": prefix,
            "completions": completions[:limit],
            "products": [
                {
                    "id": product["product_id"],
                    "title": product["title"],
                    "authors": product["authors"],
                }
                for product in products
            ],
            "backend": NAME,
        }

    def ping(self) -> None:
        with unavailable_on_failure():
            self.client.info()

    @staticmethod
    def _text_clause(query: SearchQuery) -> dict[str, Any]:
        if query.isbn13:
            return {"term": {"isbn13": query.isbn13}}
        if not query.text:
            return {"match_all": {}}
        return {
            "bool": {
                "should": [
                    {
                        "simple_query_string": {
                            "query": query.text,
                            "fields": ["title^3", "isbn13^3", "authors^2", "description"],
                            "default_operator": "and",
                            "lenient": True,
                        }
                    },
                    {
                        "multi_match": {
                            "query": query.text,
                            "fields": ["title^3", "authors^2", "description"],
                            "fuzziness": "AUTO",
                            "prefix_length": 1,
                            "operator": "and",
                            "lenient": True,
                            # Below exact matches: a typo match should not outrank them.
                            "boost": 0.5,
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }


class unavailable_on_failure:  # noqa: N801 - used as a context manager, like suppress
    """Turns the client's connection, timeout and server (5xx) errors into
    :class:`ElasticUnavailable`; a 4xx (our request is wrong) passes through."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> bool:
        if error is None:
            return False
        if isinstance(error, ApiError):
            if error.meta.status >= 500:
                raise ElasticUnavailable(f"Elasticsearch answered {error.meta.status}") from error
            return False
        if isinstance(error, TransportError | OSError):
            raise ElasticUnavailable(f"Elasticsearch is unreachable: {error}") from error
        return False


def es_source(document: dict[str, Any]) -> dict[str, Any]:
    """A ``search_documents`` row (as a mapping) as the Elasticsearch document."""

    def iso(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {
        "product_id": str(document["product_id"]),
        "isbn13": document["isbn13"],
        "title": document["title"],
        "authors": list(document["authors"]),
        "author_keys": list(document["author_keys"]),
        "description": document["description"],
        "category_id": str(document["category_id"]) if document["category_id"] else None,
        "category_path": [str(category) for category in document["category_path"]],
        "category_name": document["category_name"],
        "price_amount": document["price_amount"],
        "currency": document["currency"],
        "publication_year": document["publication_year"],
        "created_at": iso(document["created_at"]),
        "available": document["available"],
        "in_stock": document["available"] > 0,
        "rating_average": document["rating_average"],
        "rating_count": document["rating_count"],
    }


def _filters(query: SearchQuery) -> list[dict[str, Any]]:
    filters = query.filters
    clauses: list[dict[str, Any]] = []
    if "category_id" in filters:
        clauses.append({"term": {"category_path": filters["category_id"]}})
    if "author" in filters:
        clauses.append({"term": {"author_keys": filters["author"]}})
    price = {
        bound: filters[name]
        for bound, name in (("gte", "price_min"), ("lte", "price_max"))
        if name in filters
    }
    if price:
        clauses.append({"range": {"price_amount": price}})
    if "rating_min" in filters:
        clauses.append({"range": {"rating_average": {"gte": filters["rating_min"]}}})
        clauses.append({"range": {"rating_count": {"gt": 0}}})
    if "in_stock" in filters:
        clauses.append({"term": {"in_stock": filters["in_stock"]}})
    return clauses


def _aggregations() -> dict[str, Any]:
    return {
        "category": {
            "terms": {"field": "category_id", "size": 20},
            "aggs": {"name": {"terms": {"field": "category_name", "size": 1}}},
        },
        "author": {
            "terms": {"field": "author_keys", "size": AUTHOR_FACET_SIZE},
            "aggs": {"name": {"terms": {"field": "authors.raw", "size": 1}}},
        },
        "price": {
            "range": {
                "field": "price_amount",
                "keyed": True,
                "ranges": [
                    {
                        "key": price_bucket_key(low, high),
                        "from": low,
                        **({"to": high} if high else {}),
                    }
                    for low, high in PRICE_BUCKETS
                ],
            }
        },
        "rating": {
            "filters": {
                "filters": {
                    str(step): {
                        "bool": {
                            "filter": [
                                {"range": {"rating_average": {"gte": step}}},
                                {"range": {"rating_count": {"gt": 0}}},
                            ]
                        }
                    }
                    for step in RATING_STEPS
                }
            }
        },
        "in_stock": {"terms": {"field": "in_stock", "size": 2}},
    }


def _facets(aggregations: dict[str, Any]) -> dict[str, Any]:
    def label(bucket: dict[str, Any]) -> str | None:
        names = bucket.get("name", {}).get("buckets", [])
        return names[0]["key"] if names else None

    in_stock = {
        bucket["key_as_string"]: bucket["doc_count"]
        for bucket in aggregations["in_stock"]["buckets"]
    }
    prices = aggregations["price"]["buckets"]
    return {
        "category": [
            {"value": bucket["key"], "label": label(bucket), "count": bucket["doc_count"]}
            for bucket in aggregations["category"]["buckets"]
        ],
        "author": [
            {"value": bucket["key"], "label": label(bucket), "count": bucket["doc_count"]}
            for bucket in aggregations["author"]["buckets"]
        ],
        "price": [
            {
                "value": price_bucket_key(low, high),
                "from": low,
                "to": high,
                "count": prices[price_bucket_key(low, high)]["doc_count"],
            }
            for low, high in PRICE_BUCKETS
        ],
        "rating": [
            {
                "value": step,
                "label": f"{step} stars and up",
                "count": aggregations["rating"]["buckets"][str(step)]["doc_count"],
            }
            for step in RATING_STEPS
        ],
        "in_stock": [
            {"value": True, "count": in_stock.get("true", 0)},
            {"value": False, "count": in_stock.get("false", 0)},
        ],
    }


def _position(sort: str, hit: dict[str, Any]) -> list[Any]:
    """The keyset position of a hit: Elasticsearch's own sort values (its search_after)."""
    values = list(hit["sort"])
    if len(values) != len(position_fields(sort)):
        raise ElasticUnavailable("unexpected sort values in a search response")
    if sort == "newest":
        values[0] = datetime.fromtimestamp(values[0] / 1000, UTC).isoformat()
    return values


def _hit_to_dict(hit: dict[str, Any]) -> dict[str, Any]:
    source = hit["_source"]
    return {
        "id": source["product_id"],
        "isbn13": source["isbn13"],
        "title": source["title"],
        "authors": source["authors"],
        "category_id": source["category_id"],
        "category_name": source["category_name"],
        "price": money(source["price_amount"], source["currency"]),
        "publication_year": source["publication_year"],
        "rating": {"average": round(source["rating_average"], 2), "count": source["rating_count"]},
        "in_stock": source["in_stock"],
        "score": hit.get("_score"),
    }
