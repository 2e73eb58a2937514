"""One search interface over the configured backend, with PostgreSQL as the fallback.

``SEARCH_BACKEND=postgres`` (default): PostgreSQL answers everything. With
``elasticsearch``, Elasticsearch answers while its circuit breaker is closed; when it is
open, or a request fails, the same query is answered from PostgreSQL (whose index is
always kept: it is the source the Elasticsearch index is pushed from) and the answer
says ``degraded: true``. The service's ``ping`` reports the degradation, which the
gateway's ``/ready`` shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.circuit import CLOSED, CircuitBreaker
from svc_search.backends import postgres
from svc_search.backends.elastic import BULK_SIZE, ElasticBackend, ElasticUnavailable, make_client
from svc_search.query import SearchQuery
from svc_search.settings import Settings

log = logging.getLogger(__name__)

#: A readiness probe must not wait out the full request timeout.
PING_TIMEOUT_SECONDS = 0.5


class SearchEngine:
    def __init__(
        self,
        backend: str,
        *,
        exact_limit: int,
        elastic: ElasticBackend | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if backend == "elasticsearch" and elastic is None:
            raise ValueError("SEARCH_BACKEND=elasticsearch needs SEARCH_ELASTICSEARCH_URL")
        self.backend = backend
        self.elastic = elastic if backend == "elasticsearch" else None
        self.breaker = breaker or CircuitBreaker("elasticsearch", failure_threshold=3)
        self.exact_limit = exact_limit
        self._index_ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchEngine:
        elastic = None
        if settings.backend == "elasticsearch":
            elastic = ElasticBackend(
                make_client(settings.elasticsearch_url, settings.elasticsearch_timeout),
                settings.elasticsearch_index,
            )
        breaker = CircuitBreaker(
            "elasticsearch",
            failure_threshold=settings.breaker_failures,
            reset_after=settings.breaker_reset_seconds,
        )
        return cls(
            settings.backend, elastic=elastic, breaker=breaker, exact_limit=settings.exact_limit
        )

    def search(self, session: Session, query: SearchQuery) -> dict[str, Any]:
        answer = self._from_elastic(lambda elastic: elastic.search(query))
        if answer is None:
            answer = postgres.search(session, query, self.exact_limit)
        answer["degraded"] = self.elastic is not None and answer["backend"] != "elasticsearch"
        return answer

    def suggest(self, session: Session, prefix: str, limit: int) -> dict[str, Any]:
        answer = self._from_elastic(lambda elastic: elastic.suggest(prefix, limit))
        if answer is None:
            answer = postgres.suggest(session, prefix, limit)
        answer["degraded"] = self.elastic is not None and answer["backend"] != "elasticsearch"
        return answer

    def _from_elastic(self, request: Callable[[ElasticBackend], dict[str, Any]]) -> Any:
        if self.elastic is None or not self.breaker.allow():
            return None
        try:
            answer = request(self.elastic)
        except ElasticUnavailable as error:
            self.breaker.record_failure(error)
            log.warning("elasticsearch unavailable, answering from postgres: %s", error)
            return None
        except Exception as error:
            # Our request or our reading of the answer is wrong: a bug, logged loudly, but
            # the customer still gets results.
            self.breaker.record_failure(error)
            log.exception("elasticsearch request failed, answering from postgres")
            return None
        self.breaker.record_success()
        return answer

    def health(self) -> dict[str, Any]:
        """``status`` ok or degraded, for the service's ping. With Elasticsearch, probes it
        (briefly) when the breaker lets a request through, so an idle service notices too."""
        if self.elastic is None:
            return {"status": "ok", "backend": self.backend}
        if self.breaker.allow():
            try:
                self.elastic.client.options(request_timeout=PING_TIMEOUT_SECONDS).info()
                self.breaker.record_success()
            except Exception as error:  # noqa: BLE001 - whatever the failure, it is one
                self.breaker.record_failure(error)
        breaker = self.breaker.status()
        if breaker["state"] == CLOSED and breaker["consecutive_failures"] == 0:
            return {"status": "ok", "backend": self.backend, "breaker": breaker}
        return {
            "status": "degraded",
            "backend": self.backend,
            "breaker": breaker,
            "detail": f"elasticsearch unavailable ({breaker['last_error']}); "
            "answering from postgres",
        }

    def push_dirty(self, session: Session, batch: int = BULK_SIZE) -> int:
        """Sends changed documents to Elasticsearch (rows locked meanwhile, so a change
        made during the push marks the row dirty again after it). Returns how many."""
        if self.elastic is None or not self.breaker.allow():
            return 0
        rows = (
            session.execute(
                text(
                    "SELECT * FROM search_documents WHERE es_dirty "
                    "ORDER BY product_id LIMIT :batch FOR UPDATE SKIP LOCKED"
                ),
                {"batch": batch},
            )
            .mappings()
            .all()
        )
        try:
            if not self._index_ready:
                self.elastic.ensure_index()
                self._index_ready = True
            sent = self.elastic.bulk(rows) if rows else 0
        except ElasticUnavailable as error:
            self.breaker.record_failure(error)
            session.rollback()
            return 0
        self.breaker.record_success()
        if rows:
            session.execute(
                text("UPDATE search_documents SET es_dirty = false WHERE product_id = ANY(:ids)"),
                {"ids": [row["product_id"] for row in rows]},
            )
        session.commit()
        return sent
