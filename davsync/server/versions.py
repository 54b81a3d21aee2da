"""Previous versions, as the server uses them: kept (version_keeper.py), restored, and pruned.

`VersionStore` adds to VersionKeeper what a user asks for (choose a version, restore it at its
path or elsewhere, keeping whatever is there as a version first) and what time asks for
(retention: versions older than `--keep-versions` or beyond `--versions-max-size` go, oldest
first, in the background: `Pruner`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from ..osfs import fsync_dir
from ..scan import iter_tree, md5_of_file
from ..sqlpaths import at_or_below
from .names import is_internal_name
from .version_keeper import Restored, VersionError, VersionKeeper, Who, remove_tree

log = logging.getLogger("davsync.server")


class VersionStore(VersionKeeper):
    """Keeping, restoring and pruning versions; thread-safe (see VersionKeeper)."""

    # --- restoring ------------------------------------------------------------

    def choose(self, path: str, *, at_ns: int | None = None, vid: str | None = None) -> tuple[str, str, bool, int]:
        """The version to restore at `path`: (blob id, path inside the blob, is a folder, time kept).

        Default: the newest. `at_ns`: what was at the path then, i.e. the first version
        set aside after that moment. `vid`: that version.
        """
        cands: list[tuple[int, str, str, bool]] = []
        with self._lock:
            for vid_, sub, t in self._db.execute(
                "SELECT f.blob, f.sub, b.time_ns FROM files f JOIN blobs b ON b.id=f.blob "
                "WHERE b.state='kept' AND f.path=?",
                (path,),
            ):
                cands.append((t, vid_, sub, False))
            for vid_, bpath, t in self._db.execute(
                "SELECT id, path, time_ns FROM blobs"
                " WHERE state='kept' AND is_dir=1 AND (path=? OR ? LIKE path || '/%')",
                (path, path),
            ):
                sub = path[len(bpath) + 1 :] if path != bpath else ""
                if sub and not os.path.isdir(self.blob_path(vid_) / sub):
                    continue
                cands.append((t, vid_, sub, True))
        if vid is not None:
            cands = [c for c in cands if c[1] == vid]
            if not cands:
                raise VersionError(f"there is no version {vid} of {path or '/'}; see: davsync versions list {path}")
        if not cands:
            raise VersionError(f"no earlier version of {path or '/'} is kept; see: davsync versions list")
        if at_ns is not None:
            later = [c for c in cands if c[0] > at_ns]
            if not later:
                raise VersionError(
                    f"{path} has not been replaced or deleted since then: what is there now is that version."
                )
            t, vid_, sub, is_dir = min(later)
        else:
            t, vid_, sub, is_dir = max(cands)
        return vid_, sub, is_dir, t

    def restore(self, path: str, who: Who, *, at_ns: int | None = None, vid: str | None = None,
                to: str | None = None, between: Callable[[str], None] | None = None) -> Restored:  # fmt: skip
        """Put a version back at `path` (or `to`), keeping whatever is there now as a version.

        `between(target)` runs after a folder at the target was set aside and before the
        restored one takes its place.
        """
        vid_, sub, is_dir, _t = self.choose(path, at_ns=at_ns, vid=vid)
        target_rel = (to if to is not None else path).strip("/")
        if not target_rel:
            raise VersionError("cannot restore onto the share's root folder; use --to NEWPATH.")
        if any(p in ("", ".", "..") or is_internal_name(p) or "\x00" in p for p in target_rel.split("/")):
            raise VersionError(f"{target_rel!r} is not a path inside the share; use a/b/name.")
        target = os.path.join(self.root, *target_rel.split("/"))
        if not self._claim(vid_, "restoring"):
            raise VersionError(f"version {vid_} is being pruned or restored right now; try again.")
        try:
            with self.placement(exclusive=True):
                return self._restore(vid_, sub, is_dir, target_rel, target, who, between)
        finally:
            self._refresh_after_restore(vid_)

    def _restore(self, vid: str, sub: str, is_dir: bool, target_rel: str, target: str, who: Who,
                 between: Callable[[str], None] | None) -> Restored:  # fmt: skip
        src = str(self.blob_path(vid) / sub) if sub else str(self.blob_path(vid))
        where, args = at_or_below("sub", sub)
        rows = self._reads.all(
            f"SELECT sub, size, mtime_ns, md5 FROM files WHERE blob=? AND {where}", (vid, *args)
        )
        folders = _make_parents(self.root, target_rel)
        replaced_id = None
        if os.path.lexists(target):
            if not is_dir and os.path.isfile(target) and not os.path.islink(target):
                _existed, replaced_id = self.replace_file(src, target, target_rel, who)
            else:
                pending = self.remove(target_rel, target, who, replaced=True)
                try:
                    if between is not None:
                        between(target_rel)
                    os.rename(src, target)
                except BaseException:
                    pending.rollback()
                    raise
                fsync_dir(os.path.dirname(target))
                pending.commit()
                replaced_id = pending.id
        else:
            os.rename(src, target)
            fsync_dir(os.path.dirname(target))
        files = []
        for r_sub, size, mtime_ns, md5 in rows:
            inner = r_sub[len(sub) :].lstrip("/") if sub else r_sub
            files.append((f"{target_rel}/{inner}" if inner else target_rel, size, mtime_ns, md5))
        if is_dir:
            folders.append(target_rel)
            folders += [f"{target_rel}/{r}" for r, e in iter_tree(target) if e.is_dir(follow_symlinks=False)]
        return Restored(target_rel, vid, files, folders, replaced_id)

    # --- retention --------------------------------------------------------------

    def prune(self, now_ns: int | None = None) -> tuple[int, int]:
        """Delete versions older than keep_seconds, then the oldest while over max_bytes.

        Returns (versions removed, bytes freed). Each blob is claimed, removed from
        disk, then forgotten, one at a time: requests never wait for it.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.keep_seconds * 1e9)
        removed = freed = 0
        # A blob claimed by an earlier pass whose removal failed (a busy or unreadable file): this
        # pass finishes it, so no row waits in 'pruning' (hidden, its bytes uncounted) for a restart.
        # Only the pruner claims 'pruning', one pass at a time.
        with self._lock:
            leftover = self._db.execute("SELECT id, bytes FROM blobs WHERE state='pruning'").fetchall()
        for vid, nbytes in leftover:
            if self._prune_one(vid):
                removed += 1
                freed += nbytes
        _n, total = self.usage()
        after = (-1, "")
        while True:
            rows = self._reads.all(
                "SELECT id, time_ns, bytes FROM blobs WHERE state='kept' AND (time_ns, id) > (?, ?) "
                "ORDER BY time_ns, id LIMIT 500",
                after,
            )
            if not rows:
                break
            for vid, t, nbytes in rows:
                after = (t, vid)
                too_old = t < cutoff
                too_big = self.max_bytes is not None and total > self.max_bytes
                if not (too_old or too_big):
                    return removed, freed
                if not self._claim(vid, "pruning"):
                    continue  # a restore took it meanwhile
                total -= nbytes
                if self._prune_one(vid):
                    removed += 1
                    freed += nbytes
        return removed, freed

    def _prune_one(self, vid: str) -> bool:
        """Remove a claimed blob from disk, then its rows; False (left claimed, for the next pass) on failure."""
        try:
            remove_tree(self.blob_path(vid))
        except OSError as e:
            log.warning("Could not remove old version %s yet (%s); the next pruning pass tries again.", vid,
                        e.strerror or e)  # fmt: skip
            return False
        self._drop(vid)
        return True

    def fill_hashes(self, limit: int = 200) -> int:
        """Hash kept files whose MD5 was unknown when they were set aside."""
        rows = self._reads.all(
            "SELECT f.blob, f.sub FROM files f JOIN blobs b ON b.id=f.blob "
            "WHERE f.md5 IS NULL AND b.state='kept' LIMIT ?",
            (limit,),
        )
        done = 0
        for vid, sub in rows:
            fp = self.blob_path(vid) / sub if sub else self.blob_path(vid)
            try:
                md5 = md5_of_file(fp)
            except OSError:
                continue
            with self._tx() as db:
                db.execute("UPDATE files SET md5=? WHERE blob=? AND sub=?", (md5, vid, sub))
            done += 1
        return done


class Pruner:
    """Background retention: prunes and fills in missing MD5s, never holding a request up."""

    def __init__(self, store: VersionStore, interval: float | None = None) -> None:
        self.store = store
        self.interval = interval if interval is not None else max(0.5, min(60.0, store.keep_seconds / 2))
        store.on_kept = self.wake
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="davsync-versions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                removed, freed = self.store.prune()
                if removed:
                    log.info("Pruned %d old versions (%d bytes).", removed, freed)
                while self.store.fill_hashes() and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("Pruning versions failed")
            self._wake.wait(self.interval)
            self._wake.clear()


def _make_parents(root: str, rel: str) -> list[str]:
    """Create the target's missing parent folders; returns the ones made (share paths)."""
    made: list[str] = []
    parts = rel.split("/")[:-1]
    for i in range(len(parts)):
        sub = "/".join(parts[: i + 1])
        fp = os.path.join(root, *parts[: i + 1])
        if os.path.islink(fp):
            raise VersionError(f"{sub} is a symbolic link; restore somewhere else with --to.")
        if not os.path.isdir(fp):
            if os.path.lexists(fp):
                raise VersionError(f"{sub} is a file, so nothing can be restored inside it; use --to.")
            os.mkdir(fp)
            made.append(sub)
    return made
