"""The local mail catcher of ``bin/run``: an SMTP server (aiosmtpd) on loopback that keeps
every message it is sent as a file under ``var/mail/``, and what ``bookstore mail`` reads
them with (docs/decisions/0090). Nothing leaves the machine.

``python -m ops.mailcatcher PORT DIR`` serves until SIGTERM.
"""

from __future__ import annotations

import email
import email.policy
import signal
import sys
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from common.config import REPO_ROOT

MAIL_DIR = REPO_ROOT / "var" / "mail"


class _KeepEach:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        # Nanoseconds first: file names sort by arrival; .tmp then rename, so a reader
        # never sees half a message.
        name = f"{time.time_ns()}-{threading.get_ident()}"
        partial = self.directory / f"{name}.tmp"
        partial.write_bytes(envelope.content)
        partial.rename(self.directory / f"{name}.eml")
        return "250 OK: kept"


def serve(port: int, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(_KeepEach(directory), hostname="127.0.0.1", port=port)
    controller.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(f"mail catcher: smtp://127.0.0.1:{port}, keeping messages in {directory}", flush=True)
    stopped.wait()
    controller.stop()


@dataclass(frozen=True)
class CaughtMail:
    number: int  # 1 = the oldest
    path: Path
    message: EmailMessage

    @property
    def received(self) -> str:
        seconds = int(self.path.name.split("-", 1)[0]) / 1e9
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

    def summary(self) -> str:
        return f"{self.number:>4}  {self.received}  {self.message['To']}  {self.message['Subject']}"

    def text(self) -> str:
        """The headers that matter and the plain-text body."""
        body = self.message.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else ""
        headers = "".join(
            f"{name}: {self.message[name]}\n"
            for name in ("From", "To", "Subject", "Date")
            if self.message[name] is not None
        )
        return f"{headers}\n{content}"


def caught(directory: Path = MAIL_DIR, to: str | None = None) -> list[CaughtMail]:
    """Every kept message, oldest first (``to``: only those sent to that address)."""
    paths = sorted(directory.glob("*.eml")) if directory.exists() else []
    mails = [
        CaughtMail(
            number,
            path,
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default),
        )
        for number, path in enumerate(paths, start=1)
    ]
    if to:
        mails = [mail for mail in mails if to.lower() in str(mail.message["To"]).lower()]
    return mails


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
