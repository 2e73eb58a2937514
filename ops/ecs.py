"""``python -m ops.ecs``: ECS (Fargate) task definitions for every process of the
platform, generated from one description (deploy/ecs/platform.yaml).

Each output file is the input of ``aws ecs register-task-definition --cli-input-json``.
The services come from ``SERVICE_PACKAGES``, so a new service gets its task definition
from the same rules as the others; tests validate every file against botocore's own ECS
model and fail when the checked-in files differ from what this module generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.notices import silence_import_notices

silence_import_notices()

import yaml  # noqa: E402

from common.config import REPO_ROOT, SERVICE_PACKAGES  # noqa: E402

ECS_DIR = REPO_ROOT / "deploy" / "ecs"
DESCRIPTION = ECS_DIR / "platform.yaml"
GATEWAY_PORT = 8080
# Container health checks replace a task that fails them, so they are liveness checks:
# this process answers (the gateway's /health, a service's own event loop on /healthz),
# never "every dependency is up", which would replace healthy tasks during an outage.
_HTTP_CHECK = (
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3)"
)


def load_description(path: Path = DESCRIPTION) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _secret(description: dict[str, Any], name: str) -> dict[str, str]:
    # <secret ARN>:<json key>:<version stage>:<version id>; empty parts mean "current".
    return {"name": name, "valueFrom": f"{description['secret_arn']}:{name}::"}


def production_refusal(description: dict[str, Any]) -> str | None:
    """The generator refuses to write task definitions that would take fake payments in
    production (the payment service would refuse to start with them anyway)."""
    environment = description["environment"]
    if (
        str(environment.get("BOOKSTORE_ENVIRONMENT", "")).lower() == "production"
        and environment.get("PAYMENT_PROVIDER", "mock") == "mock"
    ):
        return (
            "PAYMENT_PROVIDER=mock takes no real payments and is refused with "
            "BOOKSTORE_ENVIRONMENT=production: set PAYMENT_PROVIDER: stripe (and the payment "
            "service's secrets STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET)"
        )
    return None


def _task(
    description: dict[str, Any],
    name: str,
    command: list[str],
    size: dict[str, Any],
    secrets: list[str],
    health_check: dict[str, Any] | None,
    port: int | None,
) -> dict[str, Any]:
    environment = {**description["environment"], **size.get("environment", {})}
    if port == GATEWAY_PORT:
        environment |= {"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": str(GATEWAY_PORT)}  # noqa: S104
    elif port is not None:
        environment["METRICS_PORT"] = str(port)
    container: dict[str, Any] = {
        "name": name,
        # The search service's image adds the ML stack (the Dockerfile's search target).
        "image": description["search_image"] if name == "search" else description["image"],
        "essential": True,
        "command": command,
        "user": "10001",
        "readonlyRootFilesystem": True,
        # A private, writable /tmp on a read-only root (eventlet and uvicorn use it).
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp"}],  # noqa: S108
        "environment": [{"name": key, "value": str(value)} for key, value in environment.items()],
        "secrets": [_secret(description, secret) for secret in secrets],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": description["log_group"],
                "awslogs-region": description["region"],
                "awslogs-stream-prefix": name,
                "awslogs-create-group": "true",
            },
        },
        # nameko finishes running workers on SIGTERM; the default is 30 s as well.
        "stopTimeout": 30,
    }
    if port is not None:
        container["portMappings"] = [{"containerPort": port, "protocol": "tcp"}]
    if health_check is not None:
        container["healthCheck"] = health_check
    return {
        "family": f"{description['family_prefix']}-{name}",
        "taskRoleArn": description["task_role_arn"],
        "executionRoleArn": description["execution_role_arn"],
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        "cpu": str(size["cpu"]),
        "memory": str(size["memory"]),
        "volumes": [{"name": "tmp"}],
        "containerDefinitions": [container],
    }


def _http_health_check(port: int, path: str) -> dict[str, Any]:
    return {
        "command": ["CMD", "python", "-c", _HTTP_CHECK.format(port=port, path=path)],
        "interval": 15,
        "timeout": 5,
        "retries": 3,
        "startPeriod": 30,
    }


def task_definitions(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task definition name -> RegisterTaskDefinition input, for every process."""
    refusal = production_refusal(description)
    if refusal is not None:
        raise ValueError(refusal)
    metrics_port = description["metrics_port"]
    definitions: dict[str, dict[str, Any]] = {}
    for service in SERVICE_PACKAGES:
        size = {**description["service_defaults"], **description["services"].get(service, {})}
        definitions[service] = _task(
            description,
            service,
            ["run-service", service],
            size,
            ["AMQP_URI", f"{service.upper()}_DATABASE_URL", *size["secrets"]],
            _http_health_check(metrics_port, "/healthz"),
            metrics_port,
        )
    definitions["gateway"] = _task(
        description,
        "gateway",
        ["gateway"],
        description["gateway"],
        ["AMQP_URI", *description["gateway"].get("secrets", [])],
        _http_health_check(GATEWAY_PORT, "/health"),
        GATEWAY_PORT,
    )
    definitions["migrate"] = _task(
        description,
        "migrate",
        ["migrate"],
        description["migrate"],
        [f"{service.upper()}_DATABASE_URL" for service in SERVICE_PACKAGES],
        None,
        None,
    )
    return definitions


def render(definition: dict[str, Any]) -> str:
    return json.dumps(definition, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(prog="python -m ops.ecs", description=__doc__)
    arguments.add_argument("--description", type=Path, default=DESCRIPTION)
    arguments.add_argument("--out", type=Path, default=ECS_DIR)
    args = arguments.parse_args(argv)
    try:
        definitions = task_definitions(load_description(args.description))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for stale in set(args.out.glob("*.json")) - {args.out / f"{n}.json" for n in definitions}:
        stale.unlink()
    for name, definition in definitions.items():
        (args.out / f"{name}.json").write_text(render(definition))
        print(f"{args.out / name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
