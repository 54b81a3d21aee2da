"""The README stays a user guide (at most 500 lines; the rest is in docs/), and no link in it or
in docs/ points at a file or heading that is not there."""

from __future__ import annotations

import re
from pathlib import Path

TOP = Path(__file__).parent.parent
PAGES = [TOP / "README.md", *sorted((TOP / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def broken_links(page: Path) -> list[str]:
    broken = []
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path) if path else page
        if not where.exists():
            broken.append(target)
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(target)
    return broken


def test_the_readme_is_a_user_guide() -> None:
    lines = (TOP / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 500, f"README.md has {lines} lines: move details to docs/ and link them"


def test_every_link_in_the_readme_and_docs_resolves() -> None:
    broken = {p.relative_to(TOP).as_posix(): b for p in PAGES if (b := broken_links(p))}
    assert not broken, broken


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    (tmp_path / "there.md").write_text("# A heading: `with code`\n", encoding="utf-8")
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-code) [web](https://x.org/) "
        "[gone](missing.md) [bad anchor](there.md#nope) [self](#nowhere)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["missing.md", "there.md#nope", "#nowhere"]
