"""Power cuts (issue 24 item 6): nothing acknowledged is lost, nothing recorded is missing.

The share, the server's state dir and a client's DEST sit on tests/powercut.py's FUSE disk,
which keeps only what was fsynced (file data at the file's fsync, folder entries at the
folder's fsync). A cut is kill -9 of every process using the disk, then unmounting it: the
backing folder then holds what a power cut would have left. The server is restarted on it, and
the client run again, and both must agree with what they had acknowledged.

(This kernel has no device-mapper, so dm-flakey and dm-log-writes are out of reach; the FUSE
layer is the filesystem-level substitute, as LazyFS is.)
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, ServeProcess, kill_hard, wait_until
from powercut_ledger import Acks, mtimes_lost

from davsync.server.names import SHARE_MARKER

ENV = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
AUTH = ("alice", PASSWORDS["alice"])


def _fuse_missing() -> str | None:
    if sys.platform != "linux":
        return "the power-cut disk is a Linux FUSE filesystem"
    if os.geteuid() != 0:
        return "mounting the power-cut FUSE disk needs root (CI runs as root)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    import shutil

    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3); .ci/run installs it"
    try:
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"mfusepy cannot load libfuse3 ({e}); install the test extra and fuse3"
    return None


pytestmark = pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))


@dataclass
class LazyDisk:
    """tests/powercut.py mounted at `mount`, over `backing`."""

    backing: Path
    mount: Path
    live: Path
    proc: subprocess.Popen[bytes] | None = None
    fsyncs: list[str] = field(default_factory=list)

    def up(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.powercut", str(self.backing), str(self.mount), str(self.live)],
            cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        proc = self.proc

        def mounted() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the FUSE disk did not mount: {proc.stdout.read().decode() if proc.stdout else ''}")
            return os.path.ismount(self.mount)

        wait_until(mounted, 30, "the power-cut FUSE disk to mount")

    def cut(self) -> None:
        """The power cut (the caller has killed every process using the disk)."""
        if self.proc is None:
            return

        def unmounted() -> bool:
            return subprocess.run(["fusermount3", "-u", str(self.mount)], capture_output=True).returncode == 0

        wait_until(unmounted, 30, "the FUSE disk to unmount (nothing may hold it open)")
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, out.decode()
        self.fsyncs.append(out.decode().strip())
        self.proc = None


@pytest.fixture
def lazy_disk(tmp_path: Path) -> Iterator[LazyDisk]:
    disk = LazyDisk(tmp_path / "backing", tmp_path / "mnt", tmp_path / "live")
    disk.backing.mkdir()
    disk.mount.mkdir()
    yield disk
    if disk.proc is not None:
        subprocess.run(["fusermount3", "-u", "-z", str(disk.mount)], capture_output=True)
        disk.proc.kill()
        disk.proc.wait(30)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def disk_md5s(root: Path) -> dict[str, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = md5(p.read_bytes())
    return out


def disk_versions(root: Path) -> dict[str, tuple[str, int]]:
    """Path -> (MD5, mtime in whole seconds, as X-OC-Mtime sets it) of every file under root."""
    return {p: (m, int((root / p).stat().st_mtime)) for p, m in disk_md5s(root).items()}


# --- the server ------------------------------------------------------------------------------


def curl_writer(url: str, acks: Acks, stop: threading.Event, seed: int, procs: list[subprocess.Popen[bytes]]) -> None:
    """New folders, new files and overwrites with curl, one request at a time, until stopped."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        folder = f"round{seed}/f{n // 7}"
        if folder not in acks.folders:
            for part in (f"round{seed}", folder):
                if part not in acks.folders:
                    code = _curl(["-X", "MKCOL", url + part + "/"], procs)
                    if code in ("201", "405"):
                        acks.folders.add(part)
        roll = rng.random()
        if acks.done and roll < 0.2:  # a MOVE to a new name, or a DELETE
            old = rng.choice(sorted(acks.done))
            new = f"{folder}/moved {n}.bin" if roll < 0.1 else None
            acks.removal_sent(old)
            if new is None:
                code = _curl(["-X", "DELETE", url + requests.utils.quote(old)], procs)
            else:
                dest = url + requests.utils.quote(new)
                code = _curl(["-X", "MOVE", "-H", f"Destination: {dest}", url + requests.utils.quote(old)], procs)
            acks.removal_answered(old, new, code)
            continue
        if acks.done and roll < 0.35:
            path = rng.choice(sorted(acks.done))  # an overwrite
        else:
            path = f"{folder}/file {n}.bin"
        data = rng.randbytes(rng.randint(1, 40_000))
        mtime = 1_500_000_000 + n
        acks.put_sent(path, md5(data), mtime)
        code = _curl(["-T", "-", "-H", f"X-OC-Mtime: {mtime}", url + requests.utils.quote(path)], procs, data)
        acks.put_answered(path, md5(data), mtime, code)


def _curl(args: list[str], procs: list[subprocess.Popen[bytes]], data: bytes | None = None) -> str:
    proc = subprocess.Popen(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "{}:{}".format(*AUTH), *args],
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
    )  # fmt: skip
    procs.append(proc)
    out, _ = proc.communicate(data)
    return out.decode()


def index_rows(state: Path) -> dict[str, str | None]:
    db = sqlite3.connect(f"file:{state / 'index.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT path, md5 FROM entries WHERE deleted=0 AND is_dir=0").fetchall()
    except sqlite3.OperationalError as e:
        raise AssertionError(f"the index did not survive the power cut ({e})") from None
    finally:
        db.close()
    return dict(rows)


def check_server_after_cut(share: Path, state: Path, acks: Acks) -> None:
    on_disk = disk_md5s(share)
    lost = {p: m for p, m in acks.done.items() if on_disk.get(p) not in acks.allowed(p)}
    assert not lost, (
        f"acknowledged uploads lost or wrong after the power cut: {sorted(lost)[:10]} (of {len(lost)}); "
        f"on disk: {[(p, on_disk.get(p), sorted(map(str, acks.allowed(p)))) for p in sorted(lost)[:3]]}"
    )
    moved = mtimes_lost(acks.expected(), disk_versions(share))
    assert not moved, f"acknowledged uploads lost their X-OC-Mtime in the power cut: {moved[:10]}"
    back = sorted(p for p in acks.gone if p in on_disk and not acks.pending.get(p))
    assert not back, f"acknowledged DELETEs or MOVEs undone by the power cut: {back[:10]}"
    missing = acks.unbacked_rows(index_rows(state), on_disk)
    assert not missing, f"the index describes files the disk does not hold after the cut: {sorted(missing)[:10]}"


def test_a_power_cut_loses_no_acknowledged_upload(
    lazy_disk: LazyDisk, serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    """Uploads by curl and `davsync push`, a power cut at a random point, three times."""
    require_curl()
    rng = random.Random(24)
    acks = Acks()
    share, state = lazy_disk.backing / "share", lazy_disk.backing / "state"
    share.mkdir()
    src = tmp_path / "src"
    for i in range(40):
        p = src / f"pushed {i % 4}" / f"p{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randint(1, 20_000)))
    pushed = disk_md5s(src)
    for round_no in range(3):
        lazy_disk.up()
        server = serve_process(lazy_disk.mount / "share", state_dir=lazy_disk.mount / "state")
        if round_no == 0:
            push = subprocess.run(
                [sys.executable, "-m", "davsync", "push", server.url, str(src), "--user", "alice", "--quiet"],
                env=ENV, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert push.returncode == 0, push.stdout + push.stderr
            acks.done.update({f"{p}": m for p, m in pushed.items() if not p.startswith(".davsync")})
        stop = threading.Event()
        procs: list[subprocess.Popen[bytes]] = []
        writer = threading.Thread(target=curl_writer, args=(server.url, acks, stop, round_no, procs), daemon=True)
        writer.start()
        goal = len(acks.done) + rng.randint(3, 25)
        wait_until(lambda: len(acks.done) >= goal or not writer.is_alive(), 240, "uploads to be acknowledged")
        time.sleep(rng.random() * 0.3)  # a random point: mid-request or between requests
        kill_hard(server.proc.pid)  # the power goes: the server and its clients with it
        stop.set()
        for p in procs:
            if p.poll() is None:
                try:
                    kill_hard(p.pid)
                except ProcessLookupError:
                    pass  # it finished meanwhile
        writer.join(60)
        server.proc.wait(30)
        lazy_disk.cut()
        check_server_after_cut(share, state, acks)
        if round_no == 0:  # push sent each file's mtime (X-OC-Mtime), and the server accepted it
            sent = {p: (m, int((src / p).stat().st_mtime)) for p, m in pushed.items()}
            moved = mtimes_lost(sent, disk_versions(share))
            assert not moved, f"pushed files lost their acknowledged mtime in the cut: {moved[:10]}"
        # restart on the backing folder itself: what it serves is what was acknowledged
        again = serve_process(share, state_dir=state)
        served = served_md5s(again.url, acks.done)
        wrong = {p for p in acks.done if served.get(p) not in acks.allowed(p)}
        assert not wrong, f"after the restart the server serves other content for {sorted(wrong)[:10]}"
        again.stop()
        acks.settle(disk_md5s(share))


def served_md5s(url: str, paths: dict[str, str]) -> dict[str, str]:
    out = {}
    with requests.Session() as s:
        s.auth = AUTH
        for path in paths:
            r = s.get(url + requests.utils.quote(path), timeout=30)
            if r.status_code == 200:
                out[path] = md5(r.content)
    return out


def require_curl() -> None:
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (apt-get install curl); .ci/run installs it")


# --- the client ------------------------------------------------------------------------------


def journal_bases(dest: Path) -> dict[str, str | None]:
    db = dest / ".davsync" / "state.db"
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT path, md5 FROM placed WHERE is_dir=0").fetchall())
    except sqlite3.OperationalError:
        return {}  # not created yet, or lost with the cut: a lost journal is a union (nothing deleted)
    finally:
        conn.close()


def check_dest_after_cut(dest: Path, versions: dict[str, set[str]], finished: bool) -> None:
    """Every file davsync placed or recorded is a whole version the server had; a finished run's
    files are all there."""
    on_disk = {p: m for p, m in disk_md5s(dest).items() if not p.startswith(".davsync/")}
    torn = sorted(p for p, m in on_disk.items() if m not in versions.get(p, set()))
    assert not torn, f"files in DEST that no version on the server had (torn or empty) after the cut: {torn[:10]}"
    bases = journal_bases(dest)
    absent = sorted(p for p in bases if p not in on_disk)
    assert not absent, f"the journal records files that the power cut took: {absent[:10]} (of {len(absent)})"
    if finished:
        lost = sorted(p for p in versions if p not in on_disk)
        assert not lost, f"a run that had finished lost files to the power cut: {lost[:10]} (of {len(lost)})"


def write_tree(root: Path, rng: random.Random, versions: dict[str, set[str]], count: int, tag: str) -> None:
    for i in range(count):
        p = root / f"d{i % 6}" / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(1, 30_000)) + tag.encode()
        p.write_bytes(data)
        versions.setdefault(p.relative_to(root).as_posix(), set()).add(md5(data))


@pytest.mark.parametrize("command", ["pull", "sync"])
def test_a_power_cut_under_dest_leaves_no_base_without_its_file(
    command: str, lazy_disk: LazyDisk, serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    """`pull` and `sync` into a DEST on the power-cut disk: a finished run, cut; then the server's
    files change and a second run is cut at a random point. Every file in DEST is a whole
    version, every base in the journal names a file on disk, and a rerun completes."""
    rng = random.Random(command)
    root = tmp_path / "root"
    versions: dict[str, set[str]] = {}
    write_tree(root, rng, versions, 120, "v1")
    server = serve_process(root, state_dir=tmp_path / "state")
    (lazy_disk.backing / "dest").mkdir()
    back = lazy_disk.backing / "dest"
    cmd = [sys.executable, "-m", "davsync", command, server.url, str(lazy_disk.mount / "dest"), "--user", "alice"]
    lazy_disk.up()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lazy_disk.cut()
    check_dest_after_cut(back, versions, finished=True)

    write_tree(root, rng, versions, 160, "v2")  # 120 changed, 40 new
    lazy_disk.up()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    goal = rng.randint(5, 60)
    wait_until(
        lambda: proc.poll() is not None or len(list((lazy_disk.mount / "dest").rglob("*v2*"))) + len(
            [p for p in (lazy_disk.mount / "dest").rglob("f1[2-5]?.bin")]) >= goal,
        240, "files to be placed",
    )  # fmt: skip
    time.sleep(rng.random() * 0.2)
    if proc.poll() is None:
        kill_hard(proc.pid)
    proc.wait(30)
    lazy_disk.cut()
    check_dest_after_cut(back, versions, finished=False)
    rerun = subprocess.run([*cmd[:-3], str(back), "--user", "alice"], env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    got = {p: m for p, m in disk_md5s(back).items() if not p.startswith(".davsync")}
    assert got == {p: m for p, m in disk_md5s(root).items() if p != SHARE_MARKER}


def test_a_batch_flush_on_a_fuse_disk_survives_a_power_cut(lazy_disk: LazyDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    """osfs.flush_files makes a large batch durable with one syncfs where that is safe; on a
    FUSE disk (ntfs-3g, exfat-fuse) syncfs reaches no daemon and flushes nothing, so each file
    must be fsynced. (The limit on the system's unwritten data is lifted here: otherwise a busy
    machine falls back to fsyncs anyway and the test would pass by luck.)"""
    from davsync import osfs

    monkeypatch.setattr(osfs, "SYNCFS_MAX_DIRTY", 2**62)
    lazy_disk.up()
    files = {lazy_disk.mount / f"f{i}.bin": os.urandom(1000 + i) for i in range(osfs.SYNCFS_MIN + 4)}
    for path, data in files.items():
        osfs.write_new_file(path, data, None, durable=False)
    osfs.flush_files(list(files))
    osfs.flush_files([lazy_disk.mount], folders=True)
    lazy_disk.cut()
    back = {p.name: p.read_bytes() for p in lazy_disk.backing.iterdir()}
    assert back == {p.name: d for p, d in files.items()}, "a batch flush_files called durable was lost in the cut"


def test_the_power_cut_disk_keeps_a_durable_name_on_its_own_content_when_the_inode_is_reused(
    lazy_disk: LazyDisk,
) -> None:
    """The layer's ids are its own, not LIVE's inode numbers (a suspect while a lost upload was
    traced): a durable file deleted and a new one given its inode, neither folder change
    fsynced, leave the old name with the old bytes; a MOVE whose destination folder alone was
    fsynced leaves both names (POSIX promises nothing more)."""
    (lazy_disk.backing / "a").mkdir()
    (lazy_disk.backing / "b").mkdir()
    (lazy_disk.backing / "a" / "old.bin").write_bytes(b"old bytes")
    (lazy_disk.backing / "a" / "moving.bin").write_bytes(b"moving bytes")
    lazy_disk.up()
    a, b = lazy_disk.mount / "a", lazy_disk.mount / "b"
    freed = (a / "old.bin").stat().st_ino
    (a / "old.bin").unlink()
    for i in range(50):  # ext4 hands a freed inode out again at once; try a few names if not
        new = a / f"new{i}.bin"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"new bytes")
        os.fsync(fd)
        os.close(fd)
        if new.stat().st_ino == freed:
            break
    else:
        pytest.skip("the backing filesystem never reused the freed inode")
    os.rename(a / "moving.bin", b / "moving.bin")
    dfd = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    lazy_disk.cut()
    back = lazy_disk.backing
    assert (back / "a" / "old.bin").read_bytes() == b"old bytes"
    assert sorted(p.name for p in (back / "a").iterdir()) == ["moving.bin", "old.bin"]
    assert (back / "b" / "moving.bin").read_bytes() == b"moving bytes"
    assert (back / "a" / "moving.bin").read_bytes() == b"moving bytes"
