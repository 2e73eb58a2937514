"""The auth service's settings (common/config.py: read once, a bad value stops it)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr

from common.config import ServiceSettings, TokenSettings


class Settings(ServiceSettings, TokenSettings):
    service = "auth"

    key_passphrase: SecretStr = Field(
        validation_alias="AUTH_KEY_PASSPHRASE",
        min_length=1,
        description=(
            "encrypts the signing keys and two-factor secrets at rest "
            "(`bin/run` generates one into `.env.local`)"
        ),
    )
    access_token_ttl: int = Field(900, gt=0, description="seconds an access token lives")
    refresh_token_ttl: int = Field(604800, gt=0, description="seconds a refresh token lives")
    key_rotation_days: int = Field(
        30, gt=0, description="the signing key is rotated when older than this"
    )
    login_slow_after: int = Field(
        3, ge=1, description="failed logins of an account before each try is slowed down"
    )
    account_lock_after: int = Field(10, ge=1, description="failed logins that lock an account")
    address_lock_after: int = Field(
        50, ge=1, description="failed logins from one address that lock the address"
    )
    login_window_seconds: int = Field(
        900, gt=0, description="seconds over which failed logins are counted"
    )
    lock_seconds: int = Field(900, gt=0, description="seconds a lock lasts")
    totp_issuer: str = Field("Bookstore", description="shown in authenticator apps")

    @property
    def access_token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.access_token_ttl)

    @property
    def refresh_token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.refresh_token_ttl)

    @property
    def signing_key_max_age(self) -> timedelta:
        return timedelta(days=self.key_rotation_days)
