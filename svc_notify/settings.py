"""The notify service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from common.config import AwsSettings, ServiceSettings


class Settings(ServiceSettings, AwsSettings):
    service = "notify"

    email_backend: Literal["smtp", "ses"] = Field(
        "smtp", description="`smtp`, or `ses`: Amazon SES"
    )
    email_from: str = Field(
        "Bookstore <no-reply@bookstore.example>", description="the sender of every email"
    )
    admin_email: str = Field(
        "",
        description=(
            "where operations news goes (analytics anomalies); empty: such emails are "
            "skipped, and audited as skipped"
        ),
    )
    smtp_host: str = Field(
        "127.0.0.1",
        description="`bin/run` starts a mail catcher and sets host and port when both are unset",
    )
    smtp_port: int = Field(25, gt=0, le=65535, description="the SMTP server's port")
    smtp_username: str = Field("", description="empty: no login")
    smtp_password: SecretStr = Field(SecretStr(""), description="with the username")
    smtp_starttls: bool = Field(False, description="upgrade the connection with STARTTLS")
    web_url: str = Field("http://127.0.0.1:8080", description="links in emails")
    max_attempts: int = Field(
        6, ge=1, description="tries per email, SMS or webhook call, then parked"
    )
    retry_base_seconds: float = Field(
        30.0, gt=0, description="backoff with jitter from here (docs/decisions/0040)"
    )
    retry_max_seconds: float = Field(3600.0, gt=0, description="the longest wait between tries")
    reconcile_interval: float = Field(
        600.0,
        ge=0,
        description=(
            "seconds between comparisons of the people notify holds data of with auth's "
            "accounts, forgetting deleted ones (`0`: only `bookstore reconcile notify-recipients`)"
        ),
    )
    webhook_timeout: float = Field(5.0, gt=0, description="seconds per webhook call")
    webhook_allow_private: bool = Field(
        False,
        description=(
            "`false`: webhooks go only to public addresses (`true`: any address; the tests set it)"
        ),
    )
    webhook_allow_loopback: bool = Field(
        False,
        description=(
            "`true` lets webhooks reach this machine (127.0.0.1, ::1) and no other private "
            "address (`bin/run --allow-loopback-webhooks`)"
        ),
    )
    poll_seconds: float = Field(1.0, gt=0, description="seconds between looks for due deliveries")
    send_concurrency: int = Field(4, ge=1, description="senders per instance")
    call_timeout: float = Field(5.0, gt=0, description="seconds per call to auth or order")
