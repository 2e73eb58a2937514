"""Operators use ``nameko shell``: the services answer there like they do over HTTP."""

from __future__ import annotations

import subprocess
import sys

import yaml


def nameko_shell(platform, tmp_path, commands: str) -> str:
    config = tmp_path / "shell.yaml"
    config.write_text(yaml.safe_dump({"AMQP_URI": platform.amqp_uri}))
    completed = subprocess.run(
        [sys.executable, "-m", "ops.nameko_cli", "shell", "--config", str(config)],
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout + completed.stderr


def test_operator_reads_and_lists_the_catalog(api, tmp_path):
    product = api.create_product(title="Operators Read This")
    output = nameko_shell(
        api.platform,
        tmp_path,
        f'print("TITLE", n.rpc.catalog.get_product("{product["id"]}")["title"])\n'
        'print("COUNT", len(n.rpc.catalog.list_products(limit=5)["items"]))\n'
        'print("PING", n.rpc.auth.ping()["status"])\n',
    )
    assert "TITLE Operators Read This" in output
    assert "COUNT 1" in output
    assert "PING ok" in output


def test_operator_changes_are_validated_like_rest_calls(api, tmp_path):
    output = nameko_shell(
        api.platform,
        tmp_path,
        "import common.errors\n"
        "try:\n"
        '    n.rpc.catalog.create_product({"title": "No ISBN"})\n'
        "except common.errors.InvalidInput as error:\n"
        '    print("REFUSED", error.detail)\n'
        "\n",
    )
    assert "REFUSED" in output
    assert "isbn13" in output
    assert api.all_products() == []
