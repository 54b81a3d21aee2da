"""A run that finds nothing to do costs nothing it need not (issue 27): no write to the
journal (no fsync, no SD-card wear every few minutes under the app), yet every local change
is still seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PASSWORDS, Share

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
