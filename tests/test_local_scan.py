"""The client's local look (davsync/client/local.py) on real files: what a two-way sync sees of DEST."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from davsync import fileid
from davsync.client.local import LINK_REASON, LocalScan, scan_local
from davsync.client.paths import NameRules
from davsync.client.plan import JournalEntry, LocalEntry

SHIM = Path(__file__).resolve().parent / "winshim"
OLD = 1_600_000_000  # a file time long past: never "still being written"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write(root: Path, rel: str, data: bytes, mtime: int = OLD) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def synced(root: Path) -> dict[str, JournalEntry]:
    """The base a sync would have recorded for everything now in ROOT (stat and MD5 each)."""
    base: dict[str, JournalEntry] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] == ".davsync":
            continue
        if p.is_dir():
            base[rel] = JournalEntry(True)
        else:
            st = p.stat()
            digest = md5(p.read_bytes())
            base[rel] = JournalEntry(False, st.st_size, st.st_mtime_ns, fileid.file_id(p, st), digest)
    return base


def scan(
    root: Path,
    base: Mapping[str, JournalEntry] | None = None,
    *,
    rules: NameRules = "posix",
    fold_case: bool = False,
    excluded: tuple[str, ...] = (),
    **kw: object,
) -> LocalScan:
    kw.setdefault("settle_s", 0)
    return scan_local(root, base or {}, excluded=lambda p, d: p in excluded, rules=rules, fold_case=fold_case, **kw)  # type: ignore[arg-type]


def files(s: LocalScan) -> dict[str, LocalEntry]:
    return {p: e for p, e in s.view.entries.items() if e is not None and not e.is_dir}


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "dest"
    write(root, "a.txt", b"alpha")
    write(root, "docs/b.txt", b"bravo")
    write(root, "docs/deep/c.bin", bytes(range(256)) * 100)
    (root / "empty").mkdir()
    yield root


def test_a_full_scan_finds_every_file_and_folder_the_journal_does_not_know(tree: Path) -> None:
    s = scan(tree)
    assert s.view.complete and not s.view.failed and not s.skipped and not s.deferred
    assert {p for p, e in s.view.entries.items() if e and e.is_dir} == {"docs", "docs/deep", "empty"}
    assert {p: e.md5 for p, e in files(s).items()} == {
        "a.txt": md5(b"alpha"),
        "docs/b.txt": md5(b"bravo"),
        "docs/deep/c.bin": md5(bytes(range(256)) * 100),
    }
    assert s.files_hashed == 3
    st = (tree / "a.txt").stat()
    assert files(s)["a.txt"] == LocalEntry(False, 5, st.st_mtime_ns, st.st_ino, md5(b"alpha"), st.st_ctime_ns)


def test_an_unchanged_stat_is_not_read_and_a_changed_one_is(tree: Path) -> None:
    base = synced(tree)
    s = scan(tree, base)
    assert s.files_hashed == 0
    assert all(e.md5 is None for e in files(s).values())  # the planner takes it from the base
    write(tree, "docs/b.txt", b"bravo, edited")
    s = scan(tree, base)
    assert s.files_hashed == 1
    assert files(s)["docs/b.txt"].md5 == md5(b"bravo, edited")
    assert files(s)["a.txt"].md5 is None


def test_a_touched_file_is_read_and_its_md5_equals_the_base(tree: Path) -> None:
    base = synced(tree)
    os.utime(tree / "a.txt", (OLD + 60, OLD + 60))
    s = scan(tree, base)
    assert s.files_hashed == 1
    assert files(s)["a.txt"].md5 == base["a.txt"].md5  # metadata only
    assert files(s)["a.txt"].mtime_ns == (OLD + 60) * 10**9


def test_hash_all_reads_every_file(tree: Path) -> None:
    s = scan(tree, synced(tree), hash_all=True)
    assert s.files_hashed == 3 and all(e.md5 for e in files(s).values())


def test_a_file_modified_within_the_settle_time_is_deferred_not_read(tree: Path) -> None:
    base = synced(tree)
    write(tree, "new.txt", b"being written", mtime=OLD + 1000)
    write(tree, "a.txt", b"alpha grows", mtime=OLD + 1000)
    now = (OLD + 1001) * 10**9
    s = scan(tree, base, settle_s=2.0, now_ns=now)
    assert s.deferred == {"new.txt", "a.txt"} and s.files_hashed == 0
    assert "new.txt" in s.view.entries  # listed: its folder is not empty
    assert s.not_judged("new.txt") and not s.not_judged("docs/b.txt")
    later = scan(tree, base, settle_s=2.0, now_ns=now + 2 * 10**9)
    assert not later.deferred and later.files_hashed == 2
    # A file time in the future (a skewed clock, an archive) cannot be waited out: not deferred.
    assert not scan(tree, base, settle_s=2.0, now_ns=OLD * 10**9).deferred


def test_davsync_state_and_its_temp_names_are_never_seen(tree: Path) -> None:
    write(tree, ".davsync/state.db", b"x")
    write(tree, ".davsync/partial/abc.part", b"x")
    write(tree, "docs/b.txt.davsync-case-4242", b"half-renamed")
    write(tree, "docs/.davsync/kept.txt", b"a user's own folder of that name below the root")
    s = scan(tree)
    assert not any(p.startswith(".davsync") for p in s.view.entries)
    assert "docs/b.txt.davsync-case-4242" not in s.view.entries
    assert "docs/.davsync/kept.txt" in files(s)
    assert s.files_hashed == 4 and not s.skipped


def unprivileged(fn: Callable[[], object]) -> object:
    """fn() as a user that file permissions apply to: in a forked child as `nobody` when the
    tests run as root (root reads anything), else right here. The result travels as JSON."""
    if os.geteuid() != 0:
        return json.loads(json.dumps(fn()))
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report, leave without running pytest's cleanup
        code = 1
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged scan failed"
    return json.loads(data)


def test_an_unreadable_folder_is_frozen() -> None:
    root = Path(tempfile.mkdtemp(prefix="davsync-scan-"))  # outside pytest's 0700 tmp folders
    try:
        write(root, "ok.txt", b"ok")
        write(root, "locked/inner.txt", b"secret")
        write(root, "locked/sub/more.txt", b"more")
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            for p in [root, *root.rglob("*")]:
                os.chown(p, 65534, 65534)
        os.chmod(root / "locked", 0)

        def look() -> dict[str, object]:
            s = scan(root)
            return {"failed": sorted(s.view.failed), "entries": sorted(s.view.entries),
                    "hashed": s.files_hashed, "complete": s.view.complete}  # fmt: skip

        got = unprivileged(look)
        assert got == {"failed": ["locked"], "entries": ["locked", "ok.txt"], "hashed": 1, "complete": True}
    finally:
        os.chmod(root / "locked", 0o755)
        shutil.rmtree(root)


def test_a_file_that_cannot_be_read_is_left_alone() -> None:
    root = Path(tempfile.mkdtemp(prefix="davsync-scan-"))
    try:
        write(root, "ok.txt", b"ok")
        write(root, "private.txt", b"mine only")
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            for p in [root, *root.rglob("*")]:
                os.chown(p, 65534, 65534)
        os.chmod(root / "private.txt", 0)

        def look() -> dict[str, object]:
            s = scan(root)
            return {"skipped": [[k.path, k.reason] for k in s.skipped], "hashed": s.files_hashed,
                    "listed": "private.txt" in s.view.entries}  # fmt: skip

        got = unprivileged(look)
        assert got == {"skipped": [["private.txt", "cannot be read (Permission denied); left alone"]],
                       "hashed": 1, "listed": True}  # fmt: skip
    finally:
        shutil.rmtree(root)


def test_an_unreadable_root_freezes_everything(tmp_path: Path) -> None:
    s = scan(tmp_path / "not-there")
    assert s.view.failed == frozenset({""}) and not s.view.entries


def test_links_inside_dest_are_reported_and_never_followed(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "private.txt", b"not ours")
    (tree / "docs" / "elsewhere").symlink_to(outside, target_is_directory=True)
    (tree / "note.txt").symlink_to(outside / "private.txt")
    s = scan(tree)
    assert {(k.path, k.reason) for k in s.skipped} == {("docs/elsewhere", LINK_REASON), ("note.txt", LINK_REASON)}
    assert not any(p.startswith("docs/elsewhere/") for p in s.view.entries)  # nothing listed through it
    assert s.view.entries["note.txt"] is not None and s.view.entries["note.txt"].md5 is None  # never read
    assert s.files_hashed == 3
    assert s.not_judged("docs/elsewhere/private.txt") and s.not_judged("note.txt")
    # The same looking at named paths: the link itself, and a path below it, are left alone.
    partial = scan_local(tree, {}, paths=["note.txt", "docs/elsewhere/private.txt"], excluded=lambda p, d: False,
                         rules="posix", fold_case=False, settle_s=0)  # fmt: skip
    assert {k.path for k in partial.skipped} == {"note.txt", "docs/elsewhere/private.txt"}
    assert partial.files_hashed == 0


def test_excluded_paths_are_listed_but_never_read_or_walked(tree: Path) -> None:
    write(tree, "cache/huge.bin", b"x" * 1000)
    write(tree, "docs/notes.tmp", b"scratch")
    s = scan(tree, excluded=("cache", "docs/notes.tmp"))
    assert s.view.entries["cache"] == LocalEntry(True)
    assert "cache/huge.bin" not in s.view.entries  # an excluded folder is not walked
    assert files(s)["docs/notes.tmp"].md5 is None and files(s)["docs/notes.tmp"].size == 7
    assert s.files_hashed == 3 and not s.skipped


def test_names_the_rules_refuse_are_skipped_and_not_read(tree: Path) -> None:
    write(tree, "docs/a:b.txt", b"colon")
    write(tree, "CON.txt", b"device")
    write(tree, "trailing.", b"dot")
    (tree / "bad?dir").mkdir()
    write(tree, "bad?dir/inside.txt", b"below a refused folder")
    write(tree, ".DAVSYNC/x", b"could stand for the state folder on Windows")
    s = scan(tree, rules="windows")
    reasons = {k.path: k.reason for k in s.skipped}
    assert set(reasons) == {"docs/a:b.txt", "CON.txt", "trailing.", "bad?dir", ".DAVSYNC"}
    assert "reserved on Windows" in reasons["CON.txt"] and "reserved for davsync" in reasons[".DAVSYNC"]
    assert "bad?dir/inside.txt" not in s.view.entries and s.not_judged("bad?dir/inside.txt")
    assert s.files_hashed == 3  # only the three acceptable files were read
    assert {"docs/a:b.txt", "CON.txt", "trailing."} <= set(files(s))  # listed all the same
    assert {k.path for k in scan(tree, rules="posix").skipped} == {".DAVSYNC"}  # at the root, whatever the rules


def test_case_insensitive_rules_skip_names_that_differ_only_by_case(tree: Path) -> None:
    write(tree, "docs/Readme.md", b"one")
    write(tree, "docs/README.md", b"two")
    if (tree / "docs" / "Readme.md").read_bytes() == b"two":
        pytest.skip("this filesystem already ignores case")
    folded = scan(tree, fold_case=True)
    assert {k.path for k in folded.skipped} == {"docs/Readme.md", "docs/README.md"}
    assert "differs only by case" in folded.skipped[0].reason
    assert not scan(tree, fold_case=False).skipped


def test_a_state_folder_in_another_case_is_ours_on_a_case_insensitive_volume(tree: Path) -> None:
    write(tree, ".DAVSYNC/state.db", b"x")
    assert ".DAVSYNC" not in scan(tree, fold_case=True).view.entries
    assert {k.path for k in scan(tree, fold_case=False).skipped} == {".DAVSYNC"}


def test_placements_in_flight_at_a_crash_are_resolved(tree: Path) -> None:
    base = synced(tree)
    old = base["a.txt"]
    # Crash before the rename: the journal already holds the new version, the old file is still there.
    before = JournalEntry(False, 9, 123, 456, md5(b"new bytes"), prev=old)
    s = scan(tree, {**base, "a.txt": before})
    assert s.resolved["a.txt"] == old and s.files_hashed == 0
    # Crash after the rename: the file on disk is the new version the row describes.
    after = JournalEntry(False, old.size, old.mtime_ns, old.ino, old.md5, prev=JournalEntry(False, 1, 2, 3, "x" * 32))
    s = scan(tree, {**base, "a.txt": after})
    assert s.resolved["a.txt"] == after and s.files_hashed == 0


def test_nfd_names_are_keyed_nfc_and_keep_their_spelling_on_disk(tree: Path) -> None:
    nfd = unicodedata.normalize("NFD", "café")
    write(tree, f"{nfd}/menu.txt", b"menu")
    s = scan(tree)
    assert "café/menu.txt" in files(s)
    assert s.disk_path(tree, "café/menu.txt").read_bytes() == b"menu"
    assert s.on_disk["café"] == nfd


def test_look_at_sees_only_the_named_paths_and_walks_new_folders(tree: Path) -> None:
    base = synced(tree)
    write(tree, "docs/unnamed.txt", b"not asked about")
    write(tree, "fresh/one.txt", b"1")
    write(tree, "fresh/sub/two.txt", b"2")
    (tree / "a.txt").unlink()
    s = scan_local(tree, base, paths=["a.txt", "docs", "fresh", "docs/b.txt"], excluded=lambda p, d: False,
                   rules="posix", fold_case=False, settle_s=0)  # fmt: skip
    assert not s.view.complete
    assert s.view.entries["a.txt"] is None
    assert "docs/unnamed.txt" not in s.view.entries  # a known folder is not listed again
    assert {"fresh", "fresh/one.txt", "fresh/sub", "fresh/sub/two.txt"} <= set(s.view.entries)
    assert files(s)["fresh/sub/two.txt"].md5 == md5(b"2")
    assert s.files_hashed == 2  # docs/b.txt is unchanged


def test_look_at_finds_a_name_spelled_nfd_on_disk_and_never_calls_it_gone(tree: Path) -> None:
    """A watcher names paths in NFC; a folder and file written in NFD (a Mac, an old share) are
    the same names, so a look must find them, not report them deleted (which sync would carry)."""
    nfd_dir, nfd_file = (unicodedata.normalize("NFD", n) for n in ("café", "résumé.txt"))
    write(tree, f"{nfd_dir}/{nfd_file}", b"cv")
    base = synced(tree)
    base = {unicodedata.normalize("NFC", p): e for p, e in base.items()}
    (tree / nfd_dir / nfd_file).write_bytes(b"cv, edited")
    s = scan_local(tree, base, paths=["café/résumé.txt", "café/gone.txt"], excluded=lambda p, d: False,
                   rules="posix", fold_case=False, settle_s=0)  # fmt: skip
    assert files(s)["café/résumé.txt"].md5 == md5(b"cv, edited")
    assert s.disk_path(tree, "café/résumé.txt").read_bytes() == b"cv, edited"
    assert s.view.entries["café/gone.txt"] is None  # a name truly absent is still absent


def test_a_stopped_scan_is_not_complete(tree: Path) -> None:
    stop = threading.Event()
    stop.set()
    s = scan(tree, stop=stop)
    assert not s.view.complete  # what was not seen is as the base says: nothing looks deleted


def test_the_scan_takes_no_posix_only_path_under_the_windows_shim(tree: Path, tmp_path: Path) -> None:
    """AN APPROXIMATION of Windows (tests/winshim): no fcntl, no O_DIRECTORY, text-mode opens refused."""
    base = synced(tree)
    write(tree, "docs/b.txt", b"changed")
    (tmp_path / "base.json").write_text(json.dumps({p: [j.is_dir, j.size, j.mtime_ns, j.ino, j.md5]
                                                    for p, j in base.items()}))  # fmt: skip
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from davsync.client.local import scan_local\n"
        "from davsync.client.plan import JournalEntry\n"
        "base = {p: JournalEntry(*v) for p, v in json.loads(Path(sys.argv[2]).read_text()).items()}\n"
        "s = scan_local(Path(sys.argv[1]), base, excluded=lambda p, d: False, rules='windows', fold_case=True,"
        " settle_s=0)\n"
        "print(json.dumps({'hashed': s.files_hashed, 'md5': s.view.entries['docs/b.txt'].md5}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAVSYNC_WINSHIM")}
    env["PYTHONPATH"] = os.pathsep.join([str(SHIM), str(Path(__file__).resolve().parents[1])])
    proc = subprocess.run([sys.executable, "-c", code, str(tree), str(tmp_path / "base.json")],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"hashed": 1, "md5": md5(b"changed")}
