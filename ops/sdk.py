"""``bookstore sdk``: a Python client generated from openapi/bookstore.yaml.

openapi-python-client writes a package (``bookstore_api_client``: typed models, one
module per operation, sync and async calls) plus a ``pyproject.toml``, so the result
can be installed or published as it is. Generation fails on any generator warning:
a warning means an operation or a schema was left out of the client, and an SDK that
silently lacks an endpoint is worse than none (docs/decisions/0025).

Two hand-written modules are then copied into the package (ops/sdk_overlay/):
``problems`` (every problem type raised as an exception of its own, from a client made
with ``problems.connect``) and ``pages`` (an iterator over every item of a paged list).
See docs/decisions/0121.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common.schemas import SPEC_PATH

#: The importable package the generator makes from the spec's title ("Bookstore API").
PACKAGE_NAME = "bookstore_api_client"
#: Project metadata the generator writes next to the package (a uv-built pyproject).
META = "uv"
#: Hand-written modules added to the generated package.
OVERLAY = Path(__file__).parent / "sdk_overlay"
#: The generator's own settings (content types it does not know, read as bytes).
GENERATOR_CONFIG = Path(__file__).parent / "sdk_config.yaml"


class SdkGenerationFailed(Exception):
    """The generator refused the spec, or warned that it left something out."""


def generate_sdk(output: Path, *, overwrite: bool = False, spec: Path = SPEC_PATH) -> Path:
    """Generates the client project into ``output``; returns the package's directory."""
    if importlib.util.find_spec("openapi_python_client") is None:
        raise SystemExit(
            "bookstore sdk needs the development tools: pip install -r requirements-dev.txt "
            "-c constraints.txt"
        )
    command = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(spec),
        "--output-path",
        str(output),
        "--meta",
        META,
        "--config",
        str(GENERATOR_CONFIG),
        "--fail-on-warning",
    ]
    if overwrite:
        command.append("--overwrite")
    # The generator formats its output with ruff, which it finds on PATH: ours sits next
    # to this interpreter, whether or not the virtualenv is activated.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command, env=env, capture_output=True, text=True, check=False
    )
    package = output / PACKAGE_NAME
    if completed.returncode != 0 or not package.is_dir():
        raise SdkGenerationFailed((completed.stdout + completed.stderr).strip())
    for module in sorted(OVERLAY.glob("*.py")):
        shutil.copyfile(module, package / module.name)
    return package
