"""Every file operation that differs between Linux, macOS and Windows, in one place.

The rest of davsync calls these and never `fcntl`, `os.O_DIRECTORY`, `os.O_CLOEXEC`,
`os.O_NOFOLLOW`, `os.fdatasync` or `os.utime` on an fd. Where it can, this module
detects a feature (`hasattr`, `os.supports_fd`) instead of asking for the platform,
so a Linux run with those features removed (tests/winshim) takes the same paths as
Windows does. Windows-only calls (attributes, volume information) sit behind
`sys.platform == "win32"` so type checkers see them for that platform only.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from .fileid import StrPath, filesystem_type

# Windows error codes of a file held open by another program (Office, a media player,
# Defender, the search indexer, OneDrive): ACCESS_DENIED, SHARING_VIOLATION, LOCK_VIOLATION.
SHARING_VIOLATIONS = frozenset({5, 32, 33})
REPLACE_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # ~3 s: most holds clear within a second

_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows: without it os.open is text mode (\n -> \r\n)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)  # absent on Windows, where fds are not inherited anyway
_O_DIRECTORY: int | None = getattr(os, "O_DIRECTORY", None)


class DestLocked(Exception):
    """Another process holds this lock."""


class FileInUse(OSError):
    """A file stayed held open by another program through every retry."""


# --- locking -----------------------------------------------------------------


@contextmanager
def exclusive_lock(path: StrPath) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on `path` (flock on POSIX, msvcrt.locking on Windows).

    The OS drops the lock when the process dies, so a crash never leaves DEST locked.
    """
    lock = filelock.FileLock(os.fspath(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DestLocked(os.fspath(path)) from None
    try:
        yield
    finally:
        lock.release()


# --- durable writes ------------------------------------------------------------


def write_new_file(
    path: StrPath, data: bytes | memoryview, mtime: float | None, *, durable: bool = True
) -> os.stat_result:
    """Write `data` to `path` (binary, truncating), set its mtime, fsync it; return its stat.

    The mtime is set through the fd where the OS allows it (one fewer path lookup) and
    by path after closing otherwise (Windows). `durable=False` leaves the fsync to a later
    `flush_files` over a whole batch.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY | _O_CLOEXEC, 0o666)
    by_fd = os.utime in os.supports_fd
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mtime is not None and by_fd:
            os.utime(fd, (mtime, mtime))
        if durable:
            os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if mtime is not None and not by_fd:
        set_mtime(path, mtime)
        st = os.stat(path)
    return st


FLUSHERS = 8  # concurrent fsyncs: journaling filesystems commit them together
SYNCFS_MIN = 16  # a batch at least this large is flushed with one syncfs where that is safe...
SYNCFS_MAX_DIRTY = 256 * 1024 * 1024  # ...that is, while little else waits to be written


def flush_files(paths: list[Path], *, folders: bool = False) -> None:
    """Make a batch of files (or, with `folders`, the renames in a batch of folders) durable.

    Linux: one syncfs(2) of their filesystem, when the batch is large and the system holds
    little other unwritten data (so the call cannot wait on someone else's big copy); it
    costs one journal commit instead of one per file. Otherwise one fsync each, several at a
    time, so the filesystem can still commit them together (ext4 and NTFS group concurrent
    flushes). Windows flushes a file only through a handle open for writing, and has no
    folder fsync.
    """
    if len(paths) >= SYNCFS_MIN and _syncfs(paths[0]):
        return
    if folders:
        one: Callable[[Path], None] = fsync_dir
    else:

        def one(path: Path) -> None:
            fd = os.open(path, os.O_RDWR | _O_BINARY | _O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    if len(paths) <= 1 or (folders and _O_DIRECTORY is None):
        for p in paths:
            one(p)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(FLUSHERS, len(paths)), thread_name_prefix="davsync-flush") as pool:
        for _ in pool.map(one, paths):
            pass


_syncfs_call: Callable[[int], int] | None = None


def _syncfs(path: Path) -> bool:
    """syncfs(2) on the filesystem holding `path` (Linux); False when not done (then fsync each)."""
    global _syncfs_call
    if sys.platform != "linux":
        return False
    # Only where syncfs is known to flush: on FUSE (ntfs-3g, exfat-fuse: a Pi's USB disk) it
    # reaches no daemon (the kernel sends FUSE_SYNCFS to virtiofs only), returns 0 and flushes
    # nothing; anything not known to honour it gets one fsync per file.
    if filesystem_type(path) not in DIRECT_FILESYSTEMS:
        return False
    if not 0 <= _dirty_bytes() <= SYNCFS_MAX_DIRTY:
        return False
    if _syncfs_call is None:
        import ctypes

        try:
            _syncfs_call = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs_call = lambda fd: -1  # noqa: E731 (no syncfs in this C library)
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return False
    try:
        return _syncfs_call(fd) == 0
    finally:
        os.close(fd)


def _dirty_bytes() -> int:
    """Unwritten data the kernel holds (Dirty + Writeback in /proc/meminfo); -1 when unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            text = f.read()
    except OSError:
        return -1
    total = 0
    for line in text.splitlines():
        if line.startswith((b"Dirty:", b"Writeback:")):
            total += int(line.split()[1]) * 1024
    return total


def flush_data(fd: int) -> None:
    """Flush a file's data (not necessarily its metadata) to disk: fdatasync where it
    exists (Linux), fsync elsewhere (Windows, macOS)."""
    sync = getattr(os, "fdatasync", None)
    if sync is None:
        os.fsync(fd)
    else:
        sync(fd)


DIRECT_ALIGN = 4096  # offsets, lengths and buffer addresses of writes that bypass the page cache
_O_DIRECT: int | None = getattr(os, "O_DIRECT", None)  # Linux (and some BSDs); not Windows or macOS
_PWRITE: Callable[[int, memoryview, int], int] | None = getattr(os, "pwrite", None)  # not on Windows
# Local disks only: on NFS, SMB or FUSE every direct write is a synchronous round trip or refused
# (and syncfs flushes nothing there: see _syncfs).
DIRECT_FILESYSTEMS = frozenset({"ext4", "ext3", "xfs", "btrfs", "f2fs"})


class Appender:
    """Appends a large download to a file, around the page cache where the platform allows.

    Copying a GiB into the page cache costs more CPU than receiving it (about 1.6 s per GiB
    on a small VM, as much as curl spends in all), and leaves all of it to be flushed before
    the rename. Where there is O_DIRECT (Linux), whole 4 KiB blocks from page-aligned buffers
    are written straight to the device: almost no CPU, nothing left dirty. A tail that is not
    a whole block, an unaligned start (a resume), a filesystem that is not a local disk's
    (DIRECT_FILESYSTEMS) or refuses O_DIRECT, and every other platform go through the page
    cache as usual. Durability is
    unchanged: the caller still fsyncs before the rename (which also flushes the device's cache).
    """

    def __init__(self, path: StrPath, fd: int, offset: int) -> None:
        """`fd`: the file, opened for appending; `offset`: its size now (where writing starts)."""
        self._fd = fd
        self._pos = offset
        self._direct: int | None = None
        if (
            _O_DIRECT is not None
            and _PWRITE is not None
            and offset % DIRECT_ALIGN == 0
            and filesystem_type(path) in DIRECT_FILESYSTEMS
        ):
            try:
                self._direct = os.open(path, os.O_WRONLY | _O_DIRECT | _O_CLOEXEC | _O_BINARY)
            except OSError:
                self._direct = None

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def write(self, data: memoryview) -> None:
        """Append all of `data` (a page-aligned buffer's start when it is to go direct)."""
        whole = len(data) - len(data) % DIRECT_ALIGN
        if self._direct is not None and _PWRITE is not None and whole:
            try:
                done = _PWRITE(self._direct, data[:whole], self._pos)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: this filesystem or device wants other alignment
                    raise
                self._stop_direct()
                done = 0
            self._pos += done
            data = data[done:]
        if data:
            self._stop_direct()  # the file's end is no longer aligned, or nothing goes direct
            while data:
                n = os.write(self._fd, data)
                self._pos += n
                data = data[n:]

    def _stop_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def close(self) -> None:
        self._stop_direct()


_FSYNC_REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF})


def fsync_dir(path: StrPath) -> None:
    """Make a rename in this folder durable.

    Windows cannot open a folder with os.open and NTFS journals its metadata, so there is
    nothing to do there; some POSIX filesystems refuse a folder fsync too (EINVAL, EOPNOTSUPP,
    EBADF), and that is accepted. Any other failure (EIO, ENOSPC) is raised: the rename may not
    be on the disk, so nothing may be acknowledged or recorded as done.
    """
    if _O_DIRECTORY is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except OSError:
        return  # not ours to read (or gone): the filesystem keeps its own order
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _FSYNC_REFUSED:
            raise
    finally:
        os.close(fd)


def make_dirs(path: StrPath, mode: int = 0o777) -> None:
    """mkdir -p that survives a power cut: each folder created is made durable in its parent
    (a file later fsynced inside a folder whose own entry was never flushed can vanish with it)."""
    path = Path(path)
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        fsync_dir(folder.parent)


def set_mtime(path: StrPath, seconds: float) -> None:
    """Set access and modification time by path (works on every OS)."""
    os.utime(path, (seconds, seconds))


# --- replacing files held by other programs -------------------------------------


def is_sharing_violation(e: OSError) -> bool:
    return getattr(e, "winerror", None) in SHARING_VIOLATIONS


def in_use_elsewhere(e: OSError) -> bool:
    """Did this fail because another program holds the file open without sharing (Excel, a media
    player)? os.replace says so (WinError 32/33), but open() goes through the C runtime, which
    turns a sharing violation into a bare EACCES: then a second open asks Windows itself."""
    if is_sharing_violation(e):
        return True
    if sys.platform != "win32" or not isinstance(e, PermissionError) or e.filename is None:
        return False
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    create = kernel32.CreateFileW
    create.restype = wintypes.HANDLE
    create.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                       wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]  # fmt: skip
    generic_read, share_all, open_existing = 0x80000000, 0x7, 3
    handle = create(os.fspath(e.filename), generic_read, share_all, None, open_existing, 0, None)
    if handle is None or handle == wintypes.HANDLE(-1).value:
        return ctypes.get_last_error() in SHARING_VIOLATIONS - {5}  # 5: really not allowed
    kernel32.CloseHandle(handle)
    return True  # it opens now: the other program has let go since


def _retrying(fn: Callable[[StrPath, StrPath], None], src: StrPath, dst: StrPath) -> None:
    for delay in (*REPLACE_RETRY_DELAYS, None):
        try:
            fn(src, dst)
            return
        except PermissionError as e:
            if not is_sharing_violation(e):
                raise
            if delay is None:
                raise FileInUse(
                    errno.EBUSY, "in use by another program; retried next run", os.fspath(dst)
                ) from None
            time.sleep(delay)


def replace(src: StrPath, dst: StrPath) -> None:
    """os.replace, retried with backoff while Windows reports the target (or source) in use.

    Raises FileInUse when it stays in use: the caller reports that one file and goes on.
    """
    _retrying(os.replace, src, dst)


def rename(src: StrPath, dst: StrPath) -> None:
    """os.rename (never overwrites on Windows), retried like `replace`."""
    _retrying(os.rename, src, dst)


CASE_TEMP_MARK = ".davsync-case-"  # NAME.davsync-case-PID: a letter-case rename half done


def is_own_temp(name: str) -> bool:
    """A name davsync itself gives a file for a moment inside DEST (never synced or judged)."""
    head, mark, pid = name.rpartition(CASE_TEMP_MARK)
    return bool(mark and head and pid.isdigit())


def rename_case(src: Path, dst: Path) -> None:
    """Rename to a name that differs only in letter case, on any filesystem.

    Linux sees NTFS/exFAT/ntfs-3g `ignore_case` names as one file and makes a direct rename
    a no-op, so go through a temporary name in the same folder.
    """
    tmp = src.with_name(f"{src.name}{CASE_TEMP_MARK}{os.getpid()}")
    rename(src, tmp)
    try:
        rename(tmp, dst)
    except OSError:
        rename(tmp, src)
        raise


# --- long paths ------------------------------------------------------------------


def extended_path(path: Path) -> Path:
    """On Windows, the `\\\\?\\` form of an absolute path, which is not limited to 260
    characters whether or not LongPathsEnabled is set. Elsewhere the absolute path."""
    absolute = os.path.abspath(path)
    if sys.platform != "win32":
        return Path(absolute)
    return Path(long_path_form(absolute))


def long_path_form(absolute: str) -> str:
    """`C:\\x` -> `\\\\?\\C:\\x`; `\\\\server\\share\\x` -> `\\\\?\\UNC\\server\\share\\x`."""
    if absolute.startswith("\\\\?\\"):
        return absolute
    if absolute.startswith("\\\\"):
        return "\\\\?\\UNC\\" + absolute[2:]
    return "\\\\?\\" + absolute


def display_path(path: StrPath) -> str:
    """A path as the user typed it: without the `\\\\?\\` prefix."""
    text = os.fspath(path)
    if text.startswith("\\\\?\\UNC\\"):
        return "\\\\" + text[8:]
    if text.startswith("\\\\?\\"):
        return text[4:]
    return text


# --- hidden ------------------------------------------------------------------------

_FILE_ATTRIBUTE_HIDDEN = 0x2


def hide(path: Path) -> None:
    """Mark davsync's own folder hidden in Explorer (a dot name already hides it elsewhere)."""
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        attrs = kernel32.GetFileAttributesW(str(path))
        if attrs != -1 and attrs != 0xFFFFFFFF and not attrs & _FILE_ATTRIBUTE_HIDDEN:
            kernel32.SetFileAttributesW(str(path), attrs | _FILE_ATTRIBUTE_HIDDEN)


# --- links ----------------------------------------------------------------------

_IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003  # a directory junction


def is_link(path: StrPath) -> bool:
    """A symbolic link, or on Windows a directory junction (which lstat reports as a folder)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return is_link_stat(st)


def is_link_stat(st: os.stat_result) -> bool:
    """`is_link` for an lstat already taken."""
    if stat.S_ISLNK(st.st_mode):
        return True
    if sys.platform == "win32":
        return st.st_reparse_tag == _IO_REPARSE_TAG_MOUNT_POINT
    return False


def entry_is_link(entry: os.DirEntry[str]) -> bool:
    """`is_link` for a scandir entry, without a system call where the listing already says."""
    if entry.is_symlink():
        return True
    if sys.platform == "win32":
        is_junction = getattr(entry, "is_junction", None)  # Python 3.12+
        if is_junction is not None:
            return bool(is_junction())
        return entry.stat(follow_symlinks=False).st_reparse_tag == _IO_REPARSE_TAG_MOUNT_POINT
    return False


def entry_stat(entry: os.DirEntry[str]) -> os.stat_result:
    """The lstat of a scandir entry with its file ID and device filled in.

    POSIX: `DirEntry.stat` (one lstat, cached). Windows: `DirEntry.stat` comes free from the
    listing but has st_ino and st_dev 0, so a file's identity costs one real lstat there.
    """
    st = entry.stat(follow_symlinks=False)
    if sys.platform == "win32" and not stat.S_ISDIR(st.st_mode):
        st = os.stat(entry.path, follow_symlinks=False)
    return st


# --- case sensitivity ---------------------------------------------------------------


def case_insensitive(folder: Path) -> bool | None:
    """Whether names in `folder` ignore letter case, found by looking up a name in another
    case; None when nothing there has a letter to try."""
    for probe in (folder / ".davsync", folder):
        swapped = probe.name.swapcase()
        if swapped == probe.name or not probe.exists():
            continue
        other = probe.with_name(swapped)
        try:
            return os.path.samefile(probe, other)
        except OSError:
            return False
    return None


def is_console(fd: int) -> bool:
    """Is `fd` an interactive terminal or console? On Windows isatty() is True for every character
    device, NUL included; only a real console input handle has a console mode."""
    if sys.platform == "win32":
        import ctypes
        import msvcrt
        from ctypes import wintypes

        try:
            handle = msvcrt.get_osfhandle(fd)
        except OSError:
            return False
        mode = wintypes.DWORD()
        return bool(ctypes.windll.kernel32.GetConsoleMode(wintypes.HANDLE(handle), ctypes.byref(mode)))
    return os.isatty(fd)
