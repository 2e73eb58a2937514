"""The official AsyncAPI JSON Schema, from a pinned npm package (``@asyncapi/specs``, the
AsyncAPI Initiative's own), fetched once with npm and kept under ``var/cache/npm``.

The version and the registry's sha512 integrity are pinned here as a lockfile would pin
them: a tarball that does not match is refused, not used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from typing import Any

from common.config import REPO_ROOT

PACKAGE = "@asyncapi/specs"
VERSION = "6.11.1"
INTEGRITY = (
    "sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/"
    "klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="
)
CACHE = REPO_ROOT / "var" / "cache" / "npm"
TARBALL = CACHE / f"asyncapi-specs-{VERSION}.tgz"


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def schema(asyncapi_version: str = "3.0.0") -> dict[str, Any]:
    """The JSON Schema (draft-07, every definition bundled by ``$id``) of one AsyncAPI
    version, as the pinned package ships it."""
    if not TARBALL.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed once to fetch the AsyncAPI schema (bin/bootstrap)")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(CACHE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    data = TARBALL.read_bytes()
    if _integrity(data) != INTEGRITY:
        TARBALL.unlink()
        raise RuntimeError(f"{TARBALL.name} does not match the pinned integrity; removed it")
    with tarfile.open(TARBALL) as archive:
        member = archive.extractfile(f"package/schemas/{asyncapi_version}.json")
        assert member is not None
        return json.load(member)
