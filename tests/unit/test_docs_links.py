"""Every relative link in the repository's Markdown resolves to a file or folder that
exists: a document that points nowhere is a document that no longer tells the truth."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".venv", ".git", "node_modules", "results"}
# [text](target) and [text](target "title"); images too. Reference-style links are not used.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def markdown_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts)
    )


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


def test_the_repository_has_markdown_to_check():
    assert len(markdown_files()) > 20


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = [
        target
        for target in relative_links(path)
        if not (path.parent / target.split("#", 1)[0]).resolve().exists()
    ]
    assert broken == [], f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_decisions_named_anywhere_exist():
    """Code and configuration cite decisions by path (``docs/decisions/0003-....md``)."""
    named = re.compile(r"docs/decisions/(\d{4}-[a-z0-9-]+\.md)")
    decisions = ROOT / "docs" / "decisions"
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in ROOT.rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".txt", ""}
        and not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts)
        for name in named.findall(path.read_text(encoding="utf-8", errors="ignore"))
        if not (decisions / name).exists()
    }
    assert missing == set()
