"""bin/run's mail catcher keeps what it is sent, and `bookstore mail` reads it back: a real
SMTP conversation with it over loopback (ops/mailcatcher.py)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from ops.mailcatcher import _KeepEach, caught
from tests.harness import free_port


def _send(port: int, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "Bookstore <no-reply@bookstore.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


def test_caught_emails_are_listed_oldest_first_filtered_and_shown(tmp_path):
    port = free_port()
    controller = Controller(_KeepEach(tmp_path), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        _send(port, "ada@example.com", "Confirm your address", "token=abc_DEF-1\n")
        _send(port, "bob@example.com", "Your order", "Thanks\n")
    finally:
        controller.stop()
    mails = caught(tmp_path)
    assert [mail.number for mail in mails] == [1, 2]
    assert "ada@example.com  Confirm your address" in mails[0].summary()
    only_ada = caught(tmp_path, to="ADA@example.com")
    assert [mail.message["Subject"] for mail in only_ada] == ["Confirm your address"]
    shown = only_ada[0].text()
    assert "To: ada@example.com" in shown
    assert "token=abc_DEF-1" in shown
    assert list(tmp_path.glob("*.tmp")) == []


def test_no_directory_means_no_emails(tmp_path):
    assert caught(tmp_path / "never-made") == []
