"""Swagger UI in a real headless browser: it loads the spec and lists every operation.

Debian's chromium (bin/bootstrap installs it) runs the page's JavaScript, which fetches
/openapi.json and renders it; ``--dump-dom`` prints the DOM after ``--virtual-time-budget``
of page time, so no WebDriver is needed for a read-only check.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from common.schemas import spec_document

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _rendered_dom(url: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: run bin/bootstrap"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_swagger_ui_renders_every_operation_of_the_spec(platform):
    dom = _rendered_dom(f"{platform.base_url}/docs/")
    spec = spec_document()
    assert f">{html.escape(spec['info']['title'])}" in dom
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert operations
    for path, method, operation in operations:
        # Swagger UI gives each operation block the id operations-<tag>-<operationId>.
        block = re.search(
            rf'<div class="opblock opblock-{method}[^"]*" id="operations-[^"]*-'
            rf'{re.escape(operation["operationId"])}">',
            dom,
        )
        assert block, f"{method.upper()} {path} ({operation['operationId']}) is not rendered"
        assert f'data-path="{html.escape(path)}"' in dom
        if "summary" in operation:
            assert html.escape(operation["summary"], quote=False) in dom, operation["summary"]
