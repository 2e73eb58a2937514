"""Reading a Prometheus scrape in tests."""

from __future__ import annotations

from collections.abc import Mapping

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a scrape, keyed by (sample name, labels)."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and wanted <= sample_labels
    )


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {
        dict(sample_labels)[label]
        for (sample, sample_labels) in samples
        if sample == name and label in dict(sample_labels)
    }


def sample_names(*scrapes: Mapping) -> set[str]:
    return {name for samples in scrapes for (name, _labels) in samples}
