"""Keeping previous versions: what a WebDAV client overwrites or deletes is moved aside, never lost.

Keeping a version is a rename (or, for an overwrite, a hard link taken just before the
new file is renamed over the old name), never a copy: a 10,000-file folder deleted by
mistake costs one rename. That needs the versions area on the share's filesystem:
`STATE_DIR/versions` when the state dir is on it, else a hidden top-level folder of the
share (`.~davsync-versions`), which the provider never lists, serves, indexes or accepts
as a name.

Each version is a *blob* (one file, or one folder tree) named by its id. SQLite
(`STATE_DIR/versions.sqlite`) records every blob and every file in it (path, size,
mtime, MD5, who, when, which method), so listing reads no files. A blob row is written
as `pending` before anything moves; `recover()` finishes or undoes pending work after a
crash, so a kill at any instant leaves either the old file in place, or the old file in
the versions area and the new one in place.

This module keeps, recovers and lists versions (VersionKeeper); versions.py adds restoring and
retention (VersionStore, the class the server uses).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..osfs import fsync_dir, make_dirs
from ..scan import iter_tree
from ..sqlpaths import at_or_below, like_below
from .index import Identity
from .lockedreads import LockedReads
from .names import is_internal_path

log = logging.getLogger("davsync.server")

# A folder's deletion takes in the deletions below it made by the same user, each at most this
# long after the one before (a sync run deleting file by file, then the emptied folder).
GATHER_GAP_NS = 10 * 60 * 1_000_000_000

IN_SHARE_NAME = ".~davsync-versions"  # starts with TEMP_PREFIX: an internal name everywhere

SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    id       TEXT PRIMARY KEY,
    path     TEXT NOT NULL,
    is_dir   INTEGER NOT NULL,
    time_ns  INTEGER NOT NULL,
    user     TEXT NOT NULL,
    method   TEXT NOT NULL,
    mode     TEXT NOT NULL,      -- 'link' (old name kept by a hard link) or 'rename'
    replaced INTEGER NOT NULL,   -- 1: something new takes the path; 0: a deletion
    state    TEXT NOT NULL,      -- pending, kept, restoring, pruning
    bytes    INTEGER NOT NULL DEFAULT 0,
    files    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS blobs_age ON blobs(state, time_ns);
CREATE TABLE IF NOT EXISTS files (
    blob     TEXT NOT NULL,
    sub      TEXT NOT NULL,      -- path inside the blob; '' when the blob is this file
    path     TEXT NOT NULL,      -- where it was in the share
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    md5      TEXT,
    PRIMARY KEY (blob, sub)
);
CREATE INDEX IF NOT EXISTS files_path ON files(path);
"""

# share path -> (identity, md5) of live files at or below it, from the hash index
KnownHashes = Callable[[str], dict[str, tuple[Identity, str | None]]]


class VersionError(Exception):
    """An expected failure of list/restore, with a message for the user."""


def versions_dir(root: Path, state_dir: Path) -> Path:
    """Where blobs live: in the state dir if it shares the share's filesystem, else in the share."""
    make_dirs(state_dir)
    if os.stat(state_dir).st_dev == os.stat(root).st_dev:
        return state_dir / "versions"
    return root / IN_SHARE_NAME


@dataclass(frozen=True)
class Who:
    user: str
    method: str


@dataclass(frozen=True)
class FileVersion:
    """One kept file, as `versions list` shows it."""

    id: str
    path: str
    size: int
    mtime_ns: int
    md5: str | None
    user: str
    method: str
    time_ns: int
    folder: str | None  # the deleted folder it went with, if any


@dataclass(frozen=True)
class FolderVersion:
    id: str
    path: str
    files: int
    bytes: int
    user: str
    method: str
    time_ns: int


@dataclass(frozen=True)
class Restored:
    target: str
    version_id: str
    files: list[tuple[str, int, int, str | None]]  # (share path, size, mtime_ns, md5)
    folders: list[str]
    replaced_id: str | None  # the version made of what was at the target


class Pending:
    """A version moved aside whose replacement is not in place yet (see VersionKeeper.remove)."""

    def __init__(self, store: VersionKeeper, vid: str, src: str, blob: Path) -> None:
        self.store, self.id, self._src, self._blob = store, vid, src, blob

    def commit(self) -> None:
        self.store._set_state(self.id, "kept")

    def rollback(self) -> None:
        os.rename(self._blob, self._src)
        self.store._drop(self.id)


class VersionKeeper:
    """Thread-safe; one SQLite connection per process (the CLI and the server may both write)."""

    def __init__(
        self,
        root: Path,
        state_dir: Path,
        *,
        keep_seconds: float = 30 * 86400,
        max_bytes: int | None = None,
        known: KnownHashes | None = None,
    ) -> None:
        self.root = str(root)
        self.dir = versions_dir(root, state_dir)
        self.keep_seconds = keep_seconds
        self.max_bytes = max_bytes
        self.enabled = keep_seconds > 0
        self._known = known
        self.on_kept: Callable[[], None] | None = None  # the pruner's wake-up: a new version may cross the cap
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(state_dir / "versions.sqlite"), check_same_thread=False, isolation_level=None, timeout=60
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the 201 it stands behind
        self._db.executescript(SCHEMA)
        self._reads = LockedReads(self._db, self._lock)
        self._dir_ready = False  # made with the first version: an unused share stays untouched
        self._state_dir = state_dir
        self._held = threading.local()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def blob_path(self, vid: str) -> Path:
        return self.dir / vid

    def _ensure_dir(self) -> None:
        if not self._dir_ready:
            make_dirs(self.dir, 0o700)
            self._dir_ready = True

    # --- database helpers -----------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _set_state(self, vid: str, state: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE blobs SET state=? WHERE id=?", (state, vid))
        if state == "kept" and self.on_kept is not None:
            self.on_kept()

    def _drop(self, vid: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE blob=?", (vid,))
            db.execute("DELETE FROM blobs WHERE id=?", (vid,))

    def _claim(self, vid: str, state: str) -> bool:
        """Move a kept blob into a working state; False if someone else got it first."""
        with self._tx() as db:
            return db.execute("UPDATE blobs SET state=? WHERE id=? AND state='kept'", (state, vid)).rowcount == 1

    def _begin(self, rel: str, is_dir: bool, who: Who, mode: str, replaced: bool,
               file_row: tuple[int, int, str | None] | None) -> str:  # fmt: skip
        vid = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        with self._tx() as db:
            db.execute(
                "INSERT INTO blobs (id, path, is_dir, time_ns, user, method, mode, replaced, state, bytes, files) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (vid, rel, int(is_dir), time.time_ns(), who.user, who.method, mode, int(replaced),
                 file_row[0] if file_row else 0, 1 if file_row else 0),
            )  # fmt: skip
            if file_row is not None:
                db.execute("INSERT INTO files VALUES (?, '', ?, ?, ?, ?)", (vid, rel, *file_row))
        return vid

    def _known_md5(self, rel: str, st: os.stat_result) -> str | None:
        if self._known is None:
            return None
        entry = self._known(rel).get(rel)
        return entry[1] if entry is not None and entry[0] == Identity.of(st) else None

    # --- keeping versions -----------------------------------------------------

    @contextmanager
    def placement(self, *, exclusive: bool = False) -> Iterator[None]:
        """Serialise placements between processes: server threads share the lock, a restore from
        the command line takes it alone for its few renames (so neither overwrites the other's
        new file without keeping a version). Re-entrant within a thread."""
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        with open(self._state_dir / "placement.lock", "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(f, fcntl.LOCK_UN)

    def replace_file(self, src: str, dest: str, rel: str, who: Who) -> tuple[bool, str | None]:
        """Rename src over dest, keeping what was there as a version (see _replace_file)."""
        with self.placement():
            return self._replace_file(src, dest, rel, who)

    def _replace_file(self, src: str, dest: str, rel: str, who: Who) -> tuple[bool, str | None]:
        """Rename src over dest atomically, keeping dest's old content as a version first.

        Returns (dest existed, id of the version kept). The old file is hard-linked into
        the versions area and the new one renamed over its name, so readers never see
        the path missing. Where hard links are unsupported (FAT, exFAT), the old file is
        renamed aside first; `recover()` puts it back if a crash falls between the renames.
        """
        try:
            st: os.stat_result | None = os.lstat(dest)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        folder = os.path.dirname(dest)
        # An empty file holds nothing to lose (Explorer creates one before every upload).
        if st is None or not self.enabled or not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            os.replace(src, dest)
            fsync_dir(folder)
            return st is not None, None
        self._ensure_dir()
        vid = self._begin(rel, False, who, "link", True, (st.st_size, st.st_mtime_ns, self._known_md5(rel, st)))
        blob = self.blob_path(vid)
        mode = "link"
        try:
            os.link(dest, blob)
        except FileNotFoundError:
            self._drop(vid)
            os.replace(src, dest)
            return False, None
        except OSError:
            mode = "rename"
            with self._tx() as db:
                db.execute("UPDATE blobs SET mode='rename' WHERE id=?", (vid,))
            os.rename(dest, blob)
        fsync_dir(self.dir)
        try:
            os.replace(src, dest)
        except BaseException:
            if mode == "rename":
                os.rename(blob, dest)
            else:
                os.unlink(blob)
            self._drop(vid)
            raise
        fsync_dir(folder)
        self._set_state(vid, "kept")
        return True, vid

    def remove(self, rel: str, file_path: str, who: Who, *, replaced: bool) -> Pending:
        """Rename a file or folder into the versions area (see _remove)."""
        with self.placement():
            return self._remove(rel, file_path, who, replaced=replaced)

    def _remove(self, rel: str, file_path: str, who: Who, *, replaced: bool) -> Pending:
        """Rename a file or folder into the versions area; the caller commits (or rolls back).

        For a deletion, commit at once. When something new is about to take the
        path (`replaced`), commit after it is in place: a crash in between makes
        `recover()` rename the old one back.
        """
        st = os.lstat(file_path)
        is_dir = stat.S_ISDIR(st.st_mode)
        known = self._known(rel) if (self._known is not None and is_dir) else {}
        row = None if is_dir else (st.st_size, st.st_mtime_ns, self._known_md5(rel, st))
        self._ensure_dir()
        vid = self._begin(rel, is_dir, who, "rename", replaced, row)
        blob = self.blob_path(vid)
        try:
            os.rename(file_path, blob)
        except BaseException:
            self._drop(vid)
            raise
        fsync_dir(os.path.dirname(file_path))
        fsync_dir(self.dir)
        if is_dir:
            gathered = {} if replaced else self._gather(blob, rel, who)
            self._record_members(vid, blob, rel, known, gathered)
        pending = Pending(self, vid, file_path, blob)
        if not replaced:
            pending.commit()
        return pending

    def _gather(self, blob: Path, rel: str, who: Who) -> dict[str, tuple[int, int, str | None]]:
        """Move into a deleted folder's blob what the same user deleted inside it just before.

        A sync client deletes a folder file by file (each DELETE with its own If-Match), then
        the emptied folder: without this the folder's version would hold nothing and its files
        would be hundreds of separate lines. Taken: that user's deletions below the folder, newest
        first, as long as each follows the previous within GATHER_GAP_NS (one run), the newest
        per path, never over something the folder itself held (which is newer). Each moved blob is
        claimed first ('restoring'), so a crash leaves it where `recover()` settles it; the folder's
        blob is still pending, and `recover()` re-reads its tree. Returns path -> (size, mtime_ns,
        md5) of the files gathered, so their known MD5s carry over.
        """
        if not rel:
            return {}
        rows = self._reads.all(
            "SELECT id, path, time_ns FROM blobs WHERE state='kept' AND replaced=0 AND user=? "
            "AND path LIKE ? ESCAPE '\\' ORDER BY time_ns DESC, id DESC",
            (who.user, like_below(rel)),
        )
        gathered: dict[str, tuple[int, int, str | None]] = {}
        moved: list[str] = []
        taken: set[str] = set()
        prev = time.time_ns()
        for mid, mpath, t in rows:
            if prev - t > GATHER_GAP_NS:
                break  # an earlier run: those deletions were not part of this one
            prev = t
            dest = blob.joinpath(*mpath[len(rel) + 1 :].split("/"))
            if mpath in taken or os.path.lexists(dest) or not self._claim(mid, "restoring"):
                continue
            members = self._reads.all(
                "SELECT path, size, mtime_ns, md5 FROM files WHERE blob=?", (mid,)
            )
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.blob_path(mid), dest)
            except OSError:
                self._set_state(mid, "kept")  # a file where a parent folder should be: it stays a version of its own
                continue
            taken.add(mpath)
            moved.append(mid)
            gathered.update({p: (size, mtime_ns, md5) for p, size, mtime_ns, md5 in members})
        if moved:
            fsync_dir(blob)
            with self._tx() as db:  # all of each moved: forget them (after a crash, recover() does)
                db.executemany("DELETE FROM files WHERE blob=?", [(m,) for m in moved])
                db.executemany("DELETE FROM blobs WHERE id=?", [(m,) for m in moved])
        return gathered

    def _record_members(self, vid: str, blob: Path, rel: str, known: dict[str, tuple[Identity, str | None]],
                        gathered: dict[str, tuple[int, int, str | None]] | None = None) -> None:  # fmt: skip
        rows: list[tuple[str, str, str, int, int, str | None]] = []
        for sub, entry in iter_tree(str(blob)):
            try:
                if is_internal_path(sub) or not entry.is_file(follow_symlinks=False):  # cut-off uploads
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            path = f"{rel}/{sub}" if rel else sub
            hit = known.get(path)
            md5 = hit[1] if hit is not None and hit[0] == Identity.of(st) else None
            kept = gathered.get(path) if gathered else None
            if md5 is None and kept is not None and kept[:2] == (st.st_size, st.st_mtime_ns):
                md5 = kept[2]
            rows.append((vid, sub, path, st.st_size, st.st_mtime_ns, md5))
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE blob=?", (vid,))
            db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "UPDATE blobs SET bytes=?, files=? WHERE id=?", (sum(r[3] for r in rows), len(rows), vid)
            )

    # --- after a crash --------------------------------------------------------

    def recover(self) -> int:
        """Finish or undo what a crash interrupted; returns how many blobs needed it.

        Run it only when no server is working on this state dir (at start-up).
        """
        rows = self._reads.all(
            "SELECT id, path, is_dir, mode, replaced, state FROM blobs WHERE state != 'kept'"
        )
        for vid, rel, is_dir, mode, replaced, state in rows:
            blob = self.blob_path(vid)
            live = os.path.join(self.root, *rel.split("/"))
            try:
                self._recover_one(vid, rel, bool(is_dir), mode, bool(replaced), state, blob, live)
            except OSError as e:
                log.warning("Could not recover version %s of %s: %s", vid, rel, e)
        return len(rows)

    def _recover_one(self, vid: str, rel: str, is_dir: bool, mode: str, replaced: bool, state: str,
                     blob: Path, live: str) -> None:  # fmt: skip
        exists = os.path.lexists(blob)
        if state == "pruning":
            remove_tree(blob)
            self._drop(vid)
            return
        if state == "restoring":
            self._refresh_after_restore(vid)
            return
        if not exists:
            self._drop(vid)  # nothing had moved yet
            return
        if mode == "link":
            try:
                same = os.path.samestat(os.lstat(live), os.lstat(blob))
            except FileNotFoundError:
                same = False
            if same:  # the new file never replaced the old one
                os.unlink(blob)
                self._drop(vid)
                return
        elif replaced and not os.path.lexists(live):
            os.rename(blob, live)  # the new one never arrived: put the old one back
            fsync_dir(os.path.dirname(live))
            self._drop(vid)
            return
        if is_dir:
            self._record_members(vid, blob, rel, {})
        self._set_state(vid, "kept")

    def _refresh_after_restore(self, vid: str) -> None:
        """Forget the files that left a blob; drop the blob once nothing is left in it."""
        blob = self.blob_path(vid)
        with self._lock:
            rows = self._db.execute("SELECT sub FROM files WHERE blob=?", (vid,)).fetchall()
        gone = [s for (s,) in rows if not os.path.lexists(blob / s if s else blob)]
        with self._tx() as db:
            db.executemany("DELETE FROM files WHERE blob=? AND sub=?", [(vid, s) for s in gone])
            left = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE blob=?", (vid,)).fetchone()
            db.execute("UPDATE blobs SET state='kept', files=?, bytes=? WHERE id=?", (left[0], left[1], vid))
        if left[0] == 0:
            if self._claim(vid, "pruning"):
                remove_tree(blob)
                self._drop(vid)

    # --- reading --------------------------------------------------------------

    def files(self, path: str = "") -> list[FileVersion]:
        """Kept file versions at or below a share path, newest first per path."""
        where, args = at_or_below("f.path", path.strip("/"))
        rows = self._reads.all(
            "SELECT f.blob, f.path, f.size, f.mtime_ns, f.md5, b.user, b.method, b.time_ns, b.is_dir, b.path "
            f"FROM files f JOIN blobs b ON b.id=f.blob WHERE b.state='kept' AND {where} "
            "ORDER BY f.path, b.time_ns DESC",
            args,
        )
        return [FileVersion(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9] if r[8] else None) for r in rows]

    def folders(self, path: str = "") -> list[FolderVersion]:
        """Kept folder versions at, below or above (containing) a share path."""
        where, args = at_or_below("path", path.strip("/"))
        if path:
            where = f"({where} OR ? LIKE path || '/%')"
            args = (*args, path)
        rows = self._reads.all(
            "SELECT id, path, files, bytes, user, method, time_ns FROM blobs "
            f"WHERE state='kept' AND is_dir=1 AND {where} ORDER BY path, time_ns DESC",
            args,
        )
        return [FolderVersion(*r) for r in rows]

    def usage(self) -> tuple[int, int]:
        """(versions kept, bytes they hold)."""
        with self._lock:
            q = "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM blobs WHERE state='kept'"
            n, total = self._db.execute(q).fetchone()
        return int(n), int(total)


def remove_tree(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
