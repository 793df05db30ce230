"""Every relative link in README.md and docs/ leads to a file that exists, and its
``#anchor`` to a heading of that file (GitHub's heading slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_the_docs_exist() -> None:
    names = {p.name for p in PAGES}
    for name in ("configuration.md", "metrics.md", "operations.md", "wire.md", "deploy.md"):
        assert name in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {path}"


def test_wire_sections_keep_their_numbers() -> None:
    """The code cites docs/wire.md by section number."""
    headings = re.findall(
        r"^#{2,3} (\d+(?:\.\d+)?)\.? ", (ROOT / "docs" / "wire.md").read_text(), re.M
    )
    expected = ["1", "2", "2.1", "2.2", "2.3", "2.4", "2.5", "3", "3.1", "3.2", "3.3", "3.4"]
    assert headings == [*expected, "4", "5", "6", "7"]
