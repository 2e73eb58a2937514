"""Rendering the Helm chart with Helm's own engine (helm-python-sdk bundles it)."""

from __future__ import annotations

from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

from common.config import REPO_ROOT

CHART = REPO_ROOT / "charts" / "bookstore"
#: The oldest Kubernetes the chart promises to work on (Chart.yaml's kubeVersion is lower).
KUBERNETES_VERSION = "1.33.0"
RELEASE = "shop"
#: What a production install must give: the signing keys' passphrase and a payment
#: provider (no default) with its credentials.
PASSPHRASE = {
    "secrets": {
        "AUTH_KEY_PASSPHRASE": "a passphrase for tests",
        "STRIPE_API_KEY": "sk_live_for_tests",
        "STRIPE_WEBHOOK_SECRET": "whsec_for_tests",
    },
    "config": {"PAYMENT_PROVIDER": "stripe"},
}


# prometheus-operator's ServiceMonitor is a custom resource kubernetes-validate has no
# schema for: the fields the chart uses, as the operator's CRD (monitoring.coreos.com/v1)
# defines them, strictly (an unknown field is an error).
_SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        }
    },
}
CUSTOM_RESOURCE_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): _SERVICE_MONITOR}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of a fresh install with these values (hooks included)."""
    chart = helm_python.Chart.load(CHART)
    manifests = chart.render(values, name=RELEASE, namespace="bookstore", is_install=True)
    objects = [
        document for text in manifests.values() for document in yaml.safe_load_all(text) if document
    ]
    for document in objects:
        custom = CUSTOM_RESOURCE_SCHEMAS.get((document["apiVersion"], document["kind"]))
        if custom is not None:
            jsonschema.validate(document, custom)
            continue
        # strict: an unknown field (a typo, a field in the wrong place) is an error too
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]
