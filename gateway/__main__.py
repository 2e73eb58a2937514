"""``python -m gateway``: serve the gateway with uvicorn (never monkey-patched)."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile

import uvicorn

from common.config import InvalidSettings
from common.logging import logging_config
from gateway.metrics import MULTIPROCESS_DIR_ENV
from gateway.settings import Settings

WORKER_HEALTHCHECK_SECONDS = 60


def raise_open_files_limit() -> None:
    """Every client connection is a file descriptor: the soft limit (often 1,024) would
    refuse connections long before memory or CPU run out, so take what the hard limit
    allows (inherited by the workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    if soft < target:
        # If the kernel's own ceiling is lower, keep what we have.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main() -> int:
    try:
        settings = Settings.current()
    except InvalidSettings as error:
        print(f"error: gateway: {error}", file=sys.stderr)
        return 2
    raise_open_files_limit()
    if settings.workers > 1 and not os.environ.get(MULTIPROCESS_DIR_ENV):
        # Each worker process writes its metrics here; any worker's scrape sums them.
        # The workers are spawned (not forked), so they import prometheus-client afresh
        # with this set.
        os.environ[MULTIPROCESS_DIR_ENV] = tempfile.mkdtemp(prefix="bookstore-gateway-metrics-")
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config("gateway", settings.log_level),
        access_log=False,  # RequestContextMiddleware writes one JSON line per request
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # uvicorn restarts a worker that does not answer its supervisor (or finish
        # startup) in time; its default of 5 s killed busy workers over and over on a
        # loaded 2-core machine, where importing and loading the spec alone takes longer.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
