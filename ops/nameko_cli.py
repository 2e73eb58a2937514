"""``python -m ops.nameko_cli``: nameko's own command line (``run``, ``shell``...) with
the known import-time notices silenced (see common/notices.py), and ``service <name>``,
which runs one of the platform's services with the nameko configuration its settings give
(common/config.py): a bad setting stops it before it starts, in one line."""

from __future__ import annotations

import sys

from common.notices import silence_import_notices

silence_import_notices()

if __name__ == "__main__" and sys.argv[1:2] in (["service"], ["run"]):
    # A service's process is green from the start, before anything creates a lock
    # (pydantic's models in the settings, logging's handlers): eventlet upgrades existing
    # locks by walking every object, which pydantic's placeholders refuse.
    import eventlet

    eventlet.monkey_patch()

import os  # noqa: E402
from pathlib import Path  # noqa: E402

from nameko.cli.main import main  # noqa: E402 - the filters must come first

from ops.instance import use_checkout_environment  # noqa: E402

#: Typed errors, a call timeout and method listings in ``shell`` (ops/operator_shell.py).
SHELL_STARTUP = Path(__file__).with_name("shell_startup.py")


def run_service(service: str) -> int:
    """Runs the service until it is stopped; 2 (and one line on stderr) if its settings
    are wrong or it is not a service."""
    from common.config import SERVICE_PACKAGES, InvalidSettings, settings_class

    if service not in SERVICE_PACKAGES:
        print(f"error: unknown service {service!r}", file=sys.stderr)
        return 2
    try:
        settings = settings_class(service).current()
    except InvalidSettings as error:
        print(f"error: {service}: {error}", file=sys.stderr)
        return 2
    import logging.config

    from nameko.cli.run import import_service, run

    config = settings.nameko_config()
    logging.config.dictConfig(config["LOGGING"])
    run(import_service(f"{SERVICE_PACKAGES[service]}.service"), config)
    return 0


if __name__ == "__main__":
    # .env.local, and this checkout's vhost and databases (ops/instance.py)
    use_checkout_environment(os.environ)
    if sys.argv[1:2] == ["service"] and len(sys.argv) == 3:
        sys.exit(run_service(sys.argv[2]))
    if sys.argv[1:2] == ["shell"]:
        os.environ.setdefault("PYTHONSTARTUP", str(SHELL_STARTUP))
    sys.exit(main())
