"""How notifications leave: email over SMTP or Amazon SES, SMS over Amazon SNS, and
signed HTTP calls to webhook endpoints.

A sender returns the provider's message id, or raises. :class:`PermanentFailure` means
no retry can help (the message cannot be built); anything else is retried by the
dispatcher with backoff, then parked (svc_notify/dispatch.py).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import smtplib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from svc_notify.settings import Settings

#: The header that carries a webhook delivery's signature (documented in the OpenAPI
#: file's ``webhooks`` section): ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.
SIGNATURE_HEADER = "Bookstore-Signature"
#: How old a signature a receiver should accept, against replayed deliveries.
SIGNATURE_TOLERANCE_SECONDS = 300


class PermanentFailure(Exception):
    """Trying again cannot help: park at once."""


class WebhookFailed(Exception):
    """The endpoint did not take the delivery: a non-2xx answer, a redirect (never
    followed: the signature was for this URL), a timeout or no connection."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class EmailSender(Protocol):
    def send(self, to: str, subject: str, text: str, html: str) -> str: ...


class SmsSender(Protocol):
    def send(self, phone: str, text: str) -> str: ...


@dataclass
class SmtpEmail:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0

    def send(self, to: str, subject: str, text: str, html: str) -> str:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
        return message["Message-ID"]


@dataclass
class SesEmail:
    client: Any
    sender: str

    def send(self, to: str, subject: str, text: str, html: str) -> str:
        answer = self.client.send_email(
            Source=self.sender,
            Destination={"ToAddresses": [to]},
            Message={
                "Subject": {"Data": subject, "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": text, "Charset": "UTF-8"},
                    "Html": {"Data": html, "Charset": "UTF-8"},
                },
            },
        )
        return answer["MessageId"]


@dataclass
class SnsSms:
    client: Any

    def send(self, phone: str, text: str) -> str:
        answer = self.client.publish(
            PhoneNumber=phone,
            Message=text,
            # Order and payment news: the kind of SMS carriers deliver reliably.
            MessageAttributes={
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}
            },
        )
        return answer["MessageId"]


def email_sender(settings: Settings) -> EmailSender:
    """``NOTIFY_EMAIL_BACKEND``: ``smtp`` (the default) or ``ses``."""
    if settings.email_backend == "ses":
        return SesEmail(settings.aws_client("ses"), settings.email_from)
    return SmtpEmail(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.email_from,
        username=settings.smtp_username or None,
        password=settings.smtp_password.get_secret_value() or None,
        starttls=settings.smtp_starttls,
    )


# -- webhooks ------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: str) -> str:
    """HMAC-SHA256 of ``<timestamp>.<body>`` with the endpoint's secret, hex."""
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def signature_header(secret: str, body: str, now: float | None = None) -> str:
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: str,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does (and our tests): the header's timestamp is recent and one of
    its ``v1`` signatures matches (several during a secret rotation)."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    try:
        timestamp = int(next(value for key, value in parts if key == "t"))
    except (StopIteration, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in parts)


Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (empty when it does not resolve)."""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except (socket.gaierror, UnicodeError):
        return []


def refused_destination(
    url: str, resolve: Resolver = resolve_host, *, allow_loopback: bool = False
) -> str | None:
    """Why a webhook may not be sent to ``url``, or None. Webhooks go to the internet:
    an address on loopback, a private network, link-local (cloud metadata services at
    169.254.169.254) or any other non-public range would let whoever registers an
    endpoint make this service call inside our network (SSRF). Every address the name
    resolves to must be public (or, with ``allow_loopback``, on this machine)."""
    host = urlsplit(url).hostname
    if not host:
        return "the URL has no host"
    addresses = resolve(host)
    if not addresses:
        return f"{host} does not resolve"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if allow_loopback and ip.is_loopback:
            continue
        if not ip.is_global:
            return f"{host} resolves to {address}, which is not a public address"
    return None


@dataclass
class WebhookPoster:
    timeout: float
    session: requests.Session
    #: Private, loopback and link-local destinations allowed (development and tests).
    allow_private: bool = False
    #: Loopback destinations (only) allowed: a receiver on this machine (bin/run).
    allow_loopback: bool = False
    resolve: Resolver = resolve_host

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not receive webhooks here, or None (:func:`refused_destination`)."""
        if self.allow_private:
            return None
        return refused_destination(url, self.resolve, allow_loopback=self.allow_loopback)

    def post(self, url: str, secret: str, body: str, headers: dict[str, str]) -> int:
        """POSTs ``body`` signed; returns the 2xx status or raises :class:`WebhookFailed`."""
        # Checked again at every delivery: a name may point elsewhere since it was
        # registered (DNS rebinding). A name that changes between this check and the
        # connection is not caught; a proxy that pins addresses would be (not here).
        refused = self.refusal(url)
        if refused:
            raise WebhookFailed(f"destination refused: {refused}")
        signed = {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": "Bookstore-Webhooks/1",
            SIGNATURE_HEADER: signature_header(secret, body),
        }
        try:
            response = self.session.post(
                url, data=body.encode(), headers=signed, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout:
            raise WebhookFailed(f"no answer within {self.timeout:g}s") from None
        except requests.RequestException as error:
            raise WebhookFailed(f"could not connect: {type(error).__name__}") from None
        if response.is_redirect or 300 <= response.status_code < 400:
            location = response.headers.get("Location", "?")
            raise WebhookFailed(
                f"HTTP {response.status_code}: redirect to {location} not followed",
                response.status_code,
            )
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"HTTP {response.status_code}", response.status_code)
        return response.status_code
