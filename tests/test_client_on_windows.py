"""What only real Windows CPython can show: files held open without sharing, Windows' own file
locking, the hidden attribute. Run on the Windows lane (tests/windows/lane.sh); skipped elsewhere.
(test_client_windows.py approximates some of this on Linux with a shim.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import PASSWORDS

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="real Windows CPython only: run by tests/windows/lane.sh")


def davsync(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    return subprocess.run([sys.executable, "-m", "davsync", *args], capture_output=True, text=True, encoding="utf-8",
                          env=env, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip


@contextmanager
def held_without_sharing(path: Path) -> Iterator[None]:
    """Open `path` as Excel does: no sharing, so every other open fails with WinError 32."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                                     wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]  # fmt: skip
    generic_read_write, no_sharing, open_existing = 0xC0000000, 0, 3
    handle = kernel32.CreateFileW(str(path), generic_read_write, no_sharing, None, open_existing, 0, None)
    if handle in (None, wintypes.HANDLE(-1).value):
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        yield
    finally:
        kernel32.CloseHandle(handle)


def test_a_local_file_held_open_without_sharing_is_in_use_and_retried(share, tmp_path: Path) -> None:
    dest = tmp_path / "pc"
    assert davsync("sync", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    (dest / "budget.xlsx").write_bytes(b"numbers")
    (dest / "notes.txt").write_bytes(b"notes")
    with held_without_sharing(dest / "budget.xlsx"):
        with pytest.raises(PermissionError):
            (dest / "budget.xlsx").read_bytes()  # guard the guard: Windows refuses a second open
        proc = davsync("sync", share.url, str(dest), "-u", "alice")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "budget.xlsx" in out and "in use by another program; retried next run" in out, out
    assert "Permission denied" not in out and "Traceback" not in out, out
    assert not (share.root / "budget.xlsx").exists() and (share.root / "notes.txt").read_bytes() == b"notes"
    later = davsync("sync", share.url, str(dest), "-u", "alice", "-q")  # the program closed it
    assert later.returncode == 0, later.stdout + later.stderr
    assert (share.root / "budget.xlsx").read_bytes() == b"numbers"


def test_a_deletion_deferred_by_a_file_in_use_leaves_no_empty_trash_folder(share, tmp_path: Path) -> None:
    (share.root / "held.xlsx").write_bytes(b"old")
    (share.root / "stays.txt").write_bytes(b"stays")  # an emptied share refuses every deletion
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert davsync("pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    (share.root / "held.xlsx").unlink()
    share.wait_indexed()
    with held_without_sharing(dest / "held.xlsx"):
        proc = davsync("pull", share.url, str(dest), "-u", "alice", "--delete")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3 and "held.xlsx is in use by another program, so it was not deleted" in out, out
    trash = dest / ".davsync" / "trash"
    leftovers = sorted(trash.rglob("*")) if trash.exists() else []
    assert not leftovers, leftovers
    assert (dest / "held.xlsx").read_bytes() == b"old"


def test_a_second_run_on_the_same_folder_is_told_it_is_busy(share, tmp_path: Path) -> None:
    """msvcrt.locking (through filelock) between two processes."""
    from davsync import osfs

    dest = tmp_path / "pc"
    assert davsync("pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    with osfs.exclusive_lock(dest / ".davsync" / "lock"):
        proc = davsync("pull", share.url, str(dest), "-u", "alice")
    assert proc.returncode == 2 and "another davsync pull, sync or watch is running on" in proc.stderr, proc.stderr
    assert davsync("pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0


def test_the_state_folder_is_hidden(share, tmp_path: Path) -> None:
    import ctypes

    dest = tmp_path / "pc"
    assert davsync("pull", share.url, str(dest), "-u", "alice", "-q").returncode == 0
    attributes = ctypes.windll.kernel32.GetFileAttributesW(str(dest / ".davsync"))
    assert attributes != 0xFFFFFFFF and attributes & 0x2, hex(attributes)  # FILE_ATTRIBUTE_HIDDEN
