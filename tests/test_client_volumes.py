"""pull, status and watch with DEST on real NTFS and exFAT volumes.

The volumes are real filesystems in image files, mounted through FUSE: NTFS with
`lowntfs-3g -o ignore_case,windows_names` (case-insensitive, Windows' name rules, as
Windows sees NTFS), exFAT with `exfat-fuse` on a loop device (what a USB stick is: coarse
mtimes, file IDs made up per mount). Linux still applies its own limits on top (255 UTF-8
bytes a name; no 260-character path limit), so this checks the filesystems, not Windows.
Each test skips with the reason when FUSE, loop devices or the tools are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PASSWORDS, require_tool, wait_until

from davsync.client.engine import RunOptions, run_once
from davsync.client.transport import ConnectionSettings

LONG_NAME = "長" * 80 + ".txt"  # 80 UTF-16 units, 243 UTF-8 bytes
DEEP = "/".join(["a folder with a rather long name, to go past 260 characters"] * 5)


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        pytest.skip("FUSE is unavailable here (/dev/fuse missing or not accessible); the volume tests need it")
    if shutil.which("fusermount") is None and shutil.which("fusermount3") is None:
        pytest.skip("fusermount is not installed (apt-get install fuse3); .ci/run installs it")


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"cannot {what} here: {(proc.stderr or proc.stdout).strip()[:200]}")
    return proc


def _unmount(mnt: Path) -> None:
    fusermount = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    for _ in range(50):
        if not os.path.ismount(mnt):
            return
        if subprocess.run([fusermount, "-u", str(mnt)], capture_output=True).returncode == 0:
            wait_until(lambda: not os.path.ismount(mnt), 10, f"{mnt} to unmount")
            return
        subprocess.run(["sync"])
    subprocess.run([fusermount, "-uz", str(mnt)], capture_output=True)


@dataclass
class Volume:
    image: Path
    mnt: Path
    mount_cmd: list[str]
    device: str | None = None

    def mount(self, cmd: list[str] | None = None) -> None:
        _run([*(cmd or self.mount_cmd), str(self.mnt)], "mount the volume")
        wait_until(lambda: os.path.ismount(self.mnt), 10, f"{self.mnt} to mount")

    def unmount(self) -> None:
        _unmount(self.mnt)


@pytest.fixture
def ntfs(tmp_path: Path) -> Iterator[Volume]:
    require_fuse()
    mkntfs = require_tool("mkntfs")
    lowntfs = require_tool("lowntfs-3g")
    image, mnt = tmp_path / "ntfs.img", tmp_path / "ntfs"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    _run([mkntfs, "-q", "-F", "-f", str(image)], "format an NTFS image")
    vol = Volume(image, mnt, [lowntfs, "-o", "ignore_case,windows_names", str(image)])
    vol.mount()
    try:
        yield vol
    finally:
        vol.unmount()


@pytest.fixture
def exfat(tmp_path: Path) -> Iterator[Volume]:
    require_fuse()
    mkfs = require_tool("mkfs.exfat")
    mount = require_tool("mount.exfat-fuse")
    losetup = require_tool("losetup")
    image, mnt = tmp_path / "exfat.img", tmp_path / "exfat"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    _run([mkfs, str(image)], "format an exFAT image")
    device = _run([losetup, "-f", "--show", str(image)], "attach a loop device (exfat-fuse needs a block device)")
    dev = device.stdout.strip()
    vol = Volume(image, mnt, [mount, dev], dev)
    try:
        vol.mount()
        yield vol
    finally:
        vol.unmount()
        subprocess.run([losetup, "-d", dev], capture_output=True)


def pull(url: str, dest: Path, *args: str) -> tuple[int, dict, str]:
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    proc = subprocess.run([sys.executable, "-m", "davsync", "pull", url, str(dest), "-u", "alice", "--json", *args],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except ValueError:
        raise AssertionError(f"no JSON: {proc.stdout}\n{proc.stderr}") from None


def status(url: str, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    return subprocess.run([sys.executable, "-m", "davsync", "status", url, str(dest), "-u", "alice", *args],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip


def test_ntfs_reserved_and_own_names(share, ntfs: Volume) -> None:
    root = share.root
    (root / ".DAVSYNC").mkdir()
    (root / ".DAVSYNC" / "lock").write_bytes(b"the server's file, not davsync's lock")
    (root / ".DAVSYNCIGNORE").write_bytes(b"*\n")  # would exclude everything if it replaced the user's
    (root / "DAVSYN~1").write_bytes(b"an 8.3 alias of .davsync")
    for bad in ("CON", "aux.txt", "a:b", "trail."):
        (root / bad).write_bytes(b"only a Windows-incompatible name")
    (root / LONG_NAME).write_bytes(b"long but legal on NTFS")
    (root / DEEP).mkdir(parents=True)
    (root / DEEP / "deep file.txt").write_bytes(b"deep")
    (root / "binary.bin").write_bytes(b"\r\n\n\x1a" * 1000)
    share.wait_indexed()

    dest = ntfs.mnt / "sync_root"
    dest.mkdir()
    (dest / ".davsyncignore").write_bytes(b"*.tmp\n")
    (dest / "mine.tmp").write_bytes(b"the user's own")

    code, data, err = pull(share.url, dest, "--name-rules", "windows")
    assert code == 3, (data, err)  # finished; some names skipped
    skipped = {s["path"]: s["reason"] for s in data["skipped"]}
    for name in ("CON", "aux.txt", "a:b", "trail.", ".DAVSYNC", ".DAVSYNC/lock", "DAVSYN~1"):
        assert name in skipped, (name, skipped)
    assert "reserved" in skipped["CON"] and ".davsync" in skipped[".DAVSYNC"]
    assert (dest / ".davsyncignore").read_bytes() == b"*.tmp\n"
    assert (dest / "mine.tmp").read_bytes() == b"the user's own"
    assert (dest / ".davsync" / "lock").read_bytes() != b"the server's file, not davsync's lock"
    assert not [p for p in (dest / ".davsync").rglob("*") if "conflict" in p.name]
    assert (dest / LONG_NAME).read_bytes() == b"long but legal on NTFS"
    assert (dest / DEEP / "deep file.txt").read_bytes() == b"deep"
    assert len(str(dest / DEEP / "deep file.txt")) > 260
    assert (dest / "binary.bin").read_bytes() == b"\r\n\n\x1a" * 1000

    # With POSIX rules the volume itself refuses those names: each is reported, the run goes on.
    (root / "after.txt").write_bytes(b"still synced")
    share.wait_indexed()
    code, data, err = pull(share.url, dest, "--name-rules", "posix", "--full")
    assert code == 3, (data, err)
    assert data["fatal"] is None
    failed = {e["path"] for e in data["errors"]}
    assert {"CON", "aux.txt", "a:b", "trail."} <= failed, data["errors"]
    assert (dest / "after.txt").read_bytes() == b"still synced"


def test_ntfs_case_only_rename_is_a_local_rename(share, ntfs: Volume) -> None:
    root = share.root
    (root / "Report.txt").write_bytes(b"quarterly numbers")
    (root / "Photos").mkdir()
    (root / "Photos" / "Beach.JPG").write_bytes(b"\xff\xd8 a photo")
    share.wait_indexed()
    dest = ntfs.mnt / "sync_root"
    code, data, err = pull(share.url, dest, "--delete")
    assert code == 0, (data, err)

    os.rename(root / "Report.txt", root / "report.txt")
    os.rename(root / "Photos", root / "photos")
    share.wait_indexed()
    plan = status(share.url, dest, "--json")
    assert json.loads(plan.stdout)["plan"].get("rename") == ["photos", "photos/Beach.JPG", "report.txt"], plan.stdout
    code, data, err = pull(share.url, dest, "--delete")
    assert code == 0, (data, err)
    assert sorted(data["done"].get("rename", [])) == ["photos", "photos/Beach.JPG", "report.txt"], data
    assert "delete" not in data["done"] and "download" not in data["done"], data
    assert data["bytes_downloaded"] == 0
    assert not (dest / ".davsync" / "trash").exists() or not list((dest / ".davsync" / "trash").rglob("*.*"))
    again = status(share.url, dest)
    assert again.returncode == 0 and "In sync." in again.stdout, again.stdout + again.stderr

    # lowntfs-3g's ignore_case shows every name in lower case: look at the names as stored.
    ntfs.unmount()
    ntfs.mount([require_tool("ntfs-3g"), "-o", "ro", str(ntfs.image)])
    names = set(os.listdir(ntfs.mnt / "sync_root"))
    assert {"report.txt", "photos"} <= names and not {"Report.txt", "Photos"} & names, names


def test_ntfs_watch_follows_changes_and_case_renames(share, ntfs: Volume, tmp_path: Path) -> None:
    (share.root / "Notes.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = ntfs.mnt / "sync_root"
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        watcher = subprocess.Popen([sys.executable, "-m", "davsync", "watch", share.url, str(dest), "-u", "alice",
                                    "--interval", "0.3", "--delete"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: (dest / "Notes.txt").exists(), 30, "the first pull")
        (share.root / "Notes.txt").write_bytes(b"v2, longer")
        wait_until(lambda: (dest / "Notes.txt").read_bytes() == b"v2, longer", 30, "watch to pull an edit")
        os.rename(share.root / "Notes.txt", share.root / "NOTES.txt")
        wait_until(lambda: "renamed: NOTES.txt" in log.read_text(), 30, "watch to rename locally")
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(15) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    text = log.read_text()
    assert "deleted" not in text and "Traceback" not in text, text
    assert (dest / "NOTES.txt").read_bytes() == b"v2, longer"


def test_exfat_coarse_mtimes_and_unstable_file_ids(share, exfat: Volume) -> None:
    names = [f"file{i}.txt" for i in range(6)]
    for i, name in enumerate(names):
        path = share.root / name
        path.write_bytes(b"x" * (100 + i))
        os.utime(path, (1_700_000_001.37 + i, 1_700_000_001.37 + i))  # odd seconds, fractions
    share.wait_indexed()
    dest = exfat.mnt / "stick"
    conn = ConnectionSettings(share.url, "alice", PASSWORDS["alice"])
    first = run_once(conn, dest, RunOptions())
    assert first.exit_code == 0 and len(first.done["download"]) == len(names), first.as_json()
    for i, name in enumerate(names):
        assert abs((dest / name).stat().st_mtime - (1_700_000_001.37 + i)) <= 2.0
    ids_before = {n: (dest / n).stat().st_ino for n in names}

    exfat.unmount()
    exfat.mount()
    ids_after = {n: (dest / n).stat().st_ino for n in reversed(names)}  # a new mount numbers files anew
    assert ids_after != ids_before, "this exFAT driver kept its file IDs; the test proves nothing"

    second = run_once(conn, dest, RunOptions(full=True))  # look at every file, not just the server's changes
    assert second.exit_code == 0, second.as_json()
    assert second.local_files_read == 0, "changed file IDs made files look modified"
    assert second.plan.in_sync and not second.done.get("download") and not second.done.get("update")
    assert status(share.url, dest).returncode == 0
