"""Swagger UI and the spec are served; `bookstore run` starts, restarts a service that
dies, and stops cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from urllib.parse import unquote

import pytest
import requests

from common.config import SERVICE_PACKAGES
from tests.harness import amqp_uri, free_port, rabbitmqctl
from tests.support import eventually


def test_spec_and_swagger_ui_are_served(api):
    base = api.platform.base_url
    spec = requests.get(f"{base}/openapi.json", timeout=10)
    assert spec.status_code == 200
    assert spec.json()["openapi"] == "3.1.0"
    assert spec.json()["servers"] == [{"url": "/api/v1"}]
    assert requests.get(f"{base}/openapi.yaml", timeout=10).text.startswith("openapi: 3.1.0")

    redirect = requests.get(f"{base}/docs", timeout=10, allow_redirects=False)
    assert redirect.status_code == 308
    page = requests.get(f"{base}/docs/", timeout=10)
    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert "/openapi.json" in page.text
    bundle = requests.get(f"{base}/docs/swagger-ui-bundle.js", timeout=10)
    assert bundle.status_code == 200
    assert len(bundle.content) > 100_000


@pytest.fixture
def run_vhost(platform):
    """A RabbitMQ vhost of its own for ``bookstore run`` under test, so that only its
    own services answer its gateway's pings (not the suite's platform)."""
    vhost = f"{unquote(platform.amqp_uri.rsplit('/', 1)[1])}-run"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield amqp_uri(vhost)
    with contextlib.suppress(subprocess.CalledProcessError):
        rabbitmqctl("delete_vhost", vhost)


@pytest.mark.timeout(420)
def test_run_command_starts_everything_restarts_what_dies_and_ctrl_c_stops_it(
    platform, run_vhost, tmp_path
):
    port = free_port()
    env = {
        **os.environ,
        **platform.env,
        "AMQP_URI": run_vhost,
        "GATEWAY_PORT": str(port),
        "BOOKSTORE_ADMIN_PASSWORD": "an admin password for this test",
        "NOTIFY_WEBHOOK_ALLOW_PRIVATE": "",  # bin/run's own default: the guard on
    }
    output = tmp_path / "run.log"
    with output.open("w") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "run", "--books", "5", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "The bookstore is running" not in output.read_text():
            assert supervisor.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.5)
        assert "Webhooks    to public addresses only (--allow-loopback" in output.read_text()
        ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        children = subprocess.run(
            ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == len(SERVICE_PACKAGES) + 1, "every service and the gateway"

        # A crashed service is started again, and the supervisor says so.
        order = next(
            pid for pid in children if "ops.nameko_cli service order" in _command_line(pid)
        )
        os.kill(int(order), signal.SIGKILL)
        eventually(
            lambda: _assert_in("order was killed by SIGKILL", output.read_text()), timeout=30
        )
        eventually(lambda: _assert_in("order restarted (pid", output.read_text()), timeout=30)
        eventually(lambda: _assert_ready(f"http://127.0.0.1:{port}/ready"), timeout=60)
        children = subprocess.run(
            ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == len(SERVICE_PACKAGES) + 1, "the new order service among them"
        assert order not in children

        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=60) == 0
        assert "Stopped." in output.read_text()
        for child in children:
            assert not os.path.exists(f"/proc/{child}"), f"process {child} outlived Ctrl-C"
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            raise AssertionError("the gateway still answers")
        except requests.ConnectionError:
            pass
    finally:
        # Children run in process groups of their own: a failed assertion above must
        # not leave them serving (and consuming) on the test vhost for the next run.
        leftovers = subprocess.run(
            ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for child in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)


def _command_line(pid: str) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode()


def _assert_in(part: str, text: str) -> None:
    assert part in text, text


def _assert_ready(url: str) -> None:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
