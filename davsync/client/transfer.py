"""Effects on files: resumable verified downloads, atomic placement, conflict copies, trash.

A download streams into DEST/.davsync/partial/, hashing as it goes. It is placed
(fsync, mtime, os.replace) only when its length and, when the server publishes
one, its MD5 match. An interrupted download resumes from the partial file with
Range + If-Range on the etag; if the file changed on the server meanwhile, the
server answers 200 and it starts over.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import queue
import stat as _stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import requests

from .. import fileid, osfs
from ..oserrors import is_disk_full, is_not_permitted
from ..scan import md5_of_file
from . import retry
from .local import SETTLE_S, entry_of_stat
from .paths import STATE_DIR_NAME
from .plan import Action, LocalEntry, RemoteEntry, conflict_name, same_ctime
from .remote import Remote
from .retry import Backoff
from .transport import RemoteError

BLOCK = 1024 * 1024
SMALL_FILE = 4 * 1024 * 1024  # fetched in one piece; no resume bookkeeping


class DownloadError(Exception):
    """This file could not be fetched intact; other files go on."""


class LocalWriteError(Exception):
    """The local side refused a write that affects everything (disk full, the state folder): the run stops."""


class PathWriteError(DownloadError):
    """One place in DEST refuses writes (a read-only sub-folder): that file is reported, the rest goes on."""


class ChangedOnServer(DownloadError):
    """What arrived is not the version listed (another size or MD5): the file changed on the
    server since the listing. The executor lists it again and retries within the run."""


class Raced(Exception):
    """The local file changed between planning and placing; left alone."""


class NotPlaced(DownloadError):
    """This one file cannot be placed now (held open by another program, or its path is
    too long for this filesystem); the rest of the pull goes on."""


@dataclass(frozen=True)
class Downloaded:
    partial: Path
    md5: str
    size: int
    bytes_fetched: int
    resumed_from: int
    ready: LocalEntry | None = None  # set when the mtime is already applied: the file's final stat
    blocks: tuple[int, list[str]] | None = None  # a delta's block list of it (block size, hashes)


def _partial_paths(state_dir: Path, rel: str) -> tuple[Path, Path]:
    key = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()
    folder = state_dir / "partial"
    return folder / f"{key}.part", folder / f"{key}.json"


def local_error(e: OSError, what: str) -> LocalWriteError:
    if is_disk_full(e):
        return LocalWriteError(f"disk full while {what}. Free some space and run the pull again; it resumes.")
    if is_not_permitted(e):
        return LocalWriteError(f"permission denied while {what} ({e.filename}). Check the folder's permissions.")
    return LocalWriteError(f"could not write while {what}: {e.strerror} ({e.filename})")


def path_error(e: OSError, what: str, target: Path) -> Exception:
    """Permission problems belong to one folder, a name or path this filesystem cannot hold
    to one file (the run goes on); anything else stops the run."""
    if is_not_permitted(e):
        reason = "permission denied" if e.errno != errno.EROFS else "the file system is read-only"
        return PathWriteError(f"cannot write {target}: {reason}; check that folder's permissions")
    if _path_too_long(e):
        return PathWriteError(f"cannot write {target}: the name or path is too long for this filesystem; skipped")
    if e.errno == errno.EINVAL:  # e.g. ntfs-3g's windows_names refusing a name
        return PathWriteError(f"cannot write {target}: this filesystem refuses the name; skipped")
    return local_error(e, what)


def download(
    remote: Remote,
    entry: RemoteEntry,
    state_dir: Path,
    *,
    progress: Callable[[int], None] = lambda n: None,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
) -> Downloaded:
    data_path, meta_path = _partial_paths(state_dir, entry.path)
    if not data_path.parent.is_dir():
        try:
            data_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise local_error(e, "creating the partial folder") from None
    fetched = 0
    resumed_from = 0
    last_error = ""
    small = entry.size is not None and entry.size <= SMALL_FILE
    backoff = backoff or retry.TRANSFER
    outage = getattr(remote, "outage", None)
    attempt = 0
    while True:
        if attempt and not retry.retry_after(outage, attempt - 1, backoff):
            raise DownloadError(f"gave up after {attempt} attempts: {last_error}")
        if attempt and stop is not None and stop.is_set():
            raise DownloadError("stopped; the partial download is kept and resumes next time")
        attempt += 1
        try:
            if small:
                return _fetch_small(remote, entry, data_path.with_suffix(".small"), progress)
            offset = _resumable_offset(data_path, meta_path, entry)
            if attempt == 1:
                resumed_from = offset
            n, md5, total = _fetch_once(remote, entry, data_path, meta_path, offset, progress, stop)
            fetched += n
        except _TooLong:
            _discard(data_path, meta_path)
            raise
        except _Transient as e:  # reset, timeout, 5xx: try again (resuming where possible)
            fetched += e.fetched
            last_error = str(e)
            continue
        except RemoteError as e:
            if e.fatal:
                raise
            if not retry.transient(e):  # an answer (404, 403, ...), not an accident
                raise DownloadError(str(e)) from None
            last_error = str(e)
            continue
        if entry.size is not None and total != entry.size:
            _discard(data_path, meta_path)
            raise ChangedOnServer(
                f"the server sent {total} bytes but listed {entry.size}; nothing was placed (the file may be changing)"
            )
        if entry.md5 and md5 != entry.md5:
            _discard(data_path, meta_path)
            raise ChangedOnServer(f"MD5 mismatch (got {md5}, the server lists {entry.md5}); nothing was placed")
        return Downloaded(data_path, md5, total, fetched, resumed_from)


def _fetch_small(remote: Remote, entry: RemoteEntry, path: Path, progress: Callable[[int], None]) -> Downloaded:
    try:
        status, body = remote.get_small(entry.path, entry.href, limit=entry.size or 0)
    except RemoteError as e:
        if e.fatal:
            raise
        raise _Transient(str(e), 0) from None
    if retry.transient_status(status):
        raise _Transient(f"server error {status}", 0)
    if status != 200:
        raise RemoteError(f"GET {entry.path} answered HTTP {status}", status=status)
    progress(len(body))
    md5 = hashlib.md5(body).hexdigest()
    if len(body) != entry.size:
        raise ChangedOnServer(f"the server sent {len(body)} bytes but listed {entry.size}; nothing was placed")
    if entry.md5 and md5 != entry.md5:
        raise ChangedOnServer(f"MD5 mismatch (got {md5}, the server lists {entry.md5}); nothing was placed")
    try:
        st = osfs.write_new_file(path, body, entry.mtime)
    except OSError as e:
        _discard(path)
        raise local_error(e, f"downloading {entry.path}") from None
    ready = LocalEntry(False, st.st_size, st.st_mtime_ns, fileid.file_id(path, st)) if entry.mtime is not None else None
    return Downloaded(path, md5, len(body), len(body), 0, ready)


class _TooLong(DownloadError):
    """The body goes on past the size the server listed."""


class _Transient(Exception):
    def __init__(self, message: str, fetched: int) -> None:
        super().__init__(message)
        self.fetched = fetched


def _resumable_offset(data_path: Path, meta_path: Path, entry: RemoteEntry) -> int:
    try:
        meta = json.loads(meta_path.read_text())
        size = data_path.stat().st_size
    except (OSError, ValueError):
        return 0
    same = meta.get("path") == entry.path and meta.get("etag") == entry.etag and entry.etag
    if same and (entry.size is None or size <= entry.size):
        return size
    return 0


def _write_meta(meta_path: Path, entry: RemoteEntry) -> None:
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"path": entry.path, "etag": entry.etag, "size": entry.size, "md5": entry.md5}))
    osfs.replace(tmp, meta_path)


def _fetch_once(
    remote: Remote,
    entry: RemoteEntry,
    data_path: Path,
    meta_path: Path,
    offset: int,
    progress: Callable[[int], None],
    stop: threading.Event | None = None,
) -> tuple[int, str, int]:
    if offset > 0 and offset == entry.size:
        # The whole body arrived before a kill (or a failed rename): the server would answer a
        # range past the end with 416, every run. The partial is checked like any download.
        try:
            return 0, _md5_of(data_path).hexdigest(), offset
        except OSError as e:
            raise local_error(e, f"downloading {entry.path}") from None
    headers = {"Accept-Encoding": "identity"}
    if offset > 0 and entry.etag:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = f'"{entry.etag}"'
    try:
        resp = remote.request("GET", remote.url_for(entry.path, href=entry.href), headers=headers, stream=True)
    except RemoteError as e:
        if e.fatal:
            raise
        raise _Transient(str(e), 0) from None
    with resp:
        if retry.transient_status(resp.status_code):
            raise _Transient(f"server error {resp.status_code}", 0)
        if resp.status_code == 206 and offset > 0 and _range_start(resp) == offset:
            pass  # the rest, from where the partial file ends
        elif resp.status_code == 200:
            offset = 0  # the whole file (a changed file, or a server without ranges): start over
        elif resp.status_code == 206 and offset > 0:
            # A range from another byte than asked (a broken server or proxy): the partial cannot be
            # continued with it, and the same resume would fail every run. The next attempt starts over.
            _discard(data_path, meta_path)
            raise _Transient(f"the server answered a resume from byte {offset} with another range; starting over", 0)
        elif resp.status_code == 416 and offset > 0:
            # Nothing after the partial's end: it may be whole (its size was not listed), or longer
            # than the file now is. Either way the next attempt starts over, not this again forever.
            _discard(data_path, meta_path)
            raise _Transient(f"the server has nothing after byte {offset}; starting over", 0)
        else:
            raise RemoteError(f"GET {entry.path} answered HTTP {resp.status_code}", status=resp.status_code)
        try:
            if offset:
                digest = _md5_of(data_path)
            else:
                digest = hashlib.md5()
                # Start over from an empty file (below, everything appends). Emptied before the new
                # version's meta is written: a kill between the two must not leave the old
                # version's bytes under the new etag, to be resumed into a mix.
                open(data_path, "wb").close()
                _write_meta(meta_path, entry)
            fetched = 0
            body = remote.body_reader(resp, f"GET {entry.path} was cut off")
            with open(data_path, "ab", buffering=0) as out, _Pipeline(digest, out.fileno(), data_path, offset) as pipe:
                try:
                    while True:
                        if stop is not None and stop.is_set():
                            raise DownloadError("stopped; the partial download is kept and resumes next time")
                        buffer = pipe.buffer()
                        try:
                            n = body.fill(buffer)
                        except RemoteError as e:
                            if e.partial:  # what arrived before the cut is kept: the resume starts after it
                                pipe.submit(buffer, e.partial)
                                fetched += e.partial
                                progress(e.partial)
                            else:
                                pipe.give_back(buffer)
                            raise
                        if entry.size is not None and offset + fetched + n > entry.size:
                            pipe.give_back(buffer)  # a body without end must not fill the disk
                            raise _TooLong(f"the server sent more than the {entry.size} bytes it listed; "
                                           "nothing was placed (the file may be changing)")  # fmt: skip
                        if n:
                            pipe.submit(buffer, n)  # written, then hashed, on the pipeline's threads
                        else:
                            pipe.give_back(buffer)
                        fetched += n
                        progress(n)
                        if n < len(buffer):
                            break
                except RemoteError as e:  # the transport's one mapping of a lost connection; disk errors pass
                    if e.fatal:
                        raise
                    raise _Transient(f"the connection was lost after {offset + fetched} bytes", fetched) from None
            # _Pipeline's exit has written and hashed everything and fsynced the file.
        except OSError as e:
            raise local_error(e, f"downloading {entry.path}") from None
        return fetched, digest.hexdigest(), offset + fetched


class _Pipeline:
    """Receive, write and hash at once, through a few reused buffers.

    The main thread fills a buffer from the socket and hands it on; a writer thread appends it
    to the file (around the page cache where it can: osfs.Appender), then the hasher thread
    hashes it, and the buffer comes back for reuse. Another thread flushes what went through
    the page cache every SYNC_EVERY seconds, so the fsync before the rename has little left.
    Receiving, writing, hashlib and fdatasync all release the GIL, so a large download costs
    about the slowest of network, disk and MD5 when a core is free, and no per-chunk bytes
    objects are made. A write error (disk full) stops the receiving at the next buffer.
    """

    SYNC_EVERY = 0.5
    BUFFERS = 6
    BUFFER_SIZE = BLOCK  # a multiple of osfs.DIRECT_ALIGN; the buffers are page-aligned (mmap)

    def __init__(self, digest: hashlib._Hash, fd: int, path: Path, offset: int) -> None:
        self._digest = digest
        self._fd = fd
        self._appender = osfs.Appender(path, fd, offset)
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(self.BUFFERS):
            self._free.put(memoryview(mmap.mmap(-1, self.BUFFER_SIZE)))
        self._to_write: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._to_hash: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._error: OSError | None = None
        self._done = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, daemon=True)
        self._hasher = threading.Thread(target=self._hash_loop, daemon=True)
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True)

    def __enter__(self) -> _Pipeline:
        self._writer.start()
        self._hasher.start()
        self._syncer.start()
        return self

    def buffer(self) -> memoryview:
        """A buffer to fill (waits while all are in flight: the disk or the MD5 sets the pace then)."""
        buffer = self._free.get()
        if self._error is not None:
            raise self._error
        return buffer

    def give_back(self, buffer: memoryview) -> None:
        self._free.put(buffer)

    def submit(self, buffer: memoryview, n: int) -> None:
        """Append the first n bytes of `buffer` to the file and the hash, in order."""
        self._to_write.put((buffer, n))

    def _write_loop(self) -> None:
        while (item := self._to_write.get()) is not None:
            buffer, n = item
            if self._error is None:
                try:
                    self._appender.write(buffer[:n])
                except OSError as e:
                    self._error = e
            self._to_hash.put(item)
        self._to_hash.put(None)

    def _hash_loop(self) -> None:
        while (item := self._to_hash.get()) is not None:
            buffer, n = item
            self._digest.update(buffer[:n])
            self._free.put(buffer)

    def _sync_loop(self) -> None:
        while not self._done.wait(self.SYNC_EVERY):
            try:
                osfs.flush_data(self._fd)
            except OSError:
                return

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._to_write.put(None)
        self._writer.join()
        self._hasher.join()
        self._done.set()
        self._syncer.join()
        self._appender.close()
        if self._error is not None:
            raise self._error
        if exc_type is None:
            os.fsync(self._fd)


def _md5_of(path: Path) -> hashlib._Hash:
    """The hash of a partial file's bytes so far (a resume goes on from it)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest


def _range_start(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def discard_partial(state_dir: Path, rel: str) -> None:
    _discard(*_partial_paths(state_dir, rel))


def stat_entry(path: Path) -> LocalEntry | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if _stat.S_ISDIR(st.st_mode):
        return LocalEntry(True)
    return entry_of_stat(path, st)


def same_stat(a: LocalEntry | None, b: LocalEntry | None) -> bool:
    """Is this still the version that was looked at? A folder is judged by its type only."""
    if a is None or b is None:
        return a is b
    if a.is_dir or b.is_dir:
        return a.is_dir == b.is_dir
    return (a.size, a.mtime_ns, a.ino) == (b.size, b.mtime_ns, b.ino) and same_ctime(a.ctime_ns, b.ctime_ns)


_same = same_stat


def still_as_judged(path: Path, expected: LocalEntry | None) -> tuple[bool, LocalEntry | None]:
    """Is the file at `path` still the version the plan judged, and what is there now?

    The stat decides where it can (size, mtime, ctime, file ID: a silent edit moves the ctime);
    where the change time is unknown (FAT, exFAT, FUSE volumes) and the judged MD5 is known, the
    content decides: no local byte is replaced or trashed unread."""
    now = stat_entry(path)
    if not _same(now, expected):
        return False, now
    if now is None or now.is_dir or expected is None or (now.ctime_ns and expected.ctime_ns) or not expected.md5:
        return True, now
    try:
        return md5_of_file(path) == expected.md5, now
    except OSError:
        return False, now


def place(
    got: Downloaded,
    dest: Path,
    rel: str,
    entry: RemoteEntry,
    expected: LocalEntry | None,
    dir_changed: Callable[[Path], None] = osfs.fsync_dir,
    before_rename: Callable[[LocalEntry], None] = lambda placed: None,
    set_aside: Callable[[str], None] | None = None,
) -> LocalEntry:
    """Move a verified download into place; never over a local file that changed since planning.

    A file edited since (`still_as_judged`) is kept as a conflict copy, its name given to
    `set_aside`, and the download placed; without `set_aside`, for a file still being written
    (modified within SETTLE_S: the next run judges it), or for any other change (the file
    gone, a folder there), nothing is placed (Raced). `dir_changed` makes the rename
    durable; a caller may batch it (fsync each folder once before the journal commits)
    instead of one directory fsync per file. Returns the placed file's stat after the rename
    (a rename moves the ctime).
    """
    target = dest / rel
    try:
        same, now = still_as_judged(target, expected)
        if not same:
            if (set_aside is None or now is None or now.is_dir or expected is None or expected.is_dir
                    or 0 <= time.time_ns() - now.mtime_ns < SETTLE_S * 1e9):  # fmt: skip
                _discard(got.partial)
                raise Raced(f"{rel} changed locally during the run; left alone")
            try:
                set_aside(keep_as_conflict(dest, rel, now))
            except BaseException:
                _discard(got.partial)
                raise
        if entry.mtime is not None and got.ready is None:
            osfs.set_mtime(got.partial, entry.mtime)
        placed = got.ready or stat_entry(got.partial)  # the rename keeps inode, size and mtime
        assert placed is not None
        before_rename(placed)
        try:
            osfs.replace(got.partial, target)
        except FileNotFoundError:
            osfs.make_dirs(target.parent)
            osfs.replace(got.partial, target)
        dir_changed(target.parent)
        if got.partial.suffix == ".part":
            discard_partial(dest / STATE_DIR_NAME, rel)
        after = stat_entry(target)
        if after is not None and (after.size, after.mtime_ns, after.ino) == (placed.size, placed.mtime_ns, placed.ino):
            placed = after
    except osfs.FileInUse:
        _discard(got.partial)
        raise NotPlaced(f"{rel} is in use by another program; retried next run") from None
    except OSError as e:
        err = path_error(e, f"placing {rel}", target)
        if isinstance(err, PathWriteError):
            _discard(got.partial)
            discard_partial(dest / STATE_DIR_NAME, rel)
        raise err from None
    return placed


def _path_too_long(e: OSError) -> bool:
    """ENAMETOOLONG, or ERROR_FILENAME_EXCED_RANGE (206) from Windows for a path without the long-path prefix."""
    return e.errno == errno.ENAMETOOLONG or getattr(e, "winerror", None) == 206


def keep_as_conflict(dest: Path, rel: str, expected: LocalEntry | None, name: str | None = None) -> str:
    """Rename the local version aside (never overwriting anything); returns its new path.
    `name`: the conflict name the plan chose (numbered if something took it meanwhile)."""
    src = dest / rel
    if not _same(stat_entry(src), expected):
        raise Raced(f"{rel} changed locally during the run; left alone")
    base = name or conflict_name(rel, datetime.now())
    candidate, n = base, 1
    while (dest / candidate).exists():
        n += 1
        stem, dot, ext = base.rpartition(".")
        candidate = f"{stem}-{n}.{ext}" if dot and "/" not in ext else f"{base}-{n}"
    try:
        osfs.rename(src, dest / candidate)
        osfs.fsync_dir((dest / candidate).parent)
    except osfs.FileInUse:
        raise Raced(f"{rel} is in use by another program, so it was not set aside; retried next run") from None
    except OSError as e:
        raise path_error(e, f"keeping {rel} as a conflict copy", src) from None
    return candidate


def judged_with_md5(a: Action, local: LocalEntry | None) -> LocalEntry | None:
    """The judged local version with its MD5: a stat equal to the base's means the base's content.
    Where the base's ctime is unknown (a row from before davsync kept it), that stat is not sure:
    the ctime is dropped so the executor reads the file to confirm it (transfer.still_as_judged)."""
    if local is None or a.base is None or not a.base.matches_local(local):
        return local
    if local.md5 and a.base.ctime_ns:
        return local
    return replace(local, md5=local.md5 or a.base.md5, ctime_ns=local.ctime_ns if a.base.ctime_ns else 0)


def drop_empty_trash(dest: Path, run_stamp: str) -> None:
    """Remove the run's trash folders nothing was moved into (a deletion deferred because the file
    was in use made them). Called once the run's workers are done, so no move is racing it."""
    top = dest / STATE_DIR_NAME / "trash" / run_stamp
    for folder, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty: something was trashed there


def move_to_trash(dest: Path, rel: str, expected: LocalEntry | None, run_stamp: str) -> str:
    src = dest / rel
    if not still_as_judged(src, expected)[0]:
        raise Raced(f"{rel} changed locally during the run; not deleted")
    target = dest / STATE_DIR_NAME / "trash" / run_stamp / rel
    try:
        osfs.make_dirs(target.parent)
        osfs.rename(src, target)
    except osfs.FileInUse:
        raise Raced(f"{rel} is in use by another program, so it was not deleted; retried next run") from None
    except OSError as e:
        raise path_error(e, f"moving {rel} to the trash", src) from None
    return str(target.relative_to(dest))
