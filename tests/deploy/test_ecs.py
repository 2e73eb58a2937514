"""deploy/ecs: one Fargate task definition per process, valid for the ECS API itself."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

from common.config import SERVICE_PACKAGES
from gateway.ratelimit import parse_limits
from ops import cli, ecs
from tests.deploy.code_facts import env_vars_read, metrics_server_status, parse_cli

INPUT_SHAPE = (
    botocore.session.get_session()
    .get_service_model("ecs")
    .operation_model("RegisterTaskDefinition")
    .input_shape
)
# Fargate's CPU units -> the memory sizes (MiB) it accepts with them (AWS's table, small end).
FARGATE_SIZES = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
}
CHECKED_IN = {path.stem: json.loads(path.read_text()) for path in ecs.ECS_DIR.glob("*.json")}


def _container(definition: dict[str, Any]) -> dict[str, Any]:
    (container,) = definition["containerDefinitions"]
    return container


def test_the_checked_in_files_are_what_the_description_generates():
    generated = ecs.task_definitions(ecs.load_description())
    assert set(generated) == {*SERVICE_PACKAGES, "gateway", "migrate"}
    for name, definition in generated.items():
        path = ecs.ECS_DIR / f"{name}.json"
        assert path.read_text() == ecs.render(definition), f"run: python -m ops.ecs ({name})"
    assert set(CHECKED_IN) == set(generated)


@pytest.mark.parametrize("name", sorted(CHECKED_IN))
def test_valid_register_task_definition_input(name):
    definition = CHECKED_IN[name]
    validate_parameters(definition, INPUT_SHAPE)
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    assert int(definition["memory"]) in FARGATE_SIZES[int(definition["cpu"])]
    container = _container(definition)
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logs["options"])
    known = env_vars_read()
    assert {entry["name"] for entry in container["environment"]} <= known
    for secret in container["secrets"]:
        assert secret["name"] in known
        assert re.fullmatch(
            rf"arn:aws:secretsmanager:[a-z0-9-]+:\d{{12}}:secret:[\w/+=.@-]+:{secret['name']}::",
            secret["valueFrom"],
        )
    assert container["user"] != "0"


def test_commands_and_health_checks_are_real():
    for service in SERVICE_PACKAGES:
        container = _container(CHECKED_IN[service])
        args = parse_cli(container["command"])
        assert (args.handler, args.service) == (cli.run_service, service)
        check = " ".join(container["healthCheck"]["command"])
        port = container["portMappings"][0]["containerPort"]
        path = re.search(rf"http://127\.0\.0\.1:{port}(/\w+)", check).group(1)
        assert metrics_server_status(path) == "200 OK"
        names = {secret["name"] for secret in container["secrets"]}
        assert {"AMQP_URI", f"{service.upper()}_DATABASE_URL"} <= names
        metrics = {entry["name"]: entry["value"] for entry in container["environment"]}
        assert metrics["METRICS_PORT"] == str(port)
    gateway = _container(CHECKED_IN["gateway"])
    assert parse_cli(gateway["command"]).handler is cli.gateway
    assert "http://127.0.0.1:8080/health'" in " ".join(gateway["healthCheck"]["command"])
    assert {secret["name"] for secret in gateway["secrets"]} == {"AMQP_URI", "GATEWAY_REDIS_URL"}
    gateway_env = {entry["name"]: entry["value"] for entry in gateway["environment"]}
    # Behind the load balancer: clients' addresses come from X-Forwarded-For, believed
    # only from inside the VPC; the limits parse as the gateway parses them.
    assert ipaddress.ip_network(gateway_env["GATEWAY_FORWARDED_ALLOW_IPS"]).is_private
    assert parse_limits(gateway_env["GATEWAY_RATE_LIMITS"])
    migrate = _container(CHECKED_IN["migrate"])
    assert parse_cli(migrate["command"]).handler is cli.migrate
    assert {secret["name"] for secret in migrate["secrets"]} == {
        f"{service.upper()}_DATABASE_URL" for service in SERVICE_PACKAGES
    }


def test_the_validator_rejects_what_ecs_would():
    # Guards the check above against validating nothing.
    broken = json.loads(json.dumps(CHECKED_IN["gateway"]))
    broken["cpu"] = 512  # a string in the API
    broken["containerDefinitions"][0]["healthCheck"]["intervall"] = 5
    with pytest.raises(ParamValidationError) as error:
        validate_parameters(broken, INPUT_SHAPE)
    assert "cpu" in str(error.value)
    assert "intervall" in str(error.value)


def test_production_task_definitions_take_real_payments_only():
    description = ecs.load_description()
    environments = {
        name: {entry["name"]: entry["value"] for entry in _container(definition)["environment"]}
        for name, definition in CHECKED_IN.items()
    }
    assert environments["payment"]["BOOKSTORE_ENVIRONMENT"] == "production"
    assert environments["payment"]["PAYMENT_PROVIDER"] == "stripe"
    stripe_keys = {"STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"}
    for name, definition in CHECKED_IN.items():
        secrets = {secret["name"] for secret in _container(definition)["secrets"]}
        assert secrets & stripe_keys == (stripe_keys if name == "payment" else set()), name
    description["environment"]["PAYMENT_PROVIDER"] = "mock"
    with pytest.raises(ValueError, match="PAYMENT_PROVIDER=mock takes no real payments"):
        ecs.task_definitions(description)
    description["environment"]["BOOKSTORE_ENVIRONMENT"] = "staging"
    assert ecs.task_definitions(description)["payment"]


def test_only_the_search_task_runs_the_image_with_the_ml_stack():
    images = {name: _container(definition)["image"] for name, definition in CHECKED_IN.items()}
    assert images.pop("search").endswith("/bookstore-search:0.1.0")
    assert {image.rsplit("/", 1)[1] for image in images.values()} == {"bookstore:0.1.0"}
