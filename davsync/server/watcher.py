"""Seeing changes made directly on the server's disk: inotify (watchdog) plus periodic rescans.

Events only say "look at this path". A worker thread coalesces them (a burst of
10,000 new photos becomes one pass), stats each path and hashes what changed, so
requests never wait for it. A missed or dropped event only delays a change until
the next rescan; it is never lost.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from ..fswatch import new_observer, stop_observer
from ..scan import iter_tree
from .index import HashIndex
from .names import is_internal_path
from .scanner import rescan
from .shareroot import RootGuard

log = logging.getLogger("davsync.server")

DEBOUNCE = 0.05
# What can change a file or folder. Left out: opened and closed-without-writing, which every
# GET and PROPFIND causes; asking inotify for them costs the server a Python event per read.
# The Attrib events are `touch` (a new mtime, no write): watchdog 7 reports IN_ATTRIB as its own
# event type, which a filter without it drops although the modified events asked inotify for it.
WATCHED_EVENTS = [
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, DirModifiedEvent, FileMovedEvent, DirMovedEvent,
    FileDeletedEvent, DirDeletedEvent, FileClosedEvent, FileAttribEvent, DirAttribEvent,
]  # fmt: skip
TOMBSTONES_KEPT = 50_000
RETRY_FIRST_SCAN = 5.0  # seconds between tries of a first scan refused because the disk is away


class _Handler(FileSystemEventHandler):
    def __init__(self, tracker: ChangeTracker) -> None:
        self.tracker = tracker

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.tracker.notice(os.fsdecode(path))


class ChangeTracker:
    def __init__(
        self, root: str, index: HashIndex, *, rescan_interval: float = 600.0, guard: RootGuard | None = None
    ) -> None:
        self.root = root
        self.index = index
        self.rescan_interval = rescan_interval
        self.guard = guard  # the share's marker: no deletion is recorded while the disk is away
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._worker = threading.Thread(target=self._run, name="davsync-tracker", daemon=True)
        self.initial_scan_done = guard.scanned if guard is not None else threading.Event()
        self._reread = False  # the share's disk came back: watch and scan it again
        if guard is not None:
            guard.on_return = self._root_returned
        self.last_rescan: float | None = None  # wall time of the last full rescan (the admin page shows it)
        self.idle = threading.Event()
        self._sweeps_asked = 0  # sweeps asked for by sweep(); each runs rescan in the worker
        self._sweeps_started = 0  # asks covered by the rescan under way (or the last one)
        self._sweeps_done = 0
        self._sweep_ok = True  # whether the last sweep's rescan finished
        self._swept = threading.Condition(self._lock)

    @property
    def backlog(self) -> int:
        """Paths seen changing on disk and not yet read into the index (the admin page shows it)."""
        with self._lock:
            return len(self._pending)

    def _root_returned(self) -> None:
        with self._lock:
            self._reread = True
        self._wake.set()

    def _watch_again(self) -> None:
        """A remounted disk's folders are new to inotify (the old watches died with the unmount)."""
        old, self._observer = self._observer, None
        if old is not None:
            stop_observer(old)
        self._watch()

    def start(self) -> None:
        self._watch()
        self._worker.start()

    def _watch(self) -> None:
        try:
            observer = new_observer()
            observer.schedule(_Handler(self), self.root, recursive=True, event_filter=WATCHED_EVENTS)
            observer.start()
            self._observer = observer
        except OSError as e:
            log.warning(
                "Cannot watch %s for changes (%s); relying on rescans every %ds. "
                "Raise fs.inotify.max_user_watches to watch large trees.",
                self.root, e, self.rescan_interval,
            )  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            stop_observer(self._observer)
        self._worker.join(timeout=30)

    def notice(self, abs_path: str) -> None:
        rel = os.path.relpath(abs_path, self.root)
        if rel == "." or rel.startswith(".."):
            rel = ""
        rel = rel.replace(os.sep, "/")
        if rel and is_internal_path(rel):
            return
        with self._lock:
            self._pending.add(rel)
            self.idle.clear()
        self._wake.set()

    def sweep(self, timeout: float) -> bool:
        """Bring the index up to the disk now: wait for the initial scan, then for a rescan that
        starts after this call (run by the worker, after the events already queued). A first
        sync-collection answers from the index, and must list what a walk of the disk would,
        files copied onto the server a moment ago included. False when it took too long or
        the rescan failed."""
        deadline = time.monotonic() + timeout
        if not self.initial_scan_done.wait(timeout):
            return False
        with self._lock:
            # Not one under way: it may have walked past a file copied in a moment ago.
            want = self._sweeps_asked = max(self._sweeps_asked, self._sweeps_started + 1)
        self._wake.set()
        with self._swept:
            return (
                self._swept.wait_for(
                    lambda: self._sweeps_done >= want or self._stop.is_set(), max(0.0, deadline - time.monotonic())
                )
                and self._sweeps_done >= want
                and self._sweep_ok
            )

    def _rescan(self, *, first: bool = False) -> bool:
        """One full rescan; False when it did not complete (stopped, or the disk is away)."""
        intact = self.guard.intact if self.guard is not None else None
        report = rescan(self.root, self.index, self._stop, remove_stale_uploads=first, intact=intact)
        if first and report.complete:
            log.info("Index ready: %d files, %d hashed, %d removed.", report.files, report.hashed, report.removed)
        return report.complete

    def _run(self) -> None:
        while True:  # the first scan must complete before listings are answered (shareroot.py)
            try:
                if self._rescan(first=True):
                    break
            except Exception:
                log.exception("Initial index scan failed")
                break
            if self._stop.wait(RETRY_FIRST_SCAN):
                return
        self.initial_scan_done.set()
        self.last_rescan = time.time()
        last_scan = time.monotonic()
        while not self._stop.is_set():
            woke = self._wake.wait(timeout=max(0.1, self.rescan_interval - (time.monotonic() - last_scan)))
            if self._stop.is_set():
                return
            if woke:
                self._stop.wait(DEBOUNCE)  # let a burst gather
                self._wake.clear()
                with self._lock:
                    batch, self._pending = self._pending, set()
                    reread, self._reread = self._reread, False
                if reread:
                    self._reread_root()
                for rel in sorted(batch, key=lambda p: p.count("/")):
                    try:
                        self.refresh(rel)
                    except Exception:
                        log.exception("Could not index %s", rel)
                with self._lock:
                    asked = self._sweeps_started = self._sweeps_asked
                if asked > self._sweeps_done:
                    try:
                        ok = self._rescan()
                    except Exception:
                        ok = False  # the index may lack what is on disk: the first listing must not use it
                        log.exception("Rescan for a first listing failed")
                    with self._swept:
                        self._sweeps_done, self._sweep_ok = asked, ok
                        self._swept.notify_all()
            if time.monotonic() - last_scan >= self.rescan_interval:
                try:
                    self._rescan()
                except Exception:
                    log.exception("Periodic rescan failed")
                last_scan = time.monotonic()
                self.last_rescan = time.time()
            self.index.compact_tombstones(TOMBSTONES_KEPT)
            with self._lock:
                if not self._pending:
                    self.idle.set()

    def _reread_root(self) -> None:
        """The share's disk is back: watch it again and scan it whole; listings wait until then."""
        log.warning("The share's disk is back at %s: reading it again.", self.root)
        self._watch_again()
        try:
            done = self._rescan()
        except Exception:
            log.exception("Rescan after the disk came back failed")
            done = False
        if done:
            self.initial_scan_done.set()
        else:  # gone again, or stopped: try once more later
            self._stop.wait(RETRY_FIRST_SCAN)
            self._root_returned()

    def refresh(self, rel: str) -> None:
        """Bring one path (and, for a folder new to the index, its subtree) up to date."""
        if rel == "":
            return
        fp = os.path.join(self.root, rel)
        try:
            st = os.lstat(fp)
        except (FileNotFoundError, NotADirectoryError):
            if self.guard is None or self.guard.present():  # not a whole disk gone
                self.index.forget(rel)
            return
        if stat.S_ISDIR(st.st_mode) and not self.index.is_known_dir(rel):
            # Moved in whole: inotify reports only the folder itself.
            self._refresh_one(rel, fp, st)
            for sub, entry in iter_tree(fp):
                try:
                    self._refresh_one(f"{rel}/{sub}", entry.path, entry.stat(follow_symlinks=False))
                except OSError:
                    continue
            return
        self._refresh_one(rel, fp, st)

    def _refresh_one(self, rel: str, fp: str, st: os.stat_result) -> None:
        if is_internal_path(rel) or stat.S_ISLNK(st.st_mode):
            self.index.forget(rel)
        elif stat.S_ISDIR(st.st_mode):
            self.index.record_dir(rel)
        elif stat.S_ISREG(st.st_mode) and self.index.fresh_md5(rel, st) is None:
            self.index.md5_for(rel, fp, st)
