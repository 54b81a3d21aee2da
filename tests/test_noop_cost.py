"""A run that finds nothing to do costs nothing it need not (issue 27): no write to the
journal (no fsync, no SD-card wear every few minutes under the app), yet every local change
is still seen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSWORDS, Share

from davsync.client import journal
from davsync.client.engine import RunOptions, RunResult, run_once
from davsync.client.plan import Mode
from davsync.client.transport import ConnectionSettings

ENV = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}


def _davsync(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "davsync", *args], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def _journal_files(dest: Path) -> dict[str, tuple[int, int]]:
    state = dest / ".davsync"
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in state.iterdir() if p.name.startswith("state.db")}


def test_a_no_op_pull_and_sync_leave_the_journal_untouched(share: Share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    (share.root / "d").mkdir()
    (share.root / "d" / "b.txt").write_bytes(b"b")
    share.wait_indexed()
    dest = tmp_path / "m"
    for command in ("pull", "sync"):
        _davsync(command, share.url, str(dest), "--user", "alice", "--quiet")
        _davsync(command, share.url, str(dest), "--user", "alice", "--quiet")  # settles what the first one learnt
        before = _journal_files(dest)
        _davsync(command, share.url, str(dest), "--user", "alice", "--quiet")
        assert _journal_files(dest) == before, f"a no-op {command} wrote to the journal"
    # ... and the next run still sees a local edit and carries it up.
    (dest / "d" / "b.txt").write_bytes(b"edited")
    os.utime(dest / "d" / "b.txt", ns=(1_000_000_000, 1_000_000_000))  # an old mtime: still a change
    _davsync("sync", share.url, str(dest), "--user", "alice", "--quiet")
    assert (share.root / "d" / "b.txt").read_bytes() == b"edited"


def test_identity_is_file_id_and_change_time_in_one_look(tmp_path: Path) -> None:
    """The scan's one-call identity gives what the two separate calls give, a big (ReFS-like) ID folded too."""
    from davsync import fileid

    f = tmp_path / "f.txt"
    f.write_bytes(b"x")
    st = os.stat(f)
    assert fileid.identity(f, st) == (fileid.file_id(f, st), fileid.change_time_ns(f, st)) != (0, 0)
    fields = list(st)
    fields[1] = 2**64 + 12345  # st_ino
    big = os.stat_result(fields, {"st_ctime_ns": st.st_ctime_ns, "st_mtime_ns": st.st_mtime_ns})
    assert fileid.identity(f, big) == (fileid.file_id(f, big), fileid.change_time_ns(f, big))
    assert 0 < fileid.identity(f, big)[0] < 2**63


def _sync(share: Share, dest: Path) -> RunResult:
    return run_once(ConnectionSettings(share.url, "alice", PASSWORDS["alice"]), dest, RunOptions(mode=Mode.SYNC))


def test_a_no_op_sync_reads_the_stat_of_each_row_not_the_whole_row(share: Share, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The base of a full local scan is read as stat columns: a whole row (MD5, ETag, server
    side) is built only for a file whose stat differs, so a 100,000-file no-op does not build 100,000."""
    t = time.time() - 3600  # settled: a file modified in the last seconds waits
    for i in range(300):
        f = share.root / f"d{i % 3}" / f"f{i}.txt"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * i)
        os.utime(f, (t, t))
    share.wait_indexed()
    dest = tmp_path / "m"
    assert _sync(share, dest).exit_code == 0
    assert _sync(share, dest).exit_code == 0  # settles what the first one learnt
    built = []
    real = journal._entry
    monkeypatch.setattr(journal, "_entry", lambda row: built.append(row) or real(row))
    assert _sync(share, dest).exit_code == 0
    assert len(built) < 10, f"a no-op sync of 300 files built {len(built)} journal rows"
    (dest / "d1" / "f1.txt").write_bytes(b"changed")
    os.utime(dest / "d1" / "f1.txt", (t, t))
    built.clear()
    result = _sync(share, dest)
    assert result.exit_code == 0 and (share.root / "d1" / "f1.txt").read_bytes() == b"changed"
    assert len(built) < 10, f"a sync of one change among 300 files built {len(built)} journal rows"


def test_a_sync_sees_a_change_of_size_mtime_change_time_or_file_id_alone(share: Share, tmp_path: Path) -> None:
    """Each stat field tells a change by itself, through the cheap base too: a longer file (same
    mtime), a touched one (same size), a silent edit (size and mtime restored: the change time
    moves) and a replaced one (same size and mtime, a new file ID)."""
    t = time.time() - 3600
    for name in ("size", "mtime", "ctime", "fileid", "same"):
        (share.root / f"{name}.txt").write_bytes(b"0123456789")
        os.utime(share.root / f"{name}.txt", (t, t))
    share.wait_indexed()
    dest = tmp_path / "m"
    assert _sync(share, dest).exit_code == 0
    assert _sync(share, dest).exit_code == 0
    (dest / "size.txt").write_bytes(b"0123456789+")
    os.utime(dest / "size.txt", (t, t))
    (dest / "mtime.txt").write_bytes(b"mtime-edit")
    os.utime(dest / "mtime.txt", (t - 60, t - 60))
    with open(dest / "ctime.txt", "r+b") as f:
        f.write(b"ctime-edit")
    os.utime(dest / "ctime.txt", (t, t))
    (dest / "new.tmp").write_bytes(b"fileid-new")
    os.utime(dest / "new.tmp", (t, t))
    os.replace(dest / "new.tmp", dest / "fileid.txt")
    result = _sync(share, dest)
    assert result.exit_code == 0, result.as_json()
    got = {name: (share.root / f"{name}.txt").read_bytes() for name in ("size", "mtime", "ctime", "fileid", "same")}
    assert got == {"size": b"0123456789+", "mtime": b"mtime-edit", "ctime": b"ctime-edit", "fileid": b"fileid-new",
                   "same": b"0123456789"}  # fmt: skip
