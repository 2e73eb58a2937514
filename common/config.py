"""Configuration: environment variables over defaults, twelve-factor style.

Each service's ``config.yaml`` is the one place its settings and their defaults are
written (``${VAR:default}``, expanded by nameko's own YAML loader). Tools that need a
service's settings outside ``nameko run`` (migrations, seeding, tests) read the same file
through :func:`service_config`, so a default is never written twice.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from nameko.cli.main import setup_yaml_parser

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
#: development (the mock payment provider) are refused there. Anything else, or unset,
#: is a development or test environment.
ENVIRONMENT_ENV = "BOOKSTORE_ENVIRONMENT"
PRODUCTION = "production"


def is_production(config: Mapping[str, Any] | None = None) -> bool:
    """Whether this process runs in production: the service config's
    ``BOOKSTORE_ENVIRONMENT`` if it has one, else the environment variable."""
    value = (config or {}).get(ENVIRONMENT_ENV) or os.environ.get(ENVIRONMENT_ENV, "")
    return str(value).strip().lower() == PRODUCTION


@functools.cache
def _enable_env_var_yaml() -> None:
    setup_yaml_parser()


def load_yaml_config(path: Path) -> dict[str, Any]:
    """Loads a nameko config file, expanding ``${VAR:default}`` from the environment."""
    _enable_env_var_yaml()
    with path.open() as config_file:
        return yaml.safe_load(config_file)


def service_config_path(service: str) -> Path:
    return REPO_ROOT / SERVICE_PACKAGES[service] / "config.yaml"


def service_config(service: str) -> dict[str, Any]:
    return load_yaml_config(service_config_path(service))


def database_url(service: str) -> str:
    """The service's own database, as its config (and environment) says."""
    return service_config(service)["DB_URIS"][f"{service}:Base"]


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}
