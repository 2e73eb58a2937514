"""Silences two known import-time notices, which would break one-JSON-object-per-line
logs: eventlet announcing its deprecation, nameko 2.14 importing ``pkg_resources`` and
connexion importing starlette's test client.
All three are pinned on purpose (docs/decisions/0002-dependencies.md).

Imports nothing heavy, so entry points can call it before eventlet is imported.
"""

from __future__ import annotations

import warnings


def silence_import_notices() -> None:
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
