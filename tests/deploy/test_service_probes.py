"""The nameko services' own probes (common/metrics.py): ``/readyz`` asks the database."""

from __future__ import annotations

from types import SimpleNamespace

import requests
from nameko_sqlalchemy import Database
from sqlalchemy import create_engine

from common.metrics import ServiceMetrics
from svc_catalog.models import Base
from tests import harness
from tests.support import eventually


def _metrics_of(database_url: str) -> ServiceMetrics:
    database = Database(Base)
    database.engine = create_engine(database_url, connect_args={"connect_timeout": 3})
    metrics = ServiceMetrics()
    # The one thing readiness reads from its container: the service's dependencies.
    metrics.container = SimpleNamespace(dependencies=[database])
    return metrics


def test_readiness_runs_a_query_on_the_service_database(platform):
    assert _metrics_of(platform.env["CATALOG_DATABASE_URL"]).readiness() is None
    unreachable = f"postgresql+psycopg2://bookstore@127.0.0.1:{harness.free_port()}/nothing"
    assert _metrics_of(unreachable).readiness() == "database unreachable (OperationalError)"


def test_a_running_service_answers_readyz(cluster):
    def ready(port: int) -> None:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        except requests.ConnectionError as error:  # its metrics server may still be starting
            raise AssertionError(error) from error
        assert (answer.status_code, answer.text) == (200, "ready\n")

    for port in cluster.catalogs.values():
        eventually(lambda port=port: ready(port))
