"""pull, status and watch under a Windows-semantics shim (tests/winshim/sitecustomize.py).

AN APPROXIMATION: the client runs on Linux with what CPython lacks on Windows removed,
text-mode opens refused, sharing violations injected and redirected output encoded in
cp1252. It proves the client takes no POSIX-only path and survives those conditions; it
is not a run on Windows (none of davsync's tests ran on a real Windows machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSWORDS, wait_until

from davsync.server.names import is_internal_name

SHIM = Path(__file__).resolve().parent / "winshim"
BINARY = b"line one\nline two\r\nctrl-z \x1a then more\n" + bytes(range(256)) * 40
JAPANESE = "報告書 2024年.txt"


def shim_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAVSYNC_WINSHIM", "PYTHONIOENCODING"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SHIM), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["DAVSYNC_PASSWORD"] = PASSWORDS["alice"]
    env["DAVSYNC_WINSHIM_LOG"] = str(tmp_path / "winshim.log")
    env.pop("PYTHONUTF8", None)
    env.update(extra)
    return env


def davsync(tmp_path: Path, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[bytes]:
    """Run the client as a user would, under the shim; output as raw bytes."""
    cmd = [sys.executable, "-m", "davsync", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, env=shim_env(tmp_path, **extra))


def text(proc: subprocess.CompletedProcess[bytes]) -> str:
    return (proc.stdout + proc.stderr).decode("utf-8")  # strict: the output must be UTF-8


def test_the_shim_removes_and_refuses_what_windows_does(tmp_path: Path) -> None:
    """Guard the guard: without these the rest of this file would prove nothing."""
    probe = (
        "import os, sys\n"
        "try:\n    import fcntl\nexcept ImportError:\n    print('no fcntl')\n"
        "print([n for n in ('O_DIRECTORY', 'O_CLOEXEC', 'O_NOFOLLOW', 'O_DIRECT', 'fdatasync', 'pwrite') if hasattr(os, n)])\n"
        "print(os.utime in os.supports_fd)\n"
        f"fd = os.open({str(tmp_path / 'b')!r}, os.O_WRONLY | os.O_CREAT | os.O_BINARY); os.close(fd); print('binary ok')\n"
        f"os.open({str(tmp_path / 't')!r}, os.O_WRONLY | os.O_CREAT)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=shim_env(tmp_path), timeout=60)
    out = proc.stdout.decode()
    assert out.splitlines()[:4] == ["no fcntl", "[]", "False", "binary ok"], out + proc.stderr.decode()
    assert proc.returncode == 1 and b"text mode on Windows" in proc.stderr
    cp = subprocess.run([sys.executable, "-c", f"print({JAPANESE!r})"], capture_output=True, env=shim_env(tmp_path))
    assert cp.returncode == 1 and b"UnicodeEncodeError" in cp.stderr  # what a plain print does on Windows


def make_tree(root: Path) -> None:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "binary.bin").write_bytes(BINARY)
    (root / "docs" / "deep" / JAPANESE).write_bytes("日本語の内容\n".encode())
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024) + BINARY)  # above the small-file size: pipelined
    (root / "plain.txt").write_bytes(b"a\nb\n")
    os.utime(root / "big.bin", (1_600_000_001, 1_600_000_001))


def on_disk(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if ".davsync" not in p.relative_to(root).parts and not is_internal_name(p.name)
    }


def test_pull_and_status_under_windows_semantics(share, tmp_path: Path) -> None:
    make_tree(share.root)
    share.wait_indexed()
    dest = tmp_path / "mirror"
    first = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice")
    out = text(first)  # stdout went through cp1252: davsync must have switched it to UTF-8
    assert first.returncode == 0, out
    assert JAPANESE in out or "downloaded" in out or "Done" in out, out
    assert on_disk(dest) == on_disk(share.root), "binary content changed on the way (text mode?)"
    assert int((dest / "big.bin").stat().st_mtime) == 1_600_000_001
    assert not list((dest / ".davsync" / "partial").iterdir())

    status = davsync(tmp_path, "status", share.url, str(dest), "-u", "alice")
    assert status.returncode == 0 and "In sync." in text(status), text(status)

    (share.root / "docs" / "deep" / JAPANESE).write_bytes("変更\r\n".encode())
    share.wait_indexed()
    status = davsync(tmp_path, "status", share.url, str(dest), "-u", "alice")
    assert status.returncode == 1 and JAPANESE in text(status), text(status)
    again = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "--json")
    assert again.returncode == 0, text(again)
    data = json.loads(again.stdout.decode("utf-8"))
    assert data["done"] == {"update": [f"docs/deep/{JAPANESE}"]}
    assert on_disk(dest) == on_disk(share.root)


def test_a_sharing_violation_that_clears_is_retried(share, tmp_path: Path) -> None:
    (share.root / "report.xlsx").write_bytes(b"v1\n")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    (share.root / "report.xlsx").write_bytes(b"v2 from the server\n")
    share.wait_indexed()
    # Excel lets go after three attempts (about 0.35 s).
    proc = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "--json",
                   DAVSYNC_WINSHIM_BUSY="report.xlsx", DAVSYNC_WINSHIM_BUSY_TIMES="3")  # fmt: skip
    assert proc.returncode == 0, text(proc)
    assert (dest / "report.xlsx").read_bytes() == b"v2 from the server\n"
    assert (tmp_path / "winshim.log").read_text().count("busy") == 3


def test_a_deletion_deferred_by_a_file_in_use_leaves_no_empty_trash_folder(share, tmp_path: Path) -> None:
    for name in ("held.xlsx", "gone.txt"):
        (share.root / name).write_bytes(b"old\n")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    (share.root / "held.xlsx").unlink()
    share.wait_indexed()
    proc = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "--delete", DAVSYNC_WINSHIM_BUSY="held.xlsx")
    out = text(proc)
    assert proc.returncode == 3 and "held.xlsx is in use by another program, so it was not deleted" in out, out
    assert (dest / "held.xlsx").read_bytes() == b"old\n"
    trash = dest / ".davsync" / "trash"
    leftovers = sorted(trash.rglob("*")) if trash.exists() else []
    assert not leftovers, leftovers
    later = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "--delete", "-q")  # the program closed it
    assert later.returncode == 0, text(later)
    assert [p.name for p in trash.rglob("*") if p.is_file()] == ["held.xlsx"]

def test_a_file_held_open_is_reported_and_the_rest_goes_on(share, tmp_path: Path) -> None:
    for name in ("held.xlsx", "other.txt", "third.txt"):
        (share.root / name).write_bytes(b"old\n")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    for name in ("held.xlsx", "other.txt", "third.txt"):
        (share.root / name).write_bytes(b"new\n")
    share.wait_indexed()
    started = time.monotonic()
    proc = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", DAVSYNC_WINSHIM_BUSY="held.xlsx")
    out = text(proc)
    assert proc.returncode == 3, out  # finished, one file not synced
    assert "held.xlsx is in use by another program; retried next run" in out
    assert time.monotonic() - started < 30
    assert (dest / "held.xlsx").read_bytes() == b"old\n"
    assert (dest / "other.txt").read_bytes() == (dest / "third.txt").read_bytes() == b"new\n"
    assert "Traceback" not in out
    later = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "-q")  # the program closed it
    assert later.returncode == 0, text(later)
    assert (dest / "held.xlsx").read_bytes() == b"new\n"


def test_watch_under_windows_semantics_stops_on_ctrl_c(share, tmp_path: Path) -> None:
    (share.root / "first.bin").write_bytes(BINARY)
    share.wait_indexed()
    dest = tmp_path / "mirror"
    log = tmp_path / "watch.log"
    with open(log, "wb") as out:
        watcher = subprocess.Popen([sys.executable, "-m", "davsync", "watch", share.url, str(dest), "-u", "alice",
                                    "--interval", "0.3"], env=shim_env(tmp_path), stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: (dest / "first.bin").exists(), 30, "the first pull")
        (share.root / JAPANESE).write_bytes(BINARY)
        wait_until(lambda: (dest / JAPANESE).exists(), 30, "watch to pull a new file")
        assert (dest / JAPANESE).read_bytes() == BINARY
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(15) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    written = log.read_bytes().decode("utf-8")
    assert "stopped" in written and JAPANESE in written and "Traceback" not in written


@pytest.mark.parametrize("shim", [False, True], ids=["linux", "winshim"])
def test_ctrl_c_stops_a_pull_promptly_and_it_resumes(share, tmp_path: Path, shim: bool) -> None:
    """Ctrl-C during a slow download: the run stops within seconds (no wait for the
    download to finish), exits 130, keeps the partial file, and the next pull resumes."""
    from proxy import Faults, Proxy

    data = os.urandom(6 * 1024 * 1024)
    (share.root / "slow.bin").write_bytes(data)
    share.wait_indexed()
    dest = tmp_path / "mirror"
    proxy = Proxy(share.server.port, Faults(rate=400_000))  # ~15 s for the whole file
    env = shim_env(tmp_path) if shim else {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "davsync", "pull", proxy.url, str(dest), "-u", "alice", "-q"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            def partial_bytes() -> int:
                return sum(p.stat().st_size for p in (dest / ".davsync" / "partial").glob("*.part"))

            wait_until(lambda: partial_bytes() > 0, 30, "the download to be under way")
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            code = proc.wait(10)
            stopped_in = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode("utf-8") if proc.stderr else ""
        assert code == 130, err
        assert stopped_in < 5, f"took {stopped_in:.1f}s to stop"
        assert "interrupted" in err and "Traceback" not in err
        assert not (dest / "slow.bin").exists()
        partial = [p for p in (dest / ".davsync" / "partial").glob("*.part")]
        assert partial and 0 < partial[0].stat().st_size < len(data)
    finally:
        proxy.close()
    again = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "--json") if shim else subprocess.run(
        [sys.executable, "-m", "davsync", "pull", share.url, str(dest), "-u", "alice", "--json"],
        capture_output=True, env=env, timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["bytes_downloaded"] < len(data)  # resumed, not started over
    assert (dest / "slow.bin").read_bytes() == data


def test_links_and_junctions_inside_dest_are_not_followed(share, tmp_path: Path) -> None:
    """A symbolic link (on Windows also a junction) inside DEST pointing elsewhere: nothing is
    written through it; what lies behind it on the server is reported as skipped."""
    (share.root / "docs").mkdir()
    (share.root / "docs" / "a.txt").write_bytes(b"server")
    (share.root / "top.txt").write_bytes(b"top")
    share.wait_indexed()
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "mirror"
    dest.mkdir()
    (dest / "docs").symlink_to(outside, target_is_directory=True)
    proc = davsync(tmp_path, "pull", share.url, str(dest), "-u", "alice", "--json")
    data = json.loads(proc.stdout.decode("utf-8"))
    assert proc.returncode == 3, data
    assert list(outside.iterdir()) == []
    assert {"docs", "docs/a.txt"} <= {s["path"] for s in data["skipped"]}
    assert (dest / "docs").is_symlink()
    assert (dest / "top.txt").read_bytes() == b"top"
