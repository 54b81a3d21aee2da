"""The full scan against the journal's stat columns (journal.Rows), as a sync runs it: an unchanged
file is told from its row alone, and nothing a change could hide behind gets past that shortcut."""

from __future__ import annotations

import hashlib
import os
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from davsync import fileid
from davsync.client import local
from davsync.client.journal import Journal, Rows
from davsync.client.local import LINK_REASON, LocalScan, scan_local
from davsync.client.paths import NameRules
from davsync.client.plan import JournalEntry, LocalEntry

OLD = 1_600_000_000  # long past: never "still being written"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the shortcut is taken where lstat gives the file ID")


def write(root: Path, rel: str, data: bytes, mtime: int = OLD) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def record(journal: Journal, root: Path) -> Rows:
    """Record everything now in ROOT as a sync would (stat, file ID, change time, MD5) and
    return the journal's cheap base, as a sync reads it."""
    for p in sorted(root.rglob("*")):
        rel = unicodedata.normalize("NFC", p.relative_to(root).as_posix())
        if p.is_dir():
            journal.put(rel, JournalEntry(True))
            continue
        st = p.stat()
        ino, ctime = fileid.identity(p, st)
        digest = hashlib.md5(p.read_bytes()).hexdigest()
        journal.put(rel, JournalEntry(False, st.st_size, st.st_mtime_ns, ino, digest, ctime_ns=ctime))
    journal.commit()
    return journal.rows()


def scan(root: Path, base: Rows, *, rules: NameRules = "posix", fold_case: bool = False,
         excluded: tuple[str, ...] = ()) -> LocalScan:  # fmt: skip
    return scan_local(root, base, excluded=lambda p, d: p in excluded, rules=rules, fold_case=fold_case, settle_s=0)


def looked_at(s: LocalScan, path: str) -> bool:
    """Was the file judged on its own (not told unchanged)?"""
    return path not in s.unchanged


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "dest"
    write(root, "a.txt", b"alpha")
    write(root, "docs/b.txt", b"bravo")
    write(root, "docs/c.txt", b"charlie")
    write(root, "docs/deep/d.bin", bytes(range(256)) * 10)
    return root


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state" / "state.db")
    yield j
    j.close()


@posix_only
def test_an_unchanged_file_costs_its_lstat_and_no_entry(tree: Path, journal: Journal,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Below the root, an unchanged file is told from its row's stat columns: no LocalEntry is
    built for it, and the view still gives every file (as the row records it) on demand."""
    rows = record(journal, tree)
    built: list[str] = []
    real = local.entry_of_stat
    monkeypatch.setattr(local, "entry_of_stat", lambda full, st: built.append(os.fspath(full)) or real(full, st))
    s = scan(tree, rows)
    assert s.files_hashed == 0 and not s.skipped and not s.deferred
    assert {"docs/b.txt", "docs/c.txt", "docs/deep/d.bin"} <= s.unchanged
    assert [Path(p).name for p in built] == ["a.txt"], "entries were built for unchanged files below the root"
    for rel in ("a.txt", "docs/b.txt", "docs/c.txt", "docs/deep/d.bin"):
        st = (tree / rel).stat()
        want = LocalEntry(False, st.st_size, st.st_mtime_ns, *fileid.identity(tree / rel, st)[:1], None,
                          fileid.identity(tree / rel, st)[1])  # fmt: skip
        assert s.view.entries[rel] == want and rel in s.view.entries
        assert rows.same(rel, want), "the shortcut took a file the change-detection rule would not"
    assert set(s.view.entries) == {"a.txt", "docs", "docs/b.txt", "docs/c.txt", "docs/deep", "docs/deep/d.bin"}
    assert len(s.view.entries) == 6 and s.view.complete


@posix_only
def test_a_change_the_shortcut_could_miss_is_still_seen(tree: Path, journal: Journal) -> None:
    rows = record(journal, tree)
    b, c = tree / "docs/b.txt", tree / "docs/c.txt"
    st = b.stat()
    with open(b, "r+b") as f:  # a silent edit: same size, the mtime put back; only the change time moves
        f.write(b"BRAVO")
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    st = c.stat()
    write(tree, "docs/c.new", b"CHARLIE")  # replaced by another file: same size and mtime, a new file ID
    os.utime(tree / "docs/c.new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tree / "docs/c.new", c)
    os.remove(tree / "docs/deep/d.bin")  # a file replaced by a folder of the same name
    write(tree, "docs/deep/d.bin/inside.txt", b"inside")
    s = scan(tree, rows)
    entries = s.view.entries
    assert entries["docs/b.txt"] is not None and entries["docs/b.txt"].md5 == hashlib.md5(b"BRAVO").hexdigest()
    assert entries["docs/c.txt"] is not None and entries["docs/c.txt"].md5 == hashlib.md5(b"CHARLIE").hexdigest()
    assert entries["docs/deep/d.bin"] == LocalEntry(True) and "docs/deep/d.bin/inside.txt" in entries
    assert all(looked_at(s, p) for p in ("docs/b.txt", "docs/c.txt", "docs/deep/d.bin"))


@posix_only
def test_a_unicode_twin_of_an_unchanged_file_is_still_seen(tree: Path, journal: Journal) -> None:
    nfc = unicodedata.normalize("NFC", "café.txt")
    write(tree, f"docs/{nfc}", b"composed")
    rows = record(journal, tree)
    write(tree, f"docs/{unicodedata.normalize('NFD', 'café.txt')}", b"decomposed")  # a Mac wrote the NFD spelling
    s = scan(tree, rows)
    assert [k.path for k in s.skipped] == [f"docs/{nfc}"] and "Unicode form" in s.skipped[0].reason
    assert looked_at(s, f"docs/{nfc}") and s.not_judged(f"docs/{nfc}")


@posix_only
def test_an_unchanged_file_spelled_nfd_on_disk_keeps_its_spelling(tree: Path, journal: Journal) -> None:
    nfd = unicodedata.normalize("NFD", "café")
    write(tree, f"{nfd}/menu.txt", b"menu")
    write(tree, f"docs/{unicodedata.normalize('NFD', 'résumé.txt')}", b"cv")
    rows = record(journal, tree)  # keyed NFC, as a sync records them
    s = scan(tree, rows)
    assert not s.skipped and s.files_hashed == 0
    assert s.disk_path(tree, "café/menu.txt").read_bytes() == b"menu"
    assert s.disk_path(tree, "docs/résumé.txt").read_bytes() == b"cv"
    assert {"café/menu.txt", "docs/résumé.txt"} <= set(s.view.entries)


@posix_only
def test_a_case_twin_of_an_unchanged_file_is_still_seen(tree: Path, journal: Journal) -> None:
    rows = record(journal, tree)
    write(tree, "docs/B.txt", b"BRAVO")
    if (tree / "docs/b.txt").read_bytes() == b"BRAVO":
        pytest.skip("this filesystem already ignores case")
    s = scan(tree, rows, fold_case=True)
    assert {k.path for k in s.skipped} == {"docs/b.txt", "docs/B.txt"}
    assert looked_at(s, "docs/b.txt") and s.not_judged("docs/b.txt")
    assert "docs/c.txt" in s.unchanged


@posix_only
def test_an_unchanged_file_the_rules_now_refuse_is_skipped(tree: Path, journal: Journal) -> None:
    """Synced under one set of name rules, scanned under stricter ones (--name-rules windows)."""
    write(tree, "docs/a:b.txt", b"colon")
    rows = record(journal, tree)
    s = scan(tree, rows, rules="windows")
    assert [k.path for k in s.skipped] == ["docs/a:b.txt"] and s.not_judged("docs/a:b.txt")
    assert "docs/b.txt" in s.unchanged


@posix_only
def test_a_link_or_a_special_file_in_place_of_an_unchanged_file_is_seen(tree: Path, journal: Journal) -> None:
    rows = record(journal, tree)
    os.remove(tree / "docs/b.txt")
    os.symlink(tree / "a.txt", tree / "docs/b.txt")
    os.remove(tree / "docs/c.txt")
    os.mkfifo(tree / "docs/c.txt")
    s = scan(tree, rows)
    assert [(k.path, k.reason) for k in s.skipped] == [("docs/b.txt", LINK_REASON)]
    assert "docs/c.txt" not in s.view.entries  # not a file anyone syncs: as it always was
    assert looked_at(s, "docs/b.txt")


@posix_only
def test_a_row_in_flight_is_resolved_not_taken_as_unchanged(tree: Path, journal: Journal) -> None:
    rows = record(journal, tree)
    old = rows["docs/b.txt"]
    journal.put("docs/b.txt", JournalEntry(False, 9, 123, 456, "0" * 32, prev=old))  # a crash before the rename
    journal.commit()
    s = scan(tree, journal.rows())
    assert s.resolved["docs/b.txt"] == old and s.files_hashed == 0 and looked_at(s, "docs/b.txt")


@posix_only
def test_davsync_temp_names_are_never_seen_even_when_recorded(tree: Path, journal: Journal) -> None:
    write(tree, "docs/b.txt.davsync-case-4242", b"half-renamed")
    rows = record(journal, tree)
    s = scan(tree, rows)
    assert "docs/b.txt.davsync-case-4242" not in s.view.entries
