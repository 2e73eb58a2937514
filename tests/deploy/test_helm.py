"""The Helm chart renders, with Helm's engine, into valid objects that match the code."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import requests

from common.config import SERVICE_PACKAGES
from gateway.ratelimit import parse_limits
from ops import cli
from tests.deploy.code_facts import env_vars_read, metrics_server_status, parse_cli
from tests.deploy.helm import CHART, PASSPHRASE, RELEASE, by_kind, component, render


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def _deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component(obj): obj for obj in by_kind(objects, "Deployment").values()}


def _env_names(container: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render(PASSPHRASE)


def test_every_service_and_the_gateway_get_a_deployment(default):
    deployments = _deployments(default)
    assert set(deployments) == {*SERVICE_PACKAGES, "gateway"}
    for service in SERVICE_PACKAGES:
        (container,) = _containers(deployments[service])
        args = parse_cli(container["args"])
        assert args.handler is cli.run_service
        assert args.service == service
        assert f"{service.upper()}_DATABASE_URL" in _env_names(container)
    (gateway,) = _containers(deployments["gateway"])
    assert parse_cli(gateway["args"]).handler is cli.gateway
    # Least privilege: the gateway holds no database credentials or signing secrets.
    assert _env_names(gateway) == {"AMQP_URI", "GATEWAY_REDIS_URL"}


def test_the_gateway_probes_are_real_routes(default, platform):
    (gateway,) = _containers(_deployments(default)["gateway"])
    port = gateway["ports"][0]
    assert port["containerPort"] == 8080
    probes = [gateway[probe] for probe in ("livenessProbe", "readinessProbe", "startupProbe")]
    assert {probe["httpGet"]["port"] for probe in probes} == {port["name"]}
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in probes:
        answer = requests.get(f"{platform.base_url}{probe['httpGet']['path']}", timeout=10)
        assert answer.status_code == 200, answer.text


def test_service_probes_are_http_routes_of_the_service(default):
    for service in SERVICE_PACKAGES:
        (container,) = _containers(_deployments(default)[service])
        metrics_port = container["ports"][0]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            http = container[probe]["httpGet"]
            assert http["port"] == metrics_port["name"]
            assert metrics_server_status(http["path"]) == "200 OK", (probe, http)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_pods_read_only_variables_the_code_reads(default):
    known = env_vars_read()
    (config,) = by_kind(default, "ConfigMap").values()
    assert set(config["data"]) <= known
    assert config["data"]["METRICS_PORT"] == str(
        _containers(_deployments(default)["catalog"])[0]["ports"][0]["containerPort"]
    )
    (secret,) = by_kind(default, "Secret").values()
    assert set(secret["stringData"]) <= known
    for obj in [*by_kind(default, "Deployment").values(), *by_kind(default, "Job").values()]:
        for container in _containers(obj):
            assert _env_names(container) <= known
            for entry in container.get("env", []):
                if "valueFrom" in entry:
                    reference = entry["valueFrom"]["secretKeyRef"]
                    assert reference["name"] == secret["metadata"]["name"]
                    assert reference["key"] in secret["stringData"]


def test_migrations_run_as_a_hook_before_the_services(default):
    (job,) = by_kind(default, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = _containers(job)
    assert parse_cli(container["args"]).handler is cli.migrate
    assert {
        "AMQP_URI",
        *(f"{service.upper()}_DATABASE_URL" for service in SERVICE_PACKAGES),
    } <= _env_names(container)
    # The hook needs the Secret, so the Secret is created by an earlier hook.
    (secret,) = by_kind(default, "Secret").values()
    annotations = secret["metadata"]["annotations"]
    assert int(annotations["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_defaults_autoscale_the_gateway_and_the_order_service(default):
    hpas = {component(obj): obj for obj in by_kind(default, "HorizontalPodAutoscaler").values()}
    assert set(hpas) == {"gateway", "order"}
    assert hpas["order"]["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-bookstore-order"
    assert "replicas" not in _deployments(default)["gateway"]["spec"], "the HPA owns replicas"
    assert by_kind(default, "Ingress") == {}
    (service,) = [
        obj for obj in by_kind(default, "Service").values() if component(obj) == "gateway"
    ]
    assert (
        service["spec"]["selector"]
        == (_deployments(default)["gateway"]["spec"]["selector"]["matchLabels"])
    )


def test_hpa_off_and_ingress_on():
    objects = render(
        {
            **PASSPHRASE,
            "gateway": {
                "hpa": {"enabled": False},
                "replicas": 3,
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "host": "shop.example.org",
                    "tlsSecretName": "shop-tls",
                },
            },
        }
    )
    hpas = {component(obj) for obj in by_kind(objects, "HorizontalPodAutoscaler").values()}
    assert hpas == {"order"}
    assert _deployments(objects)["gateway"]["spec"]["replicas"] == 3
    (ingress,) = by_kind(objects, "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.org"], "secretName": "shop-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] in by_kind(objects, "Service")


def test_a_service_can_be_switched_off():
    objects = render({**PASSPHRASE, "services": {"order": {"enabled": False}}})
    assert "order" not in _deployments(objects)
    hpas = {component(obj) for obj in by_kind(objects, "HorizontalPodAutoscaler").values()}
    assert hpas == {"gateway"}


def _gateway_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway container's environment: its ConfigMap's data and its own entries."""
    (config,) = by_kind(objects, "ConfigMap").values()
    (gateway,) = _containers(_deployments(objects)["gateway"])
    return {**config["data"], **{entry["name"]: entry for entry in gateway.get("env", [])}}


def test_the_gateway_gets_redis_from_the_secret_and_trusts_the_ingress(default):
    env = _gateway_env(default)
    assert env["GATEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "GATEWAY_REDIS_URL"
    (secret,) = by_kind(default, "Secret").values()
    assert secret["stringData"]["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    assert parse_limits(env["GATEWAY_RATE_LIMITS"])
    assert env["GATEWAY_RATE_LIMIT_PREFIX"] == "bookstore:ratelimit:"
    # Behind the ingress controller (ClusterIP Service), X-Forwarded-For is believed.
    assert env["GATEWAY_FORWARDED_ALLOW_IPS"] == "*"

    objects = render(
        {
            **PASSPHRASE,
            "redis": {"url": "rediss://:s3cret@redis.internal.example:6380/2"},
            "gateway": {"forwardedAllowIps": "10.42.0.0/16", "rateLimitPrefix": "shop-a:"},
        }
    )
    env = _gateway_env(objects)
    (secret,) = by_kind(objects, "Secret").values()
    assert secret["stringData"]["GATEWAY_REDIS_URL"].startswith("rediss://:s3cret@")
    (config,) = by_kind(objects, "ConfigMap").values()
    assert "s3cret" not in str(config), "the Redis password stays out of the ConfigMap"
    assert env["GATEWAY_FORWARDED_ALLOW_IPS"] == "10.42.0.0/16"
    assert env["GATEWAY_RATE_LIMIT_PREFIX"] == "shop-a:"


def test_trusting_every_proxy_is_refused_on_a_public_service():
    with pytest.raises(helm_python.HelmError, match="forwardedAllowIps"):
        render({**PASSPHRASE, "gateway": {"service": {"type": "LoadBalancer"}}})
    objects = render(
        {
            **PASSPHRASE,
            "gateway": {"service": {"type": "LoadBalancer"}, "forwardedAllowIps": "10.0.0.5"},
        }
    )
    assert _gateway_env(objects)["GATEWAY_FORWARDED_ALLOW_IPS"] == "10.0.0.5"


def test_existing_secret_replaces_the_chart_secret():
    objects = render(
        {"existingSecret": "bookstore-credentials", "config": {"PAYMENT_PROVIDER": "stripe"}}
    )
    assert by_kind(objects, "Secret") == {}
    for obj in [*by_kind(objects, "Deployment").values(), *by_kind(objects, "Job").values()]:
        for container in _containers(obj):
            for entry in container.get("env", []):
                if "valueFrom" in entry:
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "bookstore-credentials"


def test_external_quorum_queue_rabbitmq():
    uri = "amqps://bookstore:s3cret@rabbitmq.internal.example:5671/bookstore-quorum"
    objects = render({**PASSPHRASE, "rabbitmq": {"uri": uri}})
    (secret,) = by_kind(objects, "Secret").values()
    assert secret["stringData"]["AMQP_URI"] == uri
    (config,) = by_kind(objects, "ConfigMap").values()
    assert uri not in str(config), "credentials stay out of the ConfigMap"


def test_a_missing_secret_value_fails_the_render():
    with pytest.raises(helm_python.HelmError, match="AUTH_KEY_PASSPHRASE"):
        render({"config": {"PAYMENT_PROVIDER": "stripe"}})
    with pytest.raises(helm_python.HelmError, match="STRIPE_WEBHOOK_SECRET"):
        render(
            {
                "config": {"PAYMENT_PROVIDER": "stripe"},
                "secrets": {"AUTH_KEY_PASSPHRASE": "x", "STRIPE_API_KEY": "sk_live_x"},
            }
        )


def test_helm_lint_finds_no_warning():
    report = helm_python.lint(CHART, PASSPHRASE, strict=True)
    assert report["errors"] == []
    # severity 2 = warning, 3 = error; "icon is recommended" (1) is only information
    assert [message for message in report["messages"] if message["severity"] >= 2] == []


def test_grafana_dashboard_configmap_carries_the_dashboard_file():
    objects = render({**PASSPHRASE, "grafanaDashboard": {"enabled": True}})
    dashboards = [
        obj for obj in by_kind(objects, "ConfigMap").values() if "bookstore.json" in obj["data"]
    ]
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["bookstore.json"] == (
        CHART / "dashboards" / "bookstore.json"
    ).read_text().rstrip("\n")
