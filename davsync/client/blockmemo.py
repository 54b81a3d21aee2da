"""Block hashes of big local files taken in the scan's own read, for a delta push in the same run.

The scan reads a changed file for its MD5 (client/local.py); a delta push (client/delta.py) then
needs the same file's SHA-256 per block to tell the server which of its blocks it has. Hashing
both in that one read saves reading a big file a second time. Kept in this process's memory for
the last few files only, keyed by the file's identity and stat: a file changed since (size or
mtime), or another file, finds nothing, and the push reads it as before.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from ..checksums import block_size_for

MIN_SIZE = 4 * 1024 * 1024  # delta transfers start here: smaller files go whole
KEEP = 16  # files (a 1 GiB file's list is about 8,000 hashes)

_Key = tuple[int, int, int, int]  # device, inode, size, mtime_ns
_kept: OrderedDict[_Key, tuple[int, list[str]]] = OrderedDict()
_lock = threading.Lock()


def _key(st: os.stat_result) -> _Key | None:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st.st_ino else None


def md5_of_file(disk: str | os.PathLike[str], *, blocks: bool = True) -> str:
    """The file's MD5 (as davsync.scan.md5_of_file); with `blocks` (an edit that may go as a
    delta: a new file has no base to diff against), a big file's block hashes in the same read
    are kept for blocks_of."""
    with open(disk, "rb", buffering=0) as f:
        before = os.fstat(f.fileno())
        if before.st_size < MIN_SIZE or not blocks:
            return hashlib.file_digest(f, "md5").hexdigest()
        block = block_size_for(before.st_size)
        md5 = hashlib.md5()
        hashes: list[str] = []
        view = memoryview(bytearray(block))
        total = 0
        while True:
            n = 0
            while n < block and (got := f.readinto(view[n:])):
                n += got
            if not n:
                break
            md5.update(view[:n])
            hashes.append(hashlib.sha256(view[:n]).hexdigest())
            total += n
        after = os.fstat(f.fileno())
    key = _key(after)
    if key is not None and total == after.st_size and _key(before) == key:
        with _lock:
            _kept[key] = (block, hashes)
            _kept.move_to_end(key)
            while len(_kept) > KEEP:
                _kept.popitem(last=False)
    return md5.hexdigest()


def blocks_of(disk: str | os.PathLike[str], block: int) -> list[str] | None:
    """The file's SHA-256 hashes per `block` bytes if its read for the MD5 took them and it is
    unchanged since; else None."""
    try:
        key = _key(os.stat(disk))
    except OSError:
        return None
    with _lock:
        kept = _kept.get(key) if key is not None else None
    return kept[1] if kept is not None and kept[0] == block else None
