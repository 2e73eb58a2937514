"""Reconciliation's comparison rules, without a database (common/reconcile.py)."""

from __future__ import annotations

from common import reconcile


def test_only_buckets_that_differ_are_compared():
    source = {"00": {"count": 2, "checksum": "a"}, "01": {"count": 1, "checksum": "b"}}
    copy = {"00": {"count": 2, "checksum": "a"}, "02": {"count": 1, "checksum": "c"}}
    assert reconcile.differing_buckets(source, copy) == ["01", "02"]
    assert reconcile.differing_buckets(source, dict(source)) == []
    assert reconcile.total(source) == 3


def test_drift_names_missing_extra_and_stale_rows():
    drift = reconcile.Drift(source_rows=3, copy_rows=3)
    drift.add({"a": 1, "b": 2, "c": 5}, {"b": 2, "c": 4, "d": 1})
    assert (drift.missing, drift.extra, drift.stale) == (["a"], ["d"], ["c"])
    report = drift.report()
    assert report["in_sync"] is False
    assert (report["missing"], report["extra"], report["stale"]) == (1, 1, 1)
    # A copy ahead of its source (an event newer than the source's answer) is not stale.
    ahead = reconcile.Drift()
    ahead.add({"a": 1}, {"a": 2})
    assert ahead.rows == 0 and ahead.report()["in_sync"] is True


def test_with_fingerprints_any_difference_is_stale():
    drift = reconcile.Drift()
    drift.add({"a": "f1", "b": "f2"}, {"a": "f1", "b": "f0", "c": "f3"}, ordered=False)
    assert (drift.missing, drift.extra, drift.stale) == ([], ["c"], ["b"])
