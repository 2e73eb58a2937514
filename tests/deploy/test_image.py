"""What the lean image runs never imports the ML stack, and the image's health check asks
the right process (no Docker engine here: the same code, run as the container would)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.config import SERVICE_PACKAGES
from ops.healthcheck import check_url, healthy
from ops.processes import gateway_command, service_command
from tests import harness

MACHINE_LEARNING = ("numpy", "pandas", "scipy", "sklearn")
# Every module a process of the lean image starts from: services but search, the gateway,
# the CLI and migrations (which import every service's models and migrations).
LEAN_MODULES = [
    "gateway.app",
    "ops.cli",
    "ops.databases",
    "svc_search.models",
    *(f"{package}.service" for name, package in SERVICE_PACKAGES.items() if name != "search"),
]


@pytest.mark.parametrize("module", LEAN_MODULES)
def test_the_lean_image_processes_never_import_the_ml_stack(module):
    script = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(sorted({{name.split('.')[0] for name in sys.modules}} & {set(MACHINE_LEARNING)!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_the_check_guard_itself_sees_the_ml_stack():
    script = "import sys, svc_search.service; print('sklearn' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"


def test_the_health_check_asks_whichever_process_pid_1_is():
    env = {"GATEWAY_PORT": "8080", "METRICS_PORT": "9100"}
    assert check_url(gateway_command(), env, ready=False) == "http://127.0.0.1:8080/health"
    assert check_url(gateway_command(), env, ready=True) == "http://127.0.0.1:8080/ready"
    catalog = service_command("catalog")
    assert check_url(catalog, env, ready=False) == "http://127.0.0.1:9100/healthz"
    assert check_url(catalog, env, ready=True) == "http://127.0.0.1:9100/readyz"
    migrate = [sys.executable, "/usr/local/bin/bookstore", "migrate"]
    assert check_url(migrate, env, ready=False) is None


def test_the_health_check_passes_on_a_live_gateway_and_fails_on_a_dead_port(platform):
    assert healthy(f"{platform.base_url}/health")
    assert healthy(f"{platform.base_url}/ready")
    assert not healthy(f"http://127.0.0.1:{harness.free_port()}/health", timeout=1)
