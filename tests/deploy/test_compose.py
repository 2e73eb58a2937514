"""docker-compose.yml and the Dockerfile agree with the code (no Docker engine here)."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import yaml

from common.config import REPO_ROOT, SERVICE_PACKAGES
from gateway.ratelimit import parse_limits
from ops import cli
from tests.deploy.code_facts import env_vars_read, parse_cli

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
INFRASTRUCTURE = {"rabbitmq", "postgres", "redis", "pgbouncer"}


def _bookstore_containers() -> dict[str, dict]:
    return {name: spec for name, spec in COMPOSE.items() if name not in INFRASTRUCTURE}


def test_every_service_the_gateway_and_migrations_run_from_the_one_image():
    containers = _bookstore_containers()
    assert set(containers) == {*SERVICE_PACKAGES, "gateway", "migrate"}
    assert set(COMPOSE) >= INFRASTRUCTURE
    images = {name: spec["image"] for name, spec in containers.items()}
    assert images.pop("search") == "bookstore-search:latest"
    assert containers["search"]["build"] == {"context": ".", "target": "search"}
    assert set(images.values()) == {"bookstore:latest"}
    readiness = ["CMD", "python", "-m", "ops.healthcheck", "--ready"]
    for service in SERVICE_PACKAGES:
        args = parse_cli(containers[service]["command"])
        assert args.handler is cli.run_service
        assert args.service == service
        assert containers[service]["healthcheck"]["test"] == readiness
        assert containers[service]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert parse_cli(containers["gateway"]["command"]).handler is cli.gateway
    assert containers["gateway"]["healthcheck"]["test"] == readiness
    assert parse_cli(containers["migrate"]["command"]).handler is cli.migrate


def test_environment_names_are_ones_the_code_reads():
    known = env_vars_read()
    for name, spec in _bookstore_containers().items():
        unknown = set(spec.get("environment", {})) - known
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"
    migrate_env = COMPOSE["migrate"]["environment"]
    for service in SERVICE_PACKAGES:
        assert f"{service.upper()}_DATABASE_URL" in migrate_env
    assert "AUTH_KEY_PASSPHRASE" in COMPOSE["auth"]["environment"]


def test_the_gateway_limits_rates_with_the_compose_redis():
    gateway = COMPOSE["gateway"]
    redis_url = urlparse(gateway["environment"]["GATEWAY_REDIS_URL"])
    assert redis_url.scheme == "redis"
    assert redis_url.hostname in COMPOSE  # the redis service, by its name
    assert gateway["depends_on"][redis_url.hostname] == {"condition": "service_healthy"}
    assert parse_limits(gateway["environment"]["GATEWAY_RATE_LIMITS"])


def test_the_env_scan_finds_what_the_code_reads():
    # Guards the check above against a scan that finds nothing and so passes everything.
    assert {"AMQP_URI", "GATEWAY_PORT", "CATALOG_DATABASE_URL", "METRICS_PORT"} <= env_vars_read()
    assert "NOT_A_SETTING" not in env_vars_read()


def test_dockerfile_ships_every_package_and_runs_unprivileged():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./\1$", dockerfile, re.MULTILINE))
    packages = {"common", "gateway", "ops", "openapi", *SERVICE_PACKAGES.values()}
    packages |= {path.name for path in REPO_ROOT.glob("svc_*") if path.is_dir()}
    assert packages <= copied, packages - copied
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert not copied & ignored
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.MULTILINE)
    assert "-r requirements.txt -c constraints.txt" in dockerfile
    assert re.search(
        r'^HEALTHCHECK .*\n\s+CMD \["python", "-m", "ops.healthcheck"\]$', dockerfile, re.M
    )
    # The image runs the platform: no test tools in it (localstripe is GPL, moto a fake AWS).
    assert "requirements-dev" not in dockerfile
    runtime = (REPO_ROOT / "requirements.txt").read_text()
    for machine_learning in ("pandas", "scikit-learn", "scipy", "numpy"):  # search image only
        assert not re.search(rf"^{machine_learning}\b", runtime, re.MULTILINE)
    for tool in ("pytest", "localstripe", "moto", "aiosmtpd", "schemathesis", "ruff"):
        assert not re.search(rf"^{tool}\b", runtime, re.MULTILINE), tool
    assert 'ENTRYPOINT ["bookstore"]' in dockerfile
    for variable in re.findall(r"^\s+([A-Z_]+)=", dockerfile, re.MULTILINE):
        if not variable.startswith(("PYTHON", "PIP_")):
            assert variable in env_vars_read(), variable


def test_pgbouncer_is_a_profile_in_front_of_postgres_and_migrations_bypass_it():
    pgbouncer = COMPOSE["pgbouncer"]
    assert pgbouncer["profiles"] == ["pgbouncer"]
    assert (
        "./deploy/pgbouncer/pgbouncer.ini:/etc/pgbouncer/pgbouncer.ini:ro" in pgbouncer["volumes"]
    )
    ini = (REPO_ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini").read_text()
    assert re.search(r"^\* = host=postgres port=5432$", ini, re.MULTILINE)
    assert re.search(r"^listen_port = 6432$", ini, re.MULTILINE)
    for service in SERVICE_PACKAGES:
        variable = f"{service.upper()}_DATABASE_URL"
        assert (
            "@${DATABASE_HOST:-postgres}:${DATABASE_PORT:-5432}/"
            in COMPOSE[service]["environment"][variable]
        )
        assert "@postgres:5432/" in COMPOSE["migrate"]["environment"][variable]
