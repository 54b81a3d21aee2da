"""The default excludes are checked through one combined regex (a full scan asks it once per
path); it must say exactly what pathspec's own pattern for each line says (issue 27)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from davsync.client.filters import DEFAULT_EXCLUDES, Filter, _pattern

# Names each default line is about, near misses, and plain names, in other letter cases too.
NAMES = [
    "~$report.docx", "~WRL0001.tmp", ".~lock.a.odt#", "notes.txt~", ".x.swp", ".x.swz", ".#notes", "f.kate-swp",
    "Thumbs.db", "thumbs.DB", "ehthumbs.db", "desktop.ini", "DESKTOP.INI", "$RECYCLE.BIN", "$recycle.bin",
    "System Volume Information", ".DS_Store", "._photo.jpg", ".Spotlight-V100", ".Trashes", ".fseventsd",
    ".TemporaryItems", ".Trash-1000", ".directory", ".nfs0001", ".fuse_hidden01", "film.part", "a.crdownload",
    "b.filepart", "@eaDir", "#recycle", "photo 00012.jpg", "Ünïcödé 00012.md", "Thumbs.db.bak", "my~file",
    "x.swq", "part", ".part", "a.partial", "desktop.ini.txt", "eaDir", "recycle", "~", "a#", "$RECYCLE.BINX",
]  # fmt: skip


def _by_pathspec(path: str, is_dir: bool) -> bool:
    """Each line's own pathspec regex, letters in any case (DESKTOP.INI is desktop.ini)."""
    key = path + "/" if is_dir else path
    return any(re.match(_pattern(line).regex.pattern, key, re.IGNORECASE) for line, _ in DEFAULT_EXCLUDES)


def _combined(path: str, is_dir: bool) -> bool:
    return Filter(None).excluded(path, is_dir)


@pytest.mark.contract("pathspec")
def test_the_combined_default_regex_says_what_each_gitignore_line_says() -> None:
    paths = [*NAMES, *(f"{a}/{b}" for a, b in itertools.product(NAMES, NAMES)), *(f"x/y/{n}/z" for n in NAMES)]
    wrong = [(p, d) for p in paths for d in (False, True) if _combined(p, d) != _by_pathspec(p, d)]
    assert not wrong
    assert sum(_combined(p, False) for p in paths) > len(paths) // 2  # the list does exercise the excludes


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*NAMES, "a", "b c", "é"]) | st.text("~$.#_-aT/ ", min_size=1, max_size=8),
                min_size=1, max_size=4), st.booleans())  # fmt: skip
def test_random_paths_agree_with_pathspec(parts: list[str], is_dir: bool) -> None:
    path = "/".join(p.strip("/") or "x" for p in parts)
    assert _combined(path, is_dir) == _by_pathspec(path, is_dir)
