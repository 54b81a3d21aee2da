"""Which file is this, and did it change: file IDs, change times, and the filesystem's kind.

The client's change detector compares a file's size, mtime, change time and file ID with the
journal's. Where a volume cannot keep IDs and change times (FAT and exFAT renumber files on
rename or remount; FUSE drivers invent them per mount) both read as 0, and the caller compares
content (MD5) where it must be sure. On Windows the change time is NTFS's ChangeTime, read
from the file (`st_ctime` there is the creation time).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

StrPath = str | os.PathLike[str]

_SQLITE_MAX = 2**63 - 1
# FAT and exFAT renumber files on rename or remount; FUSE drivers mostly invent numbers
# per mount (exfat-fuse, and ntfs-3g on an image both show up as fuse/fuseblk).
_UNSTABLE_FS = ("fat", "fat12", "fat16", "fat32", "exfat", "vfat", "msdos", "fuse", "fuseblk")
_stable_by_dev: dict[int, bool] = {}


def file_id(path: StrPath, st: os.stat_result) -> int:
    """A file ID that fits SQLite's signed 64-bit INTEGER, or 0 where IDs are not stable.

    Windows reports up to 128-bit IDs (ReFS, Python 3.12+): fold them. FAT and exFAT
    (USB sticks) renumber files on rename or remount: there an ID would make every file
    look modified, so davsync compares size and mtime (and MD5) only.
    """
    if not ids_are_stable(path, st.st_dev):
        return 0
    ino = st.st_ino
    if ino > _SQLITE_MAX:
        ino = (ino ^ (ino >> 64)) & _SQLITE_MAX
    return ino


def identity(path: StrPath, st: os.stat_result) -> tuple[int, int]:
    """(file_id, change_time_ns) with one look at the volume: a full scan asks for both per file."""
    if sys.platform == "win32" or not ids_are_stable(path, st.st_dev):
        return file_id(path, st), change_time_ns(path, st)
    ino = st.st_ino
    return (ino if ino <= _SQLITE_MAX else (ino ^ (ino >> 64)) & _SQLITE_MAX), st.st_ctime_ns


def lstat_identity_device(path: StrPath) -> int | None:
    """The device of `path` when `identity` of a file on it is just its lstat's (st_ino,
    st_ctime_ns) (an ID above 2**63 is folded, so it then differs): a caller may compare those
    as they are. None on Windows (the change time is read from the file) and where IDs are
    not stable (FAT, exFAT, FUSE: `identity` gives zeros), and when `path` cannot be looked at
    (a DEST not made yet, as in a first dry run: the full look says what is there)."""
    if sys.platform == "win32":
        return None
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    return dev if ids_are_stable(path, dev) else None


def change_time_ns(path: StrPath, st: os.stat_result) -> int:
    """When the file's content or metadata last changed (its ctime), or 0 where that is unknown.

    Any write moves it, also one whose tool then restores the mtime, so a same-size edit
    with the old mtime is still seen. Windows: `st_ctime` is the creation time there, so the
    NTFS ChangeTime is read from the file itself (one more open per file). FAT, exFAT and FUSE
    volumes: 0, as for file IDs (their values do not survive a remount); the caller then
    compares content (MD5) where it must be sure.
    """
    if not ids_are_stable(path, st.st_dev):
        return 0
    if sys.platform == "win32":
        return _ntfs_change_time(path)
    return st.st_ctime_ns


def _ntfs_change_time(path: StrPath) -> int:
    """FILE_BASIC_INFO.ChangeTime as ns since 1970 (as st_ctime_ns elsewhere); 0 on failure.
    (Its raw 100 ns units since 1601, times 100, would not fit SQLite's 64-bit INTEGER.)"""
    if sys.platform != "win32":
        return 0
    import ctypes

    kernel32, basic_info = _kernel32_basic_info()
    handle = kernel32.CreateFileW(
        os.fspath(path),
        _FILE_READ_ATTRIBUTES,
        _FILE_SHARE_ALL,  # never in the way of the program editing it
        None,
        _OPEN_EXISTING,
        _FILE_FLAG_BACKUP_SEMANTICS | _FILE_FLAG_OPEN_REPARSE_POINT,
        None,
    )
    if handle is None or handle == ctypes.c_void_p(-1).value:
        return 0
    try:
        info = basic_info()
        if not kernel32.GetFileInformationByHandleEx(handle, _FILE_BASIC_INFO_CLASS, ctypes.byref(info),
                                                     ctypes.sizeof(info)):  # fmt: skip
            return 0
        return max(0, int(info.ChangeTime) - _FILETIME_1970) * 100
    finally:
        kernel32.CloseHandle(handle)


@functools.cache
def _kernel32_basic_info() -> tuple[Any, Any]:
    """kernel32 with the prototypes `_ntfs_change_time` calls, and FILE_BASIC_INFO: set up once
    (a scan asks for every file)."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes
    from ctypes import wintypes

    class FileBasicInfo(ctypes.Structure):
        _fields_ = [("CreationTime", ctypes.c_int64), ("LastAccessTime", ctypes.c_int64),
                    ("LastWriteTime", ctypes.c_int64), ("ChangeTime", ctypes.c_int64),
                    ("FileAttributes", wintypes.DWORD)]  # fmt: skip

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                     wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]  # fmt: skip
    kernel32.GetFileInformationByHandleEx.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    return kernel32, FileBasicInfo


_FILE_READ_ATTRIBUTES = 0x80
_FILE_SHARE_ALL = 0x1 | 0x2 | 0x4  # read, write, delete
_OPEN_EXISTING = 3
_FILE_FLAG_BACKUP_SEMANTICS = 0x02000000
_FILE_FLAG_OPEN_REPARSE_POINT = 0x00200000
_FILE_BASIC_INFO_CLASS = 0  # FileBasicInfo in FILE_INFO_BY_HANDLE_CLASS
_FILETIME_1970 = 116444736000000000  # 1970-01-01 in FILETIME's 100 ns units since 1601


def ids_are_stable(path: StrPath, dev: int) -> bool:
    known = _stable_by_dev.get(dev)
    if known is None:
        fs = filesystem_type(path).lower()
        known = _stable_by_dev[dev] = not (fs in _UNSTABLE_FS or fs.startswith(("fuse.", "fuseblk.")))
    return known


def filesystem_type(path: StrPath) -> str:
    """The filesystem's name ('NTFS', 'exFAT', 'ext4', 'fuseblk', ...) or '' when unknown."""
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        volume = ctypes.create_unicode_buffer(300)
        if not kernel32.GetVolumePathNameW(os.fspath(path), volume, 300):
            return ""
        name = ctypes.create_unicode_buffer(300)
        if not kernel32.GetVolumeInformationW(volume, None, 0, None, None, None, name, 300):
            return ""
        return name.value
    return _mountinfo_fs_type(path)


def _mountinfo_fs_type(path: StrPath) -> str:
    """Linux: the type of the mount whose device is the path's; '' elsewhere (macOS)."""
    if sys.platform != "linux":
        return ""
    try:
        dev = os.stat(path).st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[2] == want and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return ""
