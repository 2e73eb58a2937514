"""``python -m gateway``: serve the gateway with uvicorn (never monkey-patched)."""

from __future__ import annotations

import uvicorn

from common.logging import logging_config
from gateway.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config("gateway"),
        access_log=False,  # RequestContextMiddleware writes one JSON line per request
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
