"""The Markdown outside the docs site keeps its links: mkdocs (`make docs`) checks docs/, this
checks the files GitHub renders from the repository root."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# [text](target) and [text](target "title"); images too.
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FILES = ["README.md", "CHANGELOG.md", "docker/README.md"]


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # code is not a link
    return [
        target
        for target in _LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


def _anchors(path: Path) -> set[str]:
    """Heading ids as GitHub and mkdocs make them: lower case, punctuation dropped, spaces
    to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", h.lower()).strip()) for h in headings}


@pytest.mark.parametrize("name", _FILES)
def test_every_anchor_names_a_heading(name: str) -> None:
    path = ROOT / name
    broken = []
    for target in _relative_links(path):
        file, _, anchor = target.partition("#")
        if anchor and file.endswith(".md") and anchor not in _anchors(path.parent / file):
            broken.append(target)
    assert broken == [], f"{name} links to missing headings: {broken}"


@pytest.mark.parametrize("name", _FILES)
def test_every_relative_link_resolves(name: str) -> None:
    path = ROOT / name
    broken = [
        target
        for target in _relative_links(path)
        if not (path.parent / target.split("#", 1)[0]).exists()
    ]
    assert broken == [], f"{name} links to missing files: {broken}"


def test_the_readme_links_into_the_docs_and_stays_an_entry_point() -> None:
    readme = ROOT / "README.md"
    links = _relative_links(readme)
    assert any(link.startswith("docs/") for link in links)
    assert len(readme.read_text().splitlines()) <= 250


def test_the_link_finder_sees_links() -> None:
    """Guards the check above against a regex that silently matches nothing."""
    sample = ROOT / "README.md"
    assert "docs/getting-started.md" in _relative_links(sample)
