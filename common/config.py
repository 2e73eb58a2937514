"""Configuration: environment variables over defaults, twelve-factor style, read one way.

Every process's settings are a typed pydantic-settings class, read from the environment
once when the process starts (docs/decisions/0110):

- :class:`SharedSettings` holds what every process reads (the broker, the log level,
  the environment); :class:`AwsSettings` and :class:`TokenSettings` what some share.
- :class:`ServiceSettings` adds what every service has under its own prefix (its
  database, workers, pool, metrics port); each ``svc_*/settings.py`` composes these with
  its own fields, and ``gateway/settings.py`` does the same for the gateway.
- A default is written once, on its field. A bad value stops the process before it
  starts, with one line naming the variable (:class:`InvalidSettings`).
- Nameko's own configuration (``AMQP_URI``, ``DB_URIS``, ``max_workers``, logging) is
  built from the settings (:meth:`ServiceSettings.nameko_config`), not read from a file.

The README's configuration table is generated from these classes (ops/config_docs.py).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The services that exist, by RPC name, and the package that implements each.
SERVICE_PACKAGES: dict[str, str] = {
    "auth": "svc_auth",
    "catalog": "svc_catalog",
    "order": "svc_order",
    "payment": "svc_payment",
    "search": "svc_search",
    "notify": "svc_notify",
    "bridge": "svc_bridge",
    "analytics": "svc_analytics",
}

#: ``production`` where real customers and money are: settings that are only safe for
#: development (the mock payment provider) are refused there.
ENVIRONMENT_ENV = "BOOKSTORE_ENVIRONMENT"
PRODUCTION = "production"

DATABASE_URL_TEMPLATE = (
    "postgresql+psycopg2://bookstore:bookstore@127.0.0.1:5432/bookstore_{service}"
)


class InvalidSettings(Exception):
    """A setting has a value the process cannot run with; ``str()`` is one line naming the
    variable, what it was given and what is expected."""


class Settings(BaseSettings):
    """The base of every settings class: immutable, read from the environment.

    A variable set to the empty string (``VAR=`` in a compose file) means the default for
    a number or a flag, as it always did here; for text it is the empty text (an empty
    ``GATEWAY_REDIS_URL`` turns rate limiting off) and for a choice it is refused (the
    chart's empty ``PAYMENT_PROVIDER``: someone must choose)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    _current: ClassVar[dict[type, Settings]] = {}

    @model_validator(mode="before")
    @classmethod
    def _empty_number_or_flag_is_unset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        scalar_keys = set()
        for name, info in cls.model_fields.items():
            if info.annotation in (int, float, bool):
                scalar_keys |= {name, info.validation_alias}
        return {
            key: value for key, value in values.items() if not (value == "" and key in scalar_keys)
        }

    @classmethod
    def load(cls) -> Self:
        """The settings as the environment says now; :class:`InvalidSettings` if a value
        is wrong."""
        try:
            return cls()
        except ValidationError as error:
            raise InvalidSettings(describe(cls, error)) from None

    @classmethod
    def current(cls) -> Self:
        """The settings this process started with (loaded on first use, then kept)."""
        if cls not in Settings._current:
            Settings._current[cls] = cls.load()
        return Settings._current[cls]  # type: ignore[return-value]

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable a field is read from."""
        info = cls.model_fields[field]
        if isinstance(info.validation_alias, str):
            return info.validation_alias
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def describe(cls: type[Settings], error: ValidationError) -> str:
    """The bad values on one line, each naming its variable, what it was given and what
    is expected (``ORDER_CALL_TIMEOUT='5s': Input should be a valid number...``); a rule
    across settings (a model validator) gives its own message."""
    parts = []
    for problem in error.errors(include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:
            parts.append(message)
            continue
        name = str(problem["loc"][0])
        variable = cls.variable(name) if name in cls.model_fields else name
        if problem["type"] == "missing":
            parts.append(f"{variable} is not set: it is required")
        else:
            parts.append(f"{variable}={problem['input']!r}: {message}")
    return "; ".join(parts)


class SharedSettings(Settings):
    """What every process reads, under the same names everywhere."""

    amqp_uri: str = Field(
        "pyamqp://guest:guest@127.0.0.1:5672//",
        validation_alias="AMQP_URI",
        description="RabbitMQ (with `BOOKSTORE_INSTANCE`: vhost `bookstore-<instance>`)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias="LOG_LEVEL", description="every process's log level"
    )
    environment: str = Field(
        "development",
        validation_alias=ENVIRONMENT_ENV,
        description=(
            "`production` refuses development-only settings at start-up "
            "(`PAYMENT_PROVIDER=mock`); the chart and ECS files set it"
        ),
    )

    @property
    def is_production(self) -> bool:
        return self.environment.strip().lower() == PRODUCTION


class AwsSettings(Settings):
    """Where AWS is, for the services that use it. Credentials come the usual boto3 way
    (task role, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``)."""

    aws_region: str = Field("eu-west-1", validation_alias="AWS_REGION", description="AWS region")
    aws_endpoint_url: str = Field(
        "",
        validation_alias="AWS_ENDPOINT_URL",
        description=(
            "empty: AWS itself; set for moto/LocalStack (`bin/run` starts moto and sets it "
            "when it is empty)"
        ),
    )

    def aws_client(self, name: str, **options: Any) -> Any:
        """A boto3 client for ``name`` (``events``, ``ses``...) in this region and endpoint."""
        import boto3

        return boto3.client(
            name,
            region_name=self.aws_region or None,
            endpoint_url=self.aws_endpoint_url or None,
            **options,
        )


class TokenSettings(Settings):
    """The access-token contract between svc_auth (which signs) and the gateway (which
    verifies): both read the same variables."""

    token_issuer: str = Field(
        "bookstore-auth", validation_alias="AUTH_TOKEN_ISSUER", description="`iss` of tokens"
    )
    token_audience: str = Field(
        "bookstore-api", validation_alias="AUTH_TOKEN_AUDIENCE", description="`aud` of tokens"
    )


class ServiceSettings(SharedSettings):
    """What every service has, under its own prefix (``ORDER_DATABASE_URL``...). A
    subclass names its ``service``; its own fields take the same prefix."""

    service: ClassVar[str] = "<service>"

    database_url: str = Field(
        DATABASE_URL_TEMPLATE.format(service="<service>"),
        description="the service's own PostgreSQL database",
    )
    max_workers: int = Field(10, gt=0, description="concurrent workers per instance")
    db_pool_size: int = Field(
        10,
        ge=0,
        description=(
            "PostgreSQL connections the workers' pool keeps (below, "
            '"PostgreSQL connections"; docs/decisions/0096)'
        ),
    )
    db_max_overflow: int = Field(0, ge=0, description="connections the pool may add in a burst")
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "0: `METRICS_PORT` decides; else this service's `/metrics`, `/healthz`, `/readyz` "
            "port (one machine, several services)"
        ),
    )
    any_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        validation_alias="METRICS_PORT",
        description=(
            "0: no metrics/probe server (`9100` in the image): `/metrics`, `/healthz` "
            "(liveness), `/readyz` (readiness: the database answers)"
        ),
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "service" in cls.__dict__:
            cls.model_config = {**cls.model_config, "env_prefix": f"{cls.service.upper()}_"}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "service" in cls.__dict__:
            # The one default, written above, with the service's own database name.
            cls.model_fields["database_url"].default = DATABASE_URL_TEMPLATE.format(
                service=cls.service
            )
            cls.model_rebuild(force=True)

    @property
    def serving_metrics_port(self) -> int:
        """The port of the metrics/probe server (0: none): the service's own wins."""
        return self.metrics_port or self.any_metrics_port

    def nameko_config(self) -> dict[str, Any]:
        """What nameko and its extensions read from ``container.config``."""
        from common.db import MAX_OVERFLOW_KEY, POOL_SIZE_KEY
        from common.logging import logging_config

        return {
            "AMQP_URI": self.amqp_uri,
            "max_workers": self.max_workers,
            POOL_SIZE_KEY: self.db_pool_size,
            MAX_OVERFLOW_KEY: self.db_max_overflow,
            "DB_URIS": {f"{self.service}:Base": self.database_url},
            "LOGGING": logging_config(self.service, self.log_level),
        }


@functools.cache
def _database_settings(service: str) -> type[ServiceSettings]:
    """The shared part of one service's settings alone: tools that need its database
    need not be given every secret the service itself requires."""
    return type(f"{service.title()}DatabaseSettings", (ServiceSettings,), {"service": service})


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's own settings class: ``Settings`` in ``svc_<service>/settings.py``
    (a nameko service outside the platform, such as a test's probe: the shared part)."""
    if service not in SERVICE_PACKAGES:
        return _database_settings(service)
    return importlib.import_module(f"{SERVICE_PACKAGES[service]}.settings").Settings


def database_url(service: str) -> str:
    """The service's own database, as the environment says now."""
    return _database_settings(service).load().database_url


def service_config(service: str) -> dict[str, Any]:
    """The nameko configuration the service runs with, from the environment now."""
    return _database_settings(service).load().nameko_config()
