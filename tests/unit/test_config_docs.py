"""The README's configuration table is what the settings classes say (ops/config_docs.py)."""

from __future__ import annotations

from ops import config_docs


def test_the_readme_table_is_generated_from_the_settings():
    readme = config_docs.README.read_text()
    assert config_docs.START in readme and config_docs.END in readme
    assert config_docs.with_table(readme) == readme, (
        "README.md's configuration table is stale: run python -m ops.config_docs"
    )


def test_every_variable_has_one_row_and_a_meaning():
    table = config_docs.render()
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(set(rows)), "a variable has two rows"
    for variable in config_docs.settings_variables():
        assert variable.description, f"{variable.name} says nothing about itself"
        assert f"| `{variable.row}` |" in table


def test_a_stale_table_is_noticed():
    readme = config_docs.README.read_text()
    stale = readme.replace("| `ORDER_CALL_TIMEOUT` | `5.0` |", "| `ORDER_CALL_TIMEOUT` | `9` |")
    assert stale != readme
    assert config_docs.with_table(stale) == readme
    removed = readme.replace(config_docs.render(), f"{config_docs.START}\n{config_docs.END}")
    assert config_docs.with_table(removed) == readme
