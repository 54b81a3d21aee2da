"""End to end: the Pi's disk is remounted (issue 24, item 1). Real `davsync serve` restarts over a
root swapped for an empty folder and back, clients running `pull --delete --quiet` and `sync`
meanwhile and during the rebuild: no file goes to any client's trash, none is downloaded again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PASSWORDS, free_port, wait_until

from davsync.server.names import SHARE_MARKER

ENV = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
FILES = 60


def client(verb: str, url: str, dest: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "davsync", verb, url, str(dest), "-u", "alice", "--exclude", "big.bin", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=400)
    return proc.returncode, out + err


def inodes(dest: Path) -> dict[str, int]:
    """A download (or re-download) places a new file: its inode changes."""
    return {p.relative_to(dest).as_posix(): p.stat().st_ino for p in dest.rglob("*.txt") if ".davsync" not in p.parts}


def trash(dest: Path) -> list[Path]:
    return [p for p in (dest / ".davsync" / "trash").rglob("*") if p.is_file()]


def test_a_remounted_disk_costs_no_client_a_file(serve_process, users_file: Path, tmp_path: Path) -> None:
    disk, away, state = tmp_path / "disk", tmp_path / "disk-unplugged", tmp_path / "state"
    for i in range(FILES):
        (disk / f"d{i % 6}").mkdir(parents=True, exist_ok=True)
        (disk / f"d{i % 6}" / f"f{i}.txt").write_text(f"file {i}\n" * 50)
    with open(disk / "big.bin", "wb") as f:
        f.truncate(6 << 30)  # sparse: costs no space, but seconds to hash
    port = free_port()
    server = serve_process(disk, state_dir=state, port=port)
    mirror, synced, watched = tmp_path / "mirror", tmp_path / "synced", tmp_path / "watched"

    def both() -> list[tuple[int, str]]:
        procs = [client("pull", server.url, mirror, "--delete", "--quiet"), client("sync", server.url, synced)]
        return [finish(p) for p in procs]

    assert [code for code, _ in both()] == [0, 0]  # (the first runs wait for the first scan)
    before = inodes(mirror), inodes(synced)
    assert len(before[0]) == len(before[1]) == FILES
    watcher = client("sync", server.url, watched, "--watch", "--interval", "0.5")  # runs through all of it
    try:
        wait_until(lambda: len(inodes(watched)) == FILES, 120, "sync --watch to catch up")
        watched_before = inodes(watched)

        # The disk is unplugged: the server restarts over the empty mount point, and is refused.
        server.stop()
        os.rename(disk, away)
        disk.mkdir()
        refused = subprocess.run(
            [sys.executable, "-m", "davsync", "serve", str(disk), "--host", "127.0.0.1", "--port", str(port),
             "--state-dir", str(state), "--users", str(users_file), "--no-qr"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2 and "unmounted" in refused.stderr, refused.stdout + refused.stderr
        assert not (disk / SHARE_MARKER).exists()
        for code, out in both():
            assert code == 4, out  # nobody answers: nothing changes on either side

        # The disk is back, one big file touched: the restart rebuilds that for seconds while clients run.
        disk.rmdir()
        os.rename(away, disk)
        os.chmod(disk / "big.bin", 0o600)  # a new ctime: hashed again at start
        server = serve_process(disk, state_dir=state, port=port, wait_scan=False)
        results = both()
        for code, out in results:
            assert code == 0, out
        assert "still reading its share" in results[1][1], results  # sync said why it waited
        assert trash(mirror) == [] and trash(synced) == []
        assert (inodes(mirror), inodes(synced)) == before  # nothing downloaded again
        assert sorted(p.name for p in disk.rglob("*.txt")) == sorted(f"f{i}.txt" for i in range(FILES))

        (disk / "d0" / "late.txt").write_text("written after the disk came back")
        wait_until(lambda: (watched / "d0" / "late.txt").exists(), 120, "sync --watch to go on after the remount")
    finally:
        watcher.terminate()
        watch_out = watcher.communicate(timeout=60)
    assert trash(watched) == [], watch_out
    assert {k: v for k, v in inodes(watched).items() if k != "d0/late.txt"} == watched_before, watch_out
