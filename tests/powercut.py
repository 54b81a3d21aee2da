"""A FUSE filesystem that forgets what was not made durable: the power-cut tests' disk.

Run as `python -m tests.powercut BACKING MOUNT LIVE`. Everything written through MOUNT goes to
LIVE (a working copy of BACKING), so programs see an ordinary filesystem. Beside it the daemon
keeps the image a power cut would leave, following POSIX strictly (as LazyFS does, without its
page-cache model):

- a file's data (and its mode and mtime) become durable only at fsync/fdatasync of that file;
- a folder's entries (creates, renames, unlinks, links, mkdir, rmdir) become durable only at
  fsync of that folder; a new folder nobody fsynced is empty, a file whose name became durable
  before its data is empty (as after ext4's delayed allocation);
- syncfs(2) on a FUSE mount never reaches the daemon (the kernel sends FUSE_SYNCFS to virtiofs
  only), so it makes nothing durable here, as on any FUSE filesystem (ntfs-3g, exfat-fuse).

Unmounting is the power cut: the daemon then rewrites BACKING as the durable image and exits,
so BACKING shows what the disk would hold after the cut. Identities are the daemon's own ids
(not LIVE's inode numbers, which the filesystem reuses), so a deleted file's durable name keeps
its durable content even when a new file gets its inode.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy  # noqa: E402 (the library is chosen by the environment at import)


@dataclass
class Image:
    """What the disk holds durably: per id, a file's bytes and metadata or a folder's entries."""

    data: dict[int, bytes] = field(default_factory=dict)
    meta: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (mode, mtime_ns)
    entries: dict[int, dict[str, int]] = field(default_factory=dict)  # folder id -> name -> id
    folders: set[int] = field(default_factory=set)

    def write(self, folder_id: int, path: str) -> None:
        """Lay the durable tree under `path` (an existing empty folder)."""
        for name, child in self.entries.get(folder_id, {}).items():
            target = os.path.join(path, name)
            if child in self.folders:
                os.mkdir(target)
                self.write(child, target)
                continue
            with open(target, "wb") as f:
                f.write(self.data.get(child, b""))
            mode, mtime_ns = self.meta.get(child, (0o644, 0))
            os.chmod(target, stat.S_IMODE(mode))
            if mtime_ns:
                os.utime(target, ns=(mtime_ns, mtime_ns))


class Lazy(mfusepy.Operations):
    """Passes every call through to LIVE and updates the durable image only on fsync."""

    use_ns = True

    def __init__(self, live: str) -> None:
        self.live = live
        self._mutex = threading.RLock()
        self.image = Image()
        self.ids: dict[int, int] = {}  # LIVE inode -> id (the newest file holding that inode)
        self.next_id = 0
        self.root = self._track(live, folder=True)
        self._load(live, self.root)
        self.fsyncs = 0

    # --- identity ---------------------------------------------------------------------------

    def _track(self, real: str, *, folder: bool) -> int:
        ident = self.next_id
        self.next_id += 1
        self.ids[os.lstat(real).st_ino] = ident
        if folder:
            self.image.folders.add(ident)
        return ident

    def _load(self, real: str, ident: int) -> None:
        """Everything present at mount time is durable."""
        entries: dict[str, int] = {}
        for entry in os.scandir(real):
            if entry.is_dir(follow_symlinks=False):
                child = self._track(entry.path, folder=True)
                self._load(entry.path, child)
            else:
                child = self._track(entry.path, folder=False)
                self._snapshot_file(entry.path, child)
            entries[entry.name] = child
        self.image.entries[ident] = entries

    def _real(self, path: str) -> str:
        return self.live + path

    def _id(self, real: str) -> int:
        st = os.lstat(real)
        ident = self.ids.get(st.st_ino)
        if ident is None:
            ident = self._track(real, folder=stat.S_ISDIR(st.st_mode))
        return ident

    def _snapshot_file(self, real: str, ident: int) -> None:
        with open(real, "rb") as f:
            self.image.data[ident] = f.read()
        st = os.lstat(real)
        self.image.meta[ident] = (st.st_mode, st.st_mtime_ns)

    # --- durability -------------------------------------------------------------------------

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self.fsyncs += 1
            self._snapshot_file(self._real(path), self._id(self._real(path)))
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self.fsyncs += 1
            real = self._real(path)
            self.image.entries[self._id(real)] = {e.name: self._id(e.path) for e in os.scandir(real)}
        return 0

    def cut(self, backing: str) -> None:
        """The power cut: BACKING becomes the durable image."""
        with self._mutex:
            for entry in os.scandir(backing):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            self.image.write(self.root, backing)

    # --- pass-through -----------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except OSError as e:
            raise mfusepy.FuseOSError(e.errno or errno.EIO) from None
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino")
        attrs: dict[str, Any] = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns")
        return attrs

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        """Names with their inode numbers: with use_ino, an entry without one (0) is hidden by libc."""
        real = self._real(path)
        items = [(n, os.lstat(os.path.join(real, n)), 0) for n in (".", "..")] if path != "/" else []
        items += [(e.name, e.stat(follow_symlinks=False), 0) for e in os.scandir(real)]
        return [(name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, off) for name, st, off in items]

    def open(self, path: str, flags: int) -> int:
        return _os(os.open, self._real(path), flags)

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        with self._mutex:
            fd = _os(os.open, self._real(path), flags | os.O_CREAT, mode)
            self._track(self._real(path), folder=False)
        return int(fd)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(_os(os.pread, fh, size, offset))

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return int(_os(os.pwrite, fh, data, offset))

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        _os(os.truncate, self._real(path) if fh is None else fh, length)
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            _os(os.mkdir, self._real(path), mode)
            self._track(self._real(path), folder=True)
        return 0

    def rmdir(self, path: str) -> int:
        _os(os.rmdir, self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        _os(os.unlink, self._real(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        _os(os.rename, self._real(old), self._real(new))
        return 0

    def link(self, target: str, source: str) -> int:
        _os(os.link, self._real(source), self._real(target))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        _os(os.chmod, self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        _os(os.chown, self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        _os(os.utime, self._real(path), ns=times) if times else _os(os.utime, self._real(path))
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.live)
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize")
        return {k: getattr(sv, k) for k in keys} | {"f_namemax": sv.f_namemax}


def _os(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except OSError as e:
        raise mfusepy.FuseOSError(e.errno or errno.EIO) from None


def main(argv: list[str]) -> int:
    backing, mount, live = argv
    if os.path.exists(live):
        shutil.rmtree(live)
    shutil.copytree(backing, live, symlinks=True)
    ops = Lazy(live)
    # single-threaded: one call at a time keeps the image consistent without finer locks
    mfusepy.FUSE(ops, mount, foreground=True, nothreads=True, use_ino=True, fsname="davsync-powercut")
    ops.cut(backing)
    shutil.rmtree(live)
    print(f"powercut: {ops.fsyncs} fsyncs seen; {backing} now holds the durable image", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
