"""A second checkout on the same machine starts a platform of its own with `bin/run`
(its own databases and RabbitMQ vhost, named by BOOKSTORE_INSTANCE in the .env.local it
generates), and a passphrase that cannot open its keys stops `bin/run` at once with the
way out (docs/decisions/0091). The "clone" is this checkout's tracked files (what `git
clone` gives, uncommitted changes included) sharing this checkout's .venv."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import uuid

import pytest
import requests
from sqlalchemy import create_engine, text

from common.config import REPO_ROOT, SERVICE_PACKAGES, database_url
from ops import databases
from tests.harness import free_port, rabbitmqctl
from tests.support import eventually

#: What would tie the clone to the suite's platform or to this checkout's .env.local.
FOREIGN = re.compile(r"^(AMQP_URI|.*_DATABASE_URL|AUTH_KEY_PASSPHRASE|BOOKSTORE_.*|GATEWAY_.*)$")


@pytest.fixture
def clone(tmp_path):
    checkout = tmp_path / "bookstore"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (raw.decode() for raw in files)):
        if (REPO_ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, checkout / name)
    (checkout / ".venv").symlink_to(REPO_ROOT / ".venv")
    yield checkout
    instance = _instance(checkout)
    if instance:
        for service in ("auth", "catalog", "order", "payment", "search", "notify", "bridge"):
            name = f"bookstore_{instance}_{service}"
            with _maintenance() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        with contextlib.suppress(subprocess.CalledProcessError):
            rabbitmqctl("delete_vhost", f"bookstore-{instance}")


@pytest.mark.timeout(480)
def test_a_second_clone_runs_a_platform_of_its_own(clone, tmp_path):
    port = free_port()
    output = tmp_path / "run.log"
    run = _bin_run(clone, port, output)
    try:
        eventually(lambda: _assert_running(run, output), timeout=240)
        instance = _instance(clone)
        assert instance and instance.startswith("bookstore_"), (clone / ".env.local").read_text()
        said = output.read_text()
        assert f"Instance {instance} (.env.local)" in said
        assert f"RabbitMQ vhost bookstore-{instance}" in said
        ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        with _maintenance() as connection:
            names = connection.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE :pattern"),
                {"pattern": f"bookstore\\_{instance}\\_%"},
            ).all()
        assert len(names) == len(SERVICE_PACKAGES), names

        # The local stand-ins: the verification email is read from the mail catcher, and
        # the registration's event arrives at the (local) EventBridge rule's queue.
        email = "second-clone@example.com"
        # Password hashing is slow on a busy machine: a 504 is retried with the same
        # Idempotency-Key, as the problem says is safe.
        key = str(uuid.uuid4())
        eventually(lambda: _assert_registered(port, email, key), timeout=60)
        shown = eventually(
            lambda: _assert_said(clone, "verify-email?token=", "mail", "--to", email, "--last"),
            timeout=60,
        )
        token = re.search(r"verify-email\?token=(\S+)", shown).group(1)
        verified = requests.post(
            f"http://127.0.0.1:{port}/api/v1/auth/verify-email", json={"token": token}, timeout=10
        )
        assert verified.status_code == 204, verified.text
        eventually(
            lambda: _assert_said(clone, "bookstore.auth  user.registered", "events"), timeout=60
        )
    finally:
        _stop(run)

    # The passphrase changes (a lost .env.local, say): bin/run says why it cannot start
    # and how to recover, before starting anything.
    env_file = clone / ".env.local"
    env_file.write_text(
        re.sub(r"AUTH_KEY_PASSPHRASE=.*", "AUTH_KEY_PASSPHRASE=another", env_file.read_text())
    )
    refused = _bin_run(clone, port, output)
    assert refused.wait(timeout=120) == 2, output.read_text()
    said = output.read_text()
    assert "auth cannot start" in said
    assert "set AUTH_KEY_PASSPHRASE back" in said
    assert "bookstore reset-signing-keys" in said
    assert "Starting auth" not in said


def _bin_run(clone, port, output) -> subprocess.Popen:
    env = {name: value for name, value in os.environ.items() if not FOREIGN.match(name)}
    with output.open("w") as log:
        return subprocess.Popen(
            [str(clone / "bin" / "run"), "--books", "5", "--port", str(port)],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _assert_registered(port: int, email: str, key: str) -> None:
    registered = requests.post(
        f"http://127.0.0.1:{port}/api/v1/auth/register",
        json={"email": email, "password": "correct horse battery", "accept_terms": True},
        headers={"Idempotency-Key": key},
        timeout=30,
    )
    assert registered.status_code == 202, registered.text


def _assert_said(clone, expected: str, *command: str) -> str:
    env = {name: value for name, value in os.environ.items() if not FOREIGN.match(name)}
    said = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-m", "ops.cli", *command],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert expected in said.stdout, said.stdout + said.stderr
    return said.stdout


def _assert_running(run: subprocess.Popen, output) -> None:
    assert run.poll() is None, output.read_text()
    assert "The bookstore is running" in output.read_text()


def _stop(run: subprocess.Popen) -> None:
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
    # Children have process groups of their own (ops/processes.py).
    leftovers = subprocess.run(
        ["pgrep", "-P", str(run.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for child in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)


def _instance(clone) -> str | None:
    env_file = clone / ".env.local"
    if not env_file.exists():
        return None
    found = re.search(r"^BOOKSTORE_INSTANCE=(\S+)$", env_file.read_text(), re.MULTILINE)
    return found.group(1) if found else None


@contextlib.contextmanager
def _maintenance():
    engine = create_engine(
        databases._server_url(database_url("auth")), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
