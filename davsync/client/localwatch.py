"""Seeing local changes for `sync --watch`: a quiet folder costs nothing, a changed one wakes the loop.

Events only say "look at this path": the loop hands the drained paths to `local.scan_local`.
Whenever the watcher cannot vouch for having seen everything (watchdog reported a problem,
too many paths piled up, DEST itself went away, watching could not start), `drain` says
so with None and the loop does a full `scan_local` instead. A periodic full scan stays the
safety net either way.
"""

from __future__ import annotations

import logging
import os
import threading
import unicodedata
import weakref
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver

from .. import osfs
from ..fswatch import new_observer, stop_observer
from .paths import STATE_DIR_NAME

log = logging.getLogger("davsync.client")

MAX_PENDING = 50_000  # more changed paths than this: a full scan is the better look
_IGNORED_EVENTS = ("opened", "closed_no_write")


class LocalWatcher:
    """Collects changed paths (relative, '/'-separated, NFC) below DEST between drains."""

    def __init__(self, dest: Path, excluded: Callable[[str, bool], bool]) -> None:
        self.root = os.path.abspath(osfs.display_path(dest))
        self.excluded = excluded
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._unsure = False
        self._stopped = False
        self._observer: BaseObserver | None = None

    @property
    def watching(self) -> bool:
        """False when the OS refused to watch DEST (then every drain asks for a full scan)."""
        return self._observer is not None

    def start(self) -> None:
        _watchers.add(self)
        try:
            observer = new_observer()
            observer.schedule(_Handler(self), self.root, recursive=True)
            observer.start()
        except OSError as e:
            log.warning("Cannot watch %s for changes (%s); relying on full scans.", self.root, e)
            self.unsure()
            return
        self._observer = observer

    def stop(self) -> None:
        _watchers.discard(self)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._observer is not None:
            stop_observer(self._observer)
            self._observer = None

    def __enter__(self) -> LocalWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drain(self) -> set[str] | None:
        """The paths changed since the last drain; None when a full scan is needed instead."""
        with self._cond:
            if self._unsure or self._observer is None:
                self._unsure = False
                self._pending = set()
                return None
            pending, self._pending = self._pending, set()
            return pending

    def wait(self, timeout: float | None = None) -> bool:
        """Block until something changed (or the watcher became unsure) or `timeout` passed;
        True when there is something to drain. Returns at once after stop()."""
        with self._cond:
            return self._cond.wait_for(lambda: self._has_news() or self._stopped, timeout) and self._has_news()

    def _has_news(self) -> bool:
        return bool(self._pending) or self._unsure

    # -- from watchdog's thread --

    def unsure(self) -> None:
        with self._cond:
            self._unsure = True
            self._cond.notify_all()

    def notice(self, abs_path: str, is_dir: bool, what: str = "modified") -> None:
        rel = os.path.relpath(abs_path, self.root)
        if rel == ".":
            if what in ("deleted", "moved"):
                self.unsure()  # DEST itself was moved or deleted (an unplugged drive)
            return  # DEST's own listing changed: its children say what
        if rel.startswith(".."):
            return
        rel = rel.replace(os.sep, "/")
        if not rel.isascii():
            rel = unicodedata.normalize("NFC", rel)
        top = rel.partition("/")[0]
        if top.casefold() == STATE_DIR_NAME or osfs.is_own_temp(rel.rpartition("/")[2]):
            return
        if self.excluded(rel, is_dir) or any(self.excluded(p, True) for p in _folders_above(rel)):
            return  # churn in an excluded folder (a build, a cache) wakes nobody
        with self._cond:
            self._pending.add(rel)
            if len(self._pending) > MAX_PENDING:
                self._unsure = True
                self._pending = set()
            self._cond.notify_all()


def _folders_above(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: LocalWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.watcher.notice(os.fsdecode(path), event.is_directory, event.event_type)


# watchdog handles an inotify queue overflow itself and tells only its log ("filesystem events
# were lost"); the same goes for its other emitters' troubles. Any warning from it means events
# may be missing: every running watcher asks for a full scan.
_watchers: weakref.WeakSet[LocalWatcher] = weakref.WeakSet()


class _WatchdogTrouble(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        for watcher in list(_watchers):
            watcher.unsure()


_trouble = _WatchdogTrouble()
logging.getLogger("watchdog").addHandler(_trouble)

__all__ = ["LocalWatcher"]
