"""Swagger UI and the spec are served; `bookstore run` starts and stops cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import requests

from common.config import SERVICE_PACKAGES
from tests.harness import free_port


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


def test_run_command_starts_everything_and_ctrl_c_stops_it(platform, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        **platform.env,
        "GATEWAY_PORT": str(port),
        "BOOKSTORE_ADMIN_PASSWORD": "an admin password for this test",
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
        ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        children = subprocess.run(
            ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == len(SERVICE_PACKAGES) + 1, "every service and the gateway"

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
