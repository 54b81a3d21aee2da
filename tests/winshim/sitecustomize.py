"""A Windows-semantics shim for the davsync client, loaded through PYTHONPATH.

AN APPROXIMATION, NOT WINDOWS. It makes a Linux Python process lack what CPython lacks
on Windows and behave as Windows does where that loses data silently, so the client's
code paths for Windows run in CI:

- `fcntl` cannot be imported; `os.O_DIRECTORY`, `os.O_CLOEXEC`, `os.O_NOFOLLOW`, `os.O_DIRECT`, `os.pwrite`,
  `os.fdatasync` and `os.statvfs` are gone; `os.utime` takes no fd (and is not in
  `os.supports_fd`).
- `os.O_BINARY` exists (0x8000, as on Windows); `os.open` of a regular file without it
  raises, because on Windows it would open in text mode and turn every \\n into \\r\\n
  (filelock's own lock files are let through: they are never written).
  `os.open` of a folder fails with PermissionError, as on Windows.
- `os.replace`/`os.rename` raise PermissionError with winerror 32 (a sharing violation:
  the file is open in another program) for the names in DAVSYNC_WINSHIM_BUSY
  (comma-separated), DAVSYNC_WINSHIM_BUSY_TIMES times (default: always). Each refusal is
  logged as a line in DAVSYNC_WINSHIM_LOG.
- Redirected stdout is encoded in cp1252 with strict errors, stderr with backslashreplace
  (CPython's defaults on a Western-European Windows before 3.15).

It cannot give Windows' file locking, ACLs, NTFS semantics, reserved device names,
path lengths, console events or `sys.platform == "win32"`; the NTFS volume tests and
`mypy --platform win32` cover parts of that.
"""

from __future__ import annotations

import io
import os
import sys

O_BINARY = 0x8000
_real_open = os.open
_real_replace = os.replace
_real_rename = os.rename
_real_utime = os.utime
_busy = {n for n in os.environ.get("DAVSYNC_WINSHIM_BUSY", "").split(",") if n}
_busy_left = int(os.environ.get("DAVSYNC_WINSHIM_BUSY_TIMES", "-1"))
_log = os.environ.get("DAVSYNC_WINSHIM_LOG")


class TextModeOpen(RuntimeError):
    """os.open of a file without O_BINARY: text mode on Windows."""


sys.modules["fcntl"] = None  # type: ignore[assignment]  # `import fcntl` raises ImportError
for _name in ("O_DIRECTORY", "O_CLOEXEC", "O_NOFOLLOW", "O_DIRECT", "fdatasync", "pwrite", "statvfs"):
    if hasattr(os, _name):
        delattr(os, _name)
os.O_BINARY = O_BINARY  # type: ignore[attr-defined]


def _open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
    if dir_fd is not None:
        raise NotImplementedError("dir_fd unavailable on this platform")
    if os.path.isdir(path):
        raise PermissionError(13, "Permission denied", os.fspath(path))
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if not flags & O_BINARY and not caller.startswith("filelock"):  # its lock files stay empty
        raise TextModeOpen(f"winshim: os.open({os.fspath(path)!r}) without os.O_BINARY is text mode on Windows")
    return _real_open(path, flags & ~O_BINARY, mode)


def _utime(path, *args, **kw):  # type: ignore[no-untyped-def]
    if isinstance(path, int):
        raise TypeError("utime: path should be string, bytes, os.PathLike or None, not int")
    if kw.get("follow_symlinks") is False:
        raise NotImplementedError("utime: follow_symlinks unavailable on this platform")
    return _real_utime(path, *args, **kw)


def _sharing_violation(src, dst) -> None:  # type: ignore[no-untyped-def]
    global _busy_left
    names = {os.path.basename(os.fspath(src)), os.path.basename(os.fspath(dst))}
    if not (_busy & names) or _busy_left == 0:
        return
    if _busy_left > 0:
        _busy_left -= 1
    if _log:
        with open(_log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} busy {os.fspath(dst)}\n")
    e = PermissionError(13, "The process cannot access the file because it is being used by another process",
                        os.fspath(dst))  # fmt: skip
    e.winerror = 32  # type: ignore[attr-defined]
    raise e


def _replace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):  # type: ignore[no-untyped-def]
    _sharing_violation(src, dst)
    return _real_replace(src, dst)


def _rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):  # type: ignore[no-untyped-def]
    _sharing_violation(src, dst)
    return _real_rename(src, dst)


os.open = _open
os.utime = _utime
os.replace = _replace
os.rename = _rename
os.supports_fd = {f for f in os.supports_fd if f is not _real_utime}
os.supports_dir_fd = set()
os.supports_follow_symlinks = {os.stat}


def _ansi(stream, errors):  # type: ignore[no-untyped-def]
    if stream is None or stream.isatty():
        return stream
    stream.flush()
    return io.TextIOWrapper(stream.buffer, encoding="cp1252", errors=errors, line_buffering=stream.line_buffering)


sys.stdout = _ansi(sys.stdout, "strict")
sys.stderr = _ansi(sys.stderr, "backslashreplace")
os.environ["DAVSYNC_WINSHIM_ACTIVE"] = "1"
