"""The chart is safe to install in production as it stands (issue 14): no fake payments
by default, the restricted pod security level, least-privilege networking, disruption
budgets, an IRSA-ready service account, no operational route on the Internet, and a
values schema that refuses what would undo these."""

from __future__ import annotations

import configparser
import copy
from typing import Any

import helm_python
import pytest
import requests

from common.config import REPO_ROOT, SERVICE_PACKAGES
from tests.deploy.helm import PASSPHRASE, RELEASE, by_kind, component, render
from tests.deploy.pod_security import violations

ROLE_ARN = "arn:aws:iam::123456789012:role/bookstore-shop"


def _values(**overrides: Any) -> dict[str, Any]:
    values = copy.deepcopy(PASSPHRASE)
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value}
    return values


def _pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]
        for obj in objects
        if obj["kind"] in {"Deployment", "Job"}
    }


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render(PASSPHRASE)


def test_every_pod_meets_the_restricted_pod_security_level(default):
    pods = _pod_specs(default)
    assert len(pods) == len(SERVICE_PACKAGES) + 2  # services, gateway, migration job
    assert {name: violations(pod) for name, pod in pods.items()} == {name: [] for name in pods}


def test_the_restricted_check_refuses_what_the_level_refuses(default):
    pod = copy.deepcopy(_pod_specs(default)[f"{RELEASE}-bookstore-catalog"])
    del pod["securityContext"]["seccompProfile"]
    pod["containers"][0]["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})
    assert violations(pod) == [
        "hostPath volume: host",
        "volume type ['hostPath']: host",
        "seccompProfile not RuntimeDefault or Localhost: catalog",
        "capabilities not dropping ALL: catalog",
    ]


def test_the_payment_provider_is_a_choice_and_never_the_mock_in_production():
    without_choice = copy.deepcopy(PASSPHRASE)
    del without_choice["config"]
    with pytest.raises(helm_python.HelmError, match=r"config\.PAYMENT_PROVIDER is required"):
        render(without_choice)
    with pytest.raises(helm_python.HelmError, match="PAYMENT_PROVIDER=mock takes no real"):
        render(_values(config={"PAYMENT_PROVIDER": "mock"}))

    staging = render(
        {
            "secrets": {"AUTH_KEY_PASSPHRASE": "x"},
            "config": {"PAYMENT_PROVIDER": "mock", "BOOKSTORE_ENVIRONMENT": "staging"},
        }
    )
    (secret,) = by_kind(staging, "Secret").values()
    assert "STRIPE_API_KEY" not in secret["stringData"]


def test_stripe_keys_reach_the_payment_pods_only(default):
    (config,) = by_kind(default, "ConfigMap").values()
    assert config["data"]["BOOKSTORE_ENVIRONMENT"] == "production"
    assert config["data"]["PAYMENT_PROVIDER"] == "stripe"
    for name, pod in _pod_specs(default).items():
        names = {entry["name"] for entry in pod["containers"][0].get("env", [])}
        stripe = {"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"} & names
        assert stripe == (
            {"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"} if "payment" in name else set()
        )


def test_pods_run_as_the_release_service_account_with_the_irsa_role():
    objects = render(_values(serviceAccount={"roleArn": ROLE_ARN}))
    (account,) = by_kind(objects, "ServiceAccount").values()
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert account["automountServiceAccountToken"] is False
    for obj in by_kind(objects, "Deployment").values():
        pod = obj["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
    # The hook runs before the account exists, and needs no AWS access.
    (job,) = by_kind(objects, "Job").values()
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    with pytest.raises(helm_python.HelmError, match="roleArn"):
        render(_values(serviceAccount={"roleArn": "not-an-arn"}))


def test_every_deployment_has_a_disruption_budget(default):
    budgets = {component(obj): obj for obj in by_kind(default, "PodDisruptionBudget").values()}
    deployments = {component(obj): obj for obj in by_kind(default, "Deployment").values()}
    assert set(budgets) == set(deployments)
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["selector"]["matchLabels"] == selector


def _policies(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component(obj): obj["spec"] for obj in by_kind(objects, "NetworkPolicy").values()}


def _egress_ports(policy: dict[str, Any]) -> set[int]:
    return {port["port"] for rule in policy["egress"] for port in rule["ports"]}


def test_network_policies_let_only_the_gateway_in_and_each_pod_out_to_what_it_uses(default):
    policies = _policies(default)
    assert set(policies) == {*SERVICE_PACKAGES, "gateway", "migrate"}
    for name, policy in policies.items():
        assert policy["policyTypes"] == ["Ingress", "Egress"], "default deny both ways"
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == name
    (gateway_in,) = policies["gateway"]["ingress"]
    assert gateway_in["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert _egress_ports(policies["gateway"]) == {53, 5672, 5671, 6379}
    for service in SERVICE_PACKAGES:
        (scrapes,) = policies[service]["ingress"]
        assert scrapes["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        outside = _egress_ports(policies[service]) - {53, 5672, 5671, 5432}
        calls_out = service in {"payment", "notify", "bridge"}  # Stripe, SES/SNS, EventBridge
        assert outside == ({443} if calls_out else set()), service
    assert "ingress" not in policies["migrate"]
    assert _egress_ports(policies["migrate"]) == {53, 5432}


def test_network_policy_peers_can_be_narrowed():
    broker = [{"ipBlock": {"cidr": "10.0.8.0/24"}}]
    ingress_controller = [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}]
    objects = render(
        _values(networkPolicy={"rabbitmq": {"ports": [{"port": 5671}], "to": broker},
                               "gatewayFrom": ingress_controller})
    )  # fmt: skip
    policies = _policies(objects)
    assert policies["gateway"]["ingress"][0]["from"] == ingress_controller
    assert {"ports": [{"port": 5671}], "to": broker} in policies["catalog"]["egress"]
    assert not by_kind(render(_values(networkPolicy={"enabled": False})), "NetworkPolicy")


def test_the_service_monitor_scrapes_the_gateway_and_every_service():
    objects = render(_values(serviceMonitor={"enabled": True}))
    (monitor,) = [obj for obj in objects if obj["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    ports = {endpoint["port"]: endpoint["path"] for endpoint in monitor["spec"]["endpoints"]}
    assert ports == {"http": "/metrics", "metrics": "/metrics"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped: dict[str, set[str]] = {}
    for service in by_kind(objects, "Service").values():
        labels = service["metadata"]["labels"]
        assert all(labels.get(key) == value for key, value in selector.items())
        scraped[component(service)] = {port["name"] for port in service["spec"]["ports"]}
    assert scraped == {"gateway": {"http"}, **{name: {"metrics"} for name in SERVICE_PACKAGES}}


def test_the_ingress_routes_the_api_and_not_the_operational_routes(platform):
    objects = render(_values(gateway={"ingress": {"enabled": True}}))
    (ingress,) = by_kind(objects, "Ingress").values()
    paths = ingress["spec"]["rules"][0]["http"]["paths"]

    def routed(path: str) -> bool:
        return any(
            path == rule["path"]
            if rule["pathType"] == "Exact"
            else path.startswith(rule["path"].rstrip("/") + "/") or path == rule["path"].rstrip("/")
            for rule in paths
        )

    for public in ("/api/v1/products", "/api/v1/webhooks/stripe", "/docs/", "/openapi.json"):
        assert routed(public), public
    for private in ("/metrics", "/health", "/ready", "/"):
        assert not routed(private), private
    # ...and the gateway really serves what the Ingress routes.
    for public in ("/api/v1/products", "/docs/", "/openapi.json", "/openapi.yaml"):
        assert requests.get(f"{platform.base_url}{public}", timeout=10).status_code == 200
    everything = {"enabled": True, "paths": [{"path": "/", "pathType": "Prefix"}]}
    with pytest.raises(helm_python.HelmError, match="paths"):
        render(_values(gateway={"ingress": everything}))


RUNTIME_DEFAULT = {"type": "RuntimeDefault"}
DROP_ALL = {"drop": ["ALL"]}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"podSecurityContext": {"runAsNonRoot": False, "seccompProfile": RUNTIME_DEFAULT}},
         "runAsNonRoot"),
        ({"podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}}},
         "seccompProfile"),
        ({"containerSecurityContext": {"allowPrivilegeEscalation": True, "capabilities": DROP_ALL}},
         "allowPrivilegeEscalation"),
        ({"config": {"PAYMENT_PROVIDER": "paypal"}}, "PAYMENT_PROVIDER"),
        ({"gateway": {"workers": 4}}, "workers"),
        ({"servicAccount": {"create": True}}, "servicAccount"),
    ],
)  # fmt: skip
def test_the_values_schema_refuses_unsafe_or_mistyped_values(values, field):
    with pytest.raises(helm_python.HelmError, match=field):
        render({**PASSPHRASE, **values})


def test_only_the_search_service_runs_the_image_with_the_ml_stack(default):
    images = {
        component(obj): obj["spec"]["template"]["spec"]["containers"][0]["image"]
        for obj in by_kind(default, "Deployment").values()
    }
    assert images.pop("search") == "bookstore-search:0.1.0"
    assert set(images.values()) == {"bookstore:0.1.0"}


def _ini(text: str) -> configparser.ConfigParser:
    config = configparser.ConfigParser(inline_comment_prefixes=(";",))
    config.optionxform = str
    config.read_string(text)
    return config


def test_pgbouncer_sits_between_the_services_and_postgresql():
    objects = render(_values(pgbouncer={"enabled": True}))
    (secret,) = by_kind(objects, "Secret").values()
    urls = secret["stringData"]
    bouncer = f"@{RELEASE}-bookstore-pgbouncer:6432/"
    for service in SERVICE_PACKAGES:
        assert bouncer in urls[f"{service.upper()}_DATABASE_URL"]
        assert "@postgresql:5432/" in urls[f"MIGRATE_{service.upper()}_DATABASE_URL"]
    (job,) = by_kind(objects, "Job").values()
    for entry in job["spec"]["template"]["spec"]["containers"][0]["env"]:
        if entry["name"].endswith("_DATABASE_URL"):  # the hook creates databases: directly
            assert entry["valueFrom"]["secretKeyRef"]["key"].startswith("MIGRATE_")

    pods = _pod_specs(objects)
    assert violations(pods[f"{RELEASE}-bookstore-pgbouncer"]) == []
    policies = _policies(objects)
    assert 5432 not in _egress_ports(policies["catalog"])
    assert 6432 in _egress_ports(policies["catalog"])
    assert _egress_ports(policies["pgbouncer"]) == {53, 5432}
    assert "pgbouncer" in {
        component(obj) for obj in by_kind(objects, "PodDisruptionBudget").values()
    }

    # The chart's PgBouncer is configured as the one the tests run (test_pgbouncer.py).
    (config,) = [
        obj
        for obj in by_kind(objects, "ConfigMap").values()
        if obj["metadata"]["name"].endswith("-pgbouncer")
    ]
    chart = _ini(config["data"]["pgbouncer.ini"])["pgbouncer"]
    tested = _ini((REPO_ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini").read_text())["pgbouncer"]
    for setting in (
        "pool_mode",
        "auth_type",
        "default_pool_size",
        "reserve_pool_size",
        "max_db_connections",
        "server_idle_timeout",
        "ignore_startup_parameters",
    ):
        assert chart[setting] == tested[setting], setting  # fmt: skip
