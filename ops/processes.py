"""Starting and stopping the platform's processes (used by ``bookstore run`` and tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

STOP_GRACE_SECONDS = 15


@dataclass
class ManagedProcess:
    """A child process whose output goes to a log file."""

    name: str
    command: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own commands
            self.command,
            env={**os.environ, **self.env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches the supervisor, which then
            # stops children in order instead of all dying at once.
            start_new_session=True,
        )
        log_file.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: the signal that killed it)."""
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def signal(self, signum: int) -> None:
        if self.running:
            self.process.send_signal(signum)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        if not self.running:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def request_stop(self) -> None:
        """SIGTERM without waiting (see :func:`stop_in_order`)."""
        self.signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        """Waits until the monotonic ``deadline`` for the process to exit, then kills it."""
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def stop_in_order(
    first: list[ManagedProcess], then: list[ManagedProcess], grace: float = STOP_GRACE_SECONDS
) -> None:
    """Stops ``first`` (the gateway: nothing new comes in), then every one of ``then``
    together: each service finishes its running workers at the same time as the others,
    instead of one after another (SIGKILL for any still running after ``grace``)."""
    for group in (first, then):
        for managed in group:
            managed.request_stop()
        deadline = time.monotonic() + grace
        for managed in group:
            managed.wait_or_kill(deadline)


def service_command(service: str) -> list[str]:
    """How one service is run, here, in tests and in containers (``bookstore run-service``)."""
    return [sys.executable, "-m", "ops.nameko_cli", "service", service]


def gateway_command() -> list[str]:
    return [sys.executable, "-m", "gateway"]


def service_process(
    service: str, log_dir: Path, env: Mapping[str, str], name: str | None = None
) -> ManagedProcess:
    """``name`` tells apart several instances of one service (their log files too)."""
    name = name or service
    return ManagedProcess(
        name=name,
        command=service_command(service),
        log_path=log_dir / f"{name}.log",
        env=dict(env),
    )


def gateway_process(log_dir: Path, env: Mapping[str, str]) -> ManagedProcess:
    return ManagedProcess(
        name="gateway",
        command=gateway_command(),
        log_path=log_dir / "gateway.log",
        env=dict(env),
    )


def wait_until_ready(base_url: str, processes: list[ManagedProcess], timeout: float) -> None:
    """Waits for the gateway's ``/ready``; fails early if a process dies meanwhile."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for managed in processes:
            if not managed.running:
                raise RuntimeError(
                    f"{managed.name} exited while starting; its log ends:\n{managed.log_tail()}"
                )
        try:
            response = requests.get(f"{base_url}/ready", timeout=5)
            if response.status_code == 200:
                return
            last = response.text
        except requests.RequestException as error:
            last = repr(error)
        time.sleep(0.5)
    raise TimeoutError(f"the platform was not ready within {timeout:g}s: {last}")
