"""The world outside the platform, run on loopback by the tests: AWS (moto in server
mode: EventBridge, SQS, SES, SNS) and a real SMTP server (aiosmtpd) that keeps what it
receives."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3
from aiosmtpd.controller import Controller

from ops import standins
from ops.processes import ManagedProcess

#: Any credentials do for moto; real ones must never be used by tests.
AWS_TEST_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


class SmtpServer:
    """A real SMTP server on ``127.0.0.1:port``; ``stop()`` and ``start()`` again on the
    same port to play an outage."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.inbox.lock:
            return [message for message in self.inbox.messages if message["To"] == address]


def moto_process(port: int, log_dir: Path) -> ManagedProcess:
    return standins.local_aws_process(port, log_dir, env=AWS_TEST_ENV, name="moto")


def aws(service: str, endpoint: str | None) -> Any:
    """A boto3 client of moto's ``service`` (``endpoint`` None: moto in this process)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=AWS_TEST_ENV["AWS_REGION"],
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )
