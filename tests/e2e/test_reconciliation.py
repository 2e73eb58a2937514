"""Reconciliation of the search index with the catalog (svc_search/reconcile.py,
docs/decisions/0063): ``index_status`` tells the truth about drift, and ``bookstore
reconcile search-index`` finds a deliberately deleted index row, a stale one and one the
catalog withdrew without an event, and repairs them."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import text

from common.config import REPO_ROOT
from tests.support import eventually


def _status(platform) -> dict:
    with platform.rpc(timeout=30) as rpc:
        return rpc.search.index_status()


def _cli(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "reconcile", "search-index", *args],
        env={**os.environ, "AMQP_URI": platform.amqp_uri},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _execute(platform, service: str, statement: str, **params) -> None:
    with platform.engine(service).begin() as connection:
        connection.execute(text(statement), params)


def test_drift_is_reported_and_repaired(api):
    platform = api.platform
    lost, stale, withdrawn, kept = (
        api.create_product(title=f"Reconciled {name}") for name in ("lost", "stale", "gone", "kept")
    )

    def in_sync() -> dict:
        status = _status(platform)
        assert status["catalog"]["in_sync"] is True and status["documents"] == 4, status
        return status

    assert eventually(in_sync)["status"] == "ok"

    # Three ways a copy drifts: a row lost, an update missed, a withdrawal never heard of.
    _execute(
        platform, "search", "DELETE FROM search_documents WHERE product_id = :id", id=lost["id"]
    )
    _execute(
        platform,
        "search",
        "UPDATE search_documents SET product_version = 0, title = 'Old title' "
        "WHERE product_id = :id",
        id=stale["id"],
    )
    _execute(
        platform,
        "catalog",
        "UPDATE products SET deleted_at = now() WHERE id = :id",
        id=withdrawn["id"],
    )

    status = _status(platform)
    assert status["status"] == "drift"
    assert {k: status["catalog"][k] for k in ("missing", "extra", "stale")} == {
        "missing": 1,
        "extra": 1,
        "stale": 1,
    }
    assert status["catalog"]["examples"]["missing"] == [lost["id"]]

    checked = _cli(platform, "--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "1 missing, 1 extra, 1 stale; 0 repaired" in checked.stdout

    repaired = _cli(platform)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "3 repaired" in repaired.stdout

    status = _status(platform)
    assert status["status"] == "ok" and status["catalog"]["in_sync"] is True, status
    titles = {
        item["title"] for item in api.get("/search", params={"q": "Reconciled"}).json()["items"]
    }
    assert titles == {lost["title"], stale["title"], kept["title"]}
