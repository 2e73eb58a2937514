"""A process started with a bad setting refuses to start, saying in one line which
variable is wrong and what it expects (common/config.py). Started the way ``bin/run``,
the test platform and the containers start them (ops/processes.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops.processes import ManagedProcess, gateway_process, service_process

EXIT_TIMEOUT_SECONDS = 60


def _exit_and_log(process: ManagedProcess) -> tuple[int, list[str]]:
    process.start()
    try:
        returncode = process.process.wait(EXIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.stop()
        pytest.fail(f"{process.name} started despite a bad setting:\n{process.log_tail()}")
    return returncode, process.log_path.read_text().splitlines()


@pytest.mark.parametrize(
    ("service", "variable", "value", "expected"),
    [
        ("order", "ORDER_CALL_TIMEOUT", "5s", "Input should be a valid number"),
        ("auth", "AUTH_LOGIN_WINDOW_SECONDS", "15m", "Input should be a valid integer"),
        ("notify", "NOTIFY_EMAIL_BACKEND", "pigeon", "Input should be 'smtp' or 'ses'"),
    ],
)
def test_a_service_with_a_bad_value_refuses_to_start_in_one_line(
    tmp_path: Path, service: str, variable: str, value: str, expected: str
):
    env = {variable: value, "AUTH_KEY_PASSPHRASE": "a passphrase for the test"}
    returncode, lines = _exit_and_log(service_process(service, tmp_path, env))
    assert returncode == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {service}: {variable}={value!r}: {expected}")


def test_auth_without_its_passphrase_refuses_to_start(tmp_path: Path):
    returncode, lines = _exit_and_log(
        service_process("auth", tmp_path, {"AUTH_KEY_PASSPHRASE": ""})
    )
    assert returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: auth: AUTH_KEY_PASSPHRASE=''")


def test_the_gateway_with_a_bad_value_refuses_to_start_in_one_line(tmp_path: Path):
    returncode, lines = _exit_and_log(gateway_process(tmp_path, {"GATEWAY_CACHE_TTL": "soon"}))
    assert returncode == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: gateway: GATEWAY_CACHE_TTL='soon': Input should be")


def test_the_container_entry_point_says_the_same(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "run-service", "search"],
        env={"PATH": "/usr/bin:/bin", "SEARCH_TRAIN_INTERVAL": "-5"},
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: search: SEARCH_TRAIN_INTERVAL='-5': Input should be greater than or equal to 0"
    ]
