"""Type-check the client for Windows and macOS from Linux.

typeshed knows which APIs exist on which platform (`fcntl`, `os.O_DIRECTORY`,
`os.fdatasync`, `ctypes.windll`, ...), so `mypy --platform win32` fails on any call that
would raise AttributeError on Windows. The standard library's stubs are always read;
other modules (the Linux-only server, third-party packages) are not followed, which keeps
each run at a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The client, the command line and every shared top-level module (the server is Linux-only).
CHECKED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "davsync").glob("*.py")) + ["davsync/client"]


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_client_type_checks_for(platform: str, tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extras: pip install -e '.[test]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--platform", platform, "--python-version", "3.11",
         "--ignore-missing-imports", "--follow-imports=skip", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), *CHECKED],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"mypy --platform {platform}:\n{proc.stdout}{proc.stderr}"


def test_the_check_catches_a_windows_only_gap(tmp_path: Path) -> None:
    """The same command flags code that would fail on Windows (so a clean run means something)."""
    pytest.importorskip("mypy", reason="mypy is in the test extras: pip install -e '.[test]'")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport fcntl\n\ndef f(fd: int) -> None:\n    os.fdatasync(fd)\n    fcntl.flock(fd, 0)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--platform", "win32", "--ignore-missing-imports", "--follow-imports=skip",
         "--cache-dir", str(tmp_path / "cache"), str(bad)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "fdatasync" in proc.stdout and "flock" in proc.stdout


FORBIDDEN = ("import fcntl", "os.O_DIRECTORY", "os.O_CLOEXEC", "os.O_NOFOLLOW", "os.fdatasync", "msvcrt")


def test_platform_specific_calls_live_only_in_osfs() -> None:
    """Client-side code reaches platform-specific file APIs only through davsync/osfs.py."""
    files = [p for p in sorted((ROOT / "davsync").glob("*.py")) if p.name != "osfs.py"]
    files += sorted((ROOT / "davsync" / "client").glob("*.py"))
    offenders = [f"{f.relative_to(ROOT)}: {token}" for f in files for token in FORBIDDEN if token in f.read_text()]
    offenders += [
        f"{f.relative_to(ROOT)}: os.utime on an fd"
        for f in files
        if "os.utime(fd" in f.read_text() or "os.utime(self._fd" in f.read_text()
    ]
    assert not offenders, offenders
