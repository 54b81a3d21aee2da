"""SIGKILL during a batch placement, at exact moments: every file is the old or the new version,
and the journal describes the disk (a row matches its file, or a pending intent names the
placement that was in flight); the next pull converges without a conflict.

The pull runs in its own process; a few lines wrapped around davsync's own functions send it
SIGKILL right before (or after) the n-th rename into place, journal commit or flush pass, so
each moment of the batch is hit for sure, not by timing luck.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORDS

from davsync.client.engine import RunOptions, run_once
from davsync.client.transport import ConnectionSettings
from davsync.server.names import is_internal_name

KILLER = r"""
import os, signal, sys
from pathlib import Path
from davsync import osfs
from davsync.client import journal as journal_module
from davsync.client.engine import RunOptions, run_once
from davsync.client.transport import ConnectionSettings

url, dest, point, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = 0

def tick():
    global seen
    seen += 1
    if seen == n:
        os.kill(os.getpid(), signal.SIGKILL)

def wrap(owner, name, before, only=lambda *a: True):
    original = getattr(owner, name)
    def wrapped(*args, **kw):
        if before and only(*args):
            tick()
        result = original(*args, **kw)
        if not before and only(*args):
            tick()
        return result
    setattr(owner, name, wrapped)

into_dest = lambda src, dst: ".davsync" not in Path(dst).parts
if point == "rename":
    wrap(osfs, "replace", True, into_dest)
elif point == "renamed":
    wrap(osfs, "replace", False, into_dest)
elif point == "commit":
    wrap(journal_module.Journal, "commit", True)
elif point == "committed":
    wrap(journal_module.Journal, "commit", False)
elif point == "flush":
    wrap(osfs, "flush_files", True)
result = run_once(ConnectionSettings(url, "alice", os.environ["DAVSYNC_PASSWORD"]), Path(dest), RunOptions(full=True))
sys.exit(100 + int(result.exit_code))  # the kill never came
"""


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".davsync" not in p.relative_to(root).parts and not is_internal_name(p.name)}  # fmt: skip


def rows(dest: Path) -> tuple[dict[str, tuple[int, int, str]], dict[str, dict]]:
    """The journal's rows (path -> size, mtime_ns, md5) and its pending place intents (path -> entry)."""
    import json

    with sqlite3.connect(dest / ".davsync" / "state.db") as db:
        placed = db.execute("SELECT path, size, mtime_ns, md5 FROM placed WHERE is_dir=0").fetchall()
        intents = db.execute("SELECT path, entry FROM intent WHERE op='place'").fetchall()
    return {p: (size, mtime, digest) for p, size, mtime, digest in placed}, {p: json.loads(e) for p, e in intents}


def check_disk_and_journal(dest: Path, versions: dict[str, set[str]]) -> None:
    """Whole versions only; every row describes its file; an intent names the new version, in
    place (the rename happened) or not (then the row, if any, still describes the old one)."""
    on_disk = files(dest)
    for path, data in on_disk.items():
        assert md5(data) in versions.get(path, set()), f"{path} is no version the server ever had"
    placed, intents = rows(dest)
    for path, (size, mtime_ns, digest) in placed.items():
        assert path in on_disk, f"the journal lists {path}, which is not there"
        st = os.stat(dest / path)
        if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
            assert md5(on_disk[path]) == digest, f"the journal's MD5 for {path} is not the file's"
        else:
            assert path in intents, f"the journal's row for {path} describes neither the file nor a placement in flight"
    for path, entry in intents.items():
        assert entry["md5"] in versions.get(path, set()), f"the intent for {path} names no server version"
        if path in on_disk and (os.stat(dest / path).st_size, os.stat(dest / path).st_mtime_ns) == (
                entry["size"], entry["mtime_ns"]):  # fmt: skip
            assert md5(on_disk[path]) == entry["md5"], f"{path} was placed but is not the intended version"


class Server:
    """The share's files and every version each path ever had."""

    def __init__(self, share) -> None:  # type: ignore[no-untyped-def]
        import random

        self.share = share
        self.rng = random.Random(9)
        self.versions: dict[str, set[str]] = {}
        self.round = 0

    def write(self, rel: str, data: bytes) -> None:
        path = self.share.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.versions.setdefault(rel, set()).add(md5(data))

    def change(self) -> None:
        """20 files change and 15 are new: the next pull has one batch of 35 (20 replacements, 15 new files)."""
        self.round += 1
        for i in self.rng.sample(range(40), 20):
            self.write(f"f{i % 3}/old {i:02}.bin", self.rng.randbytes(self.rng.randint(1, 9000)))
        for i in range(15):
            self.write(f"new {self.round}/n{i:02}.bin", self.rng.randbytes(self.rng.randint(0, 5000)))
        self.share.wait_indexed()


def mirrored(share, tmp_path: Path) -> tuple[Path, Server]:  # type: ignore[no-untyped-def]
    server = Server(share)
    for i in range(40):
        server.write(f"f{i % 3}/old {i:02}.bin", server.rng.randbytes(server.rng.randint(1, 6000)))
    share.wait_indexed()
    dest = tmp_path / "mirror"
    first = run_once(ConnectionSettings(share.url, "alice", PASSWORDS["alice"]), dest, RunOptions())
    assert first.exit_code == 0, first.errors
    return dest, server


def kill_at(share, dest: Path, point: str, n: int) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    proc = subprocess.run([sys.executable, "-c", KILLER, share.url, str(dest), point, str(n)], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, f"no kill at {point} #{n}: exit {proc.returncode} {proc.stderr[-2000:]}"


def converge(share, dest: Path) -> None:  # type: ignore[no-untyped-def]
    final = run_once(ConnectionSettings(share.url, "alice", PASSWORDS["alice"]), dest, RunOptions(full=True))
    assert final.exit_code == 0, (final.fatal, final.errors)
    assert not final.conflicts
    assert files(dest) == files(share.root)
    check_disk_and_journal(dest, {p: {md5(d)} for p, d in files(share.root).items()})
    assert not [p for p in (dest / ".davsync" / "partial").rglob("*") if p.is_file()]  # no temp file left


def test_kills_at_each_step_of_a_batch(share, tmp_path: Path) -> None:
    # Before the flush pass; before the replacements' rows commit; between renames; after the
    # last rename (new files in place, their rows not yet written). Each kill leaves work behind.
    dest, server = mirrored(share, tmp_path)
    for point, n in [("flush", 1), ("commit", 1), ("rename", 12), ("renamed", 35)]:
        server.change()
        kill_at(share, dest, point, n)
        check_disk_and_journal(dest, server.versions)
    converge(share, dest)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("point", ["rename", "renamed", "commit", "committed"])
def test_kills_at_every_rename_and_commit(share, tmp_path: Path, point: str) -> None:
    dest, server = mirrored(share, tmp_path)
    for n in range(1, 36) if point.startswith("rename") else range(1, 3):
        server.change()
        kill_at(share, dest, point, n)
        check_disk_and_journal(dest, server.versions)
        converge(share, dest)

