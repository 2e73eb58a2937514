"""``python -m ops.nameko_cli``: nameko's own command line (``run``, ``shell``...) with
the known import-time notices silenced (see common/notices.py)."""

from __future__ import annotations

import sys

from common.notices import silence_import_notices

silence_import_notices()

import os  # noqa: E402
from pathlib import Path  # noqa: E402

from nameko.cli.main import main  # noqa: E402 - the filters must come first

from ops.instance import use_checkout_environment  # noqa: E402

#: Typed errors, a call timeout and method listings in ``shell`` (ops/operator_shell.py).
SHELL_STARTUP = Path(__file__).with_name("shell_startup.py")

if __name__ == "__main__":
    # .env.local, and this checkout's vhost and databases (ops/instance.py)
    use_checkout_environment(os.environ)
    if sys.argv[1:2] == ["shell"]:
        os.environ.setdefault("PYTHONSTARTUP", str(SHELL_STARTUP))
    sys.exit(main())
