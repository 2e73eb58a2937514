"""The container entry points: ``bookstore ping`` answers for a real service;
``bookstore run-service`` refuses a configuration unsafe for production."""

from __future__ import annotations

import os
import subprocess
import sys

from tests import harness


def _ping(env: dict[str, str], service: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "ping", service, "--timeout", "2"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ping_succeeds_for_a_running_service(platform):
    result = _ping(platform.env, "catalog")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "catalog: ok"


def test_ping_fails_when_no_instance_answers(platform):
    # A vhost where nothing runs: the broker is there, the service is not.
    vhost = f"{harness.VHOST}-empty"
    harness.rabbitmqctl("add_vhost", vhost)
    harness.rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        result = _ping({**platform.env, "AMQP_URI": harness.amqp_uri(vhost)}, "auth")
    finally:
        harness.rabbitmqctl("delete_vhost", vhost)
    assert result.returncode == 1
    assert result.stdout.startswith("auth: ")
    assert "ok" not in result.stdout


def test_ping_fails_when_the_broker_is_unreachable(platform):
    dead = harness.amqp_uri(port=harness.free_port())
    result = _ping({**platform.env, "AMQP_URI": dead}, "auth")
    assert result.returncode == 1
    assert "unreachable" in result.stdout


def test_migrate_without_a_database_says_so_in_one_line():
    port = harness.free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "migrate", "auth"],
        env={
            **os.environ,
            "AUTH_DATABASE_URL": f"postgresql+psycopg2://bookstore:s3cret@127.0.0.1:{port}/x",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: auth: its database postgresql+psycopg2://bookstore:***@")
    assert "AUTH_DATABASE_URL" in lines[0] and "Connection refused" in lines[0]
    assert "s3cret" not in result.stderr


def test_run_service_refuses_the_mock_provider_in_production():
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "run-service", "payment"],
        env={**os.environ, "BOOKSTORE_ENVIRONMENT": "production", "PAYMENT_PROVIDER": "mock"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: payment: PAYMENT_PROVIDER=mock takes no real payments")
