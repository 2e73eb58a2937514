"""``python -m ops.nameko_cli``: nameko's own command line (``run``, ``shell``...) with
the known import-time notices silenced (see common/notices.py)."""

from __future__ import annotations

import sys

from common.notices import silence_import_notices

silence_import_notices()

from nameko.cli.main import main  # noqa: E402 - the filters must come first

if __name__ == "__main__":
    sys.exit(main())
