"""What the code really reads and accepts, for checking deployment files against it."""

from __future__ import annotations

import argparse
import re
import shlex

from common.config import REPO_ROOT, SERVICE_PACKAGES
from common.metrics import _http_app
from ops.cli import parser

_PYTHON_SOURCES = ("common", "gateway", "ops", *SERVICE_PACKAGES.values())
# env_str("NAME", ...), os.environ["NAME"], os.environ.get("NAME"), NAME_ENV = "NAME"
_PYTHON_ENV = re.compile(
    r"""(?:env_(?:str|int|float|bool)\(\s*|os\.environ(?:\.get\(|\[)\s*|_ENV\s*=\s*)"([A-Z][A-Z0-9_]*)\""""
)
# ${NAME:default} in nameko config files
_CONFIG_ENV = re.compile(r"\$\{([A-Z][A-Z0-9_]*)[:}]")


def env_vars_read() -> set[str]:
    """Every environment variable name the platform's code or service configs read."""
    names: set[str] = set()
    for package in _PYTHON_SOURCES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            names |= set(_PYTHON_ENV.findall(path.read_text()))
    for package in SERVICE_PACKAGES.values():
        names |= set(_CONFIG_ENV.findall((REPO_ROOT / package / "config.yaml").read_text()))
    return names


def parse_cli(argv: list[str]) -> argparse.Namespace:
    """Parses a container command as ``bookstore`` would; fails the test if it cannot."""
    if argv and argv[0] == "bookstore":
        argv = argv[1:]
    try:
        return parser().parse_args(argv)
    except SystemExit as error:
        raise AssertionError(f"`bookstore {shlex.join(argv)}` is not a valid command") from error


def metrics_server_status(path: str) -> str:
    """What a service's metrics/health server (common/metrics.py) answers for ``path``."""
    statuses: list[str] = []
    _http_app(lambda *_: [b""])(
        {"PATH_INFO": path}, lambda status, _headers: statuses.append(status)
    )
    return statuses[0]
