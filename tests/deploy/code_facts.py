"""What the code really reads and accepts, for checking deployment files against it."""

from __future__ import annotations

import argparse
import re
import shlex

from common.config import REPO_ROOT, SERVICE_PACKAGES
from common.metrics import _http_app
from ops.cli import parser
from ops.config_docs import settings_variables

_PYTHON_SOURCES = ("common", "gateway", "ops", *SERVICE_PACKAGES.values())
# os.environ["NAME"], os.environ.get("NAME"), NAME_ENV = "NAME": what tools and libraries
# read outside the settings classes.
_PYTHON_ENV = re.compile(r"""(?:os\.environ(?:\.get\(|\[)\s*|_ENV\s*=\s*)"([A-Z][A-Z0-9_]*)\"""")


def env_vars_read() -> set[str]:
    """Every environment variable name the platform reads: its settings classes
    (common/config.py), and the few that tools and libraries read directly."""
    names = {variable.name for variable in settings_variables()}
    for package in _PYTHON_SOURCES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            names |= set(_PYTHON_ENV.findall(path.read_text()))
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
