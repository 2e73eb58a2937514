"""The spec as outside tools read it: Redocly's and Spectral's linters, and a TypeScript
client generated from it that must compile.

The tools are the npm packages pinned in openapi/tools/package-lock.json, which
bin/bootstrap installs into openapi/tools/node_modules (so CI, which runs bin/test, has
them); the linters read the repository's redocly.yaml and .spectral.yaml, as they do when
run by hand from the repository root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from common.config import REPO_ROOT
from common.schemas import SPEC_PATH

TOOLS = REPO_ROOT / "openapi" / "tools"
BIN = TOOLS / "node_modules" / ".bin"
USAGE = Path(__file__).parent / "typescript" / "usage.ts"
# Each tool is a Node.js process that parses the whole spec (tsc checks about 10,000
# lines of generated types): a minute or more each on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(400)
# No update checks or usage reports from inside CI.
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"}


def run(tool: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    executable = BIN / tool
    assert executable.exists(), f"{executable} is missing: run bin/bootstrap"
    return subprocess.run(
        [str(executable), *args],
        cwd=cwd,
        env={**os.environ, **QUIET},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_installed_tools_are_the_pinned_ones():
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    wanted = json.loads((TOOLS / "package.json").read_text())["devDependencies"]
    for name, version in wanted.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
        installed = json.loads((TOOLS / "node_modules" / name / "package.json").read_text())
        assert installed["version"] == version, f"{name}: run bin/bootstrap"


def test_redocly_recommended_rules_find_nothing():
    result = run("redocly", "lint", str(SPEC_PATH), "--format=json")
    report = json.loads(result.stdout)
    problems = [
        f"{problem['ruleId']}: {problem['message']} at {problem['location'][0]['pointer']}"
        for problem in report["problems"]
    ]
    assert problems == [], "\n".join(problems)
    assert result.returncode == 0, result.stderr
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}


def test_spectral_oas_ruleset_finds_nothing():
    result = run(
        "spectral", "lint", str(SPEC_PATH), "--format=json", "--fail-severity=hint", "--quiet"
    )
    findings = [
        f"{finding['code']}: {finding['message']} at {'.'.join(map(str, finding['path']))}"
        for finding in json.loads(result.stdout or "[]")
    ]
    assert findings == [], "\n".join(findings)
    assert result.returncode == 0, result.stderr


def test_the_spectral_ruleset_turns_off_only_rules_it_gives_a_reason_for():
    lines = (REPO_ROOT / ".spectral.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().endswith(": off"):
            assert lines[number - 1].strip().startswith("#"), line


def test_a_typescript_client_generated_from_the_spec_type_checks(tmp_path):
    generated = run("openapi-typescript", str(SPEC_PATH), "-o", str(tmp_path / "bookstore.d.ts"))
    assert generated.returncode == 0, generated.stdout + generated.stderr
    shutil.copy(USAGE, tmp_path / "usage.ts")
    # The usage file imports openapi-fetch, which lives with the pinned tools.
    tsconfig = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "ES2022",
            "module": "ESNext",
            "moduleResolution": "Bundler",
            "lib": ["ES2022", "DOM"],
            "types": [],
            "paths": {"openapi-fetch": [str(TOOLS / "node_modules" / "openapi-fetch")]},
        },
        "files": ["usage.ts", "bookstore.d.ts"],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(tsconfig))
    checked = run("tsc", "--project", str(tmp_path / "tsconfig.json"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
