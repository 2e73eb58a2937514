"""``python -m ops.healthcheck [--ready]``: the image's HEALTHCHECK (and compose's).

One image runs every process, so the check asks PID 1 what it is: the gateway is asked
``/health`` (``/ready`` with ``--ready``) on its port, a nameko service ``/healthz``
(``/readyz``) on its metrics port; a one-shot (``migrate``) has nothing to check. Only the
standard library, so a check costs a Python start-up and one local HTTP request
(``bookstore ping`` cost about 0.9 CPU-s and 74 MB each time).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def check_url(pid1_argv: Sequence[str], environ: Mapping[str, str], ready: bool) -> str | None:
    """What to ask for this container's process, or None when it serves nothing."""
    if "gateway" in pid1_argv:
        path = "/ready" if ready else "/health"
        return f"http://127.0.0.1:{environ.get('GATEWAY_PORT', '8080')}{path}"
    if "ops.nameko_cli" in pid1_argv and environ.get("METRICS_PORT", "0") not in ("", "0"):
        path = "/readyz" if ready else "/healthz"
        return f"http://127.0.0.1:{environ['METRICS_PORT']}{path}"
    return None


def healthy(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - our own URL
            return answer.status == 200
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pid1 = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    url = check_url(pid1, os.environ, ready="--ready" in args)
    return 0 if url is None or healthy(url) else 1


if __name__ == "__main__":
    sys.exit(main())
